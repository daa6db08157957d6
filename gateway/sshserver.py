"""The asyncssh front end: public-key logins for `ssh_user`, one exchange or command per session.

The server object decides authentication; `GatewaySession` does the work of one channel, talking to
the user through stdout (the HTTP answer), stderr (notices) and the exit status.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Callable

import asyncssh

from gateway import algorithms, hostkeys, listener, messages, notices
from gateway.app import Gateway
from gateway.exchange import Peer, Reply
from gateway.frontend import run_command, run_exchange
from gateway.listener import GatewayListener
from gateway.registry import Identity

log = logging.getLogger(__name__)

# Input is buffered up to this much before the client is stopped (flow control).
HIGH_WATER = 1024 * 1024
# How long a refused connection is kept half-open for its client to read the reason.
LINGER_SECONDS = 1.0


class ChannelReader:
    """Bytes from the channel for `Exchange`, with back-pressure on the client.

    The back-pressure stops reading the connection's socket (TCP flow control), not the channel:
    asyncssh grants a full window each time a paused channel resumes, whatever it still holds, so
    a client faster than the replica's parsing and hashing filled memory (a 256 MiB upload grew
    the replica by 175 MiB, bench/memory.py). One channel per connection makes the two the same.
    Chunks are kept as received and joined once per read.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel, conn: asyncssh.SSHServerConnection | None = None):
        self._flow = conn if isinstance(conn, listener.ServerConnection) else chan
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._ready = asyncio.Event()
        self._paused = False
        self._stopped = False

    def feed(self, data: bytes) -> None:
        if self._stopped:
            return  # the answer is out; the client may still be sending, and must not be stalled
        self._chunks.append(data)
        self._size += len(data)
        self._ready.set()
        if self._size >= HIGH_WATER and not self._paused:
            self._paused = True
            self._flow.pause_reading()

    def feed_eof(self) -> None:
        self._eof = True
        self._ready.set()

    def stop(self) -> None:
        """The session is done reading: drop what is buffered and what still comes, and let the
        connection read again (the client's close must get through)."""
        self._stopped = True
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._flow.resume_reading()

    async def read(self, max_bytes: int) -> bytes:
        while not self._chunks and not self._eof:
            self._ready.clear()
            await self._ready.wait()
        parts: list[bytes] = []
        taken = 0
        while self._chunks and taken < max_bytes:
            chunk = self._chunks.popleft()
            if taken + len(chunk) > max_bytes:
                cut = max_bytes - taken
                self._chunks.appendleft(chunk[cut:])
                chunk = chunk[:cut]
            parts.append(chunk)
            taken += len(chunk)
        self._size -= taken
        if self._paused and self._size < HIGH_WATER // 2:
            self._paused = False
            self._flow.resume_reading()
        return parts[0] if len(parts) == 1 else b"".join(parts)


class GatewaySession(asyncssh.SSHServerSession):
    def __init__(self, gateway: Gateway, identity: Identity, conn: asyncssh.SSHServerConnection,
                 on_close: Callable[[], None] | None = None):
        self._gateway = gateway
        self._identity = identity
        self._conn = conn
        self._on_close = on_close
        self._chan: asyncssh.SSHServerChannel | None = None
        self._reader: ChannelReader | None = None
        self._command: str | None = None
        self._task: asyncio.Task | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self._chan = chan
        self._reader = ChannelReader(chan, self._conn)

    def pty_requested(self, term_type, term_size, term_modes) -> bool:
        return False

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command.strip()
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes, datatype) -> None:
        if datatype is None and self._reader is not None:
            self._reader.feed(data)

    def eof_received(self) -> bool:
        if self._reader is not None:
            self._reader.feed_eof()
        return True  # stay half-open: the answer is still to be written

    def connection_lost(self, exc) -> None:
        if self._reader is not None:
            self._reader.feed_eof()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    async def _run(self) -> None:
        chan = self._chan
        assert chan is not None and self._reader is not None
        status = 1
        try:
            if self._command:
                status = await self._run_command(self._command)
            else:
                status = await self._run_exchange()
        except Exception:
            log.exception("session failed")
            chan.write_stderr(messages.session_failed().encode())
        finally:
            self._reader.stop()
            try:
                chan.exit(status)
            except (OSError, asyncssh.Error):
                pass

    def _peer(self) -> Peer:
        addr = self._conn.get_extra_info("peername")
        return Peer(
            identity=self._identity,
            client_addr=addr[0] if addr else None,
            ssh_client_version=(self._conn.get_extra_info("client_version") or "")[:255] or None,
            legacy_crypto=bool(self._conn.get_extra_info("legacy_crypto", False)),
        )

    async def _run_exchange(self) -> int:
        chan = self._chan
        assert chan is not None and self._reader is not None
        result = await run_exchange(self._reader, self._peer(), self._gateway)
        if result.stderr:
            chan.write_stderr(result.stderr.encode())
        chan.write(result.stdout)
        return result.status

    async def _run_command(self, command: str) -> int:
        chan = self._chan
        assert chan is not None
        result = await run_command(command, self._identity, self._gateway)
        if result.stdout:
            chan.write(result.stdout.encode())
        if result.stderr:
            chan.write_stderr(result.stderr.encode())
        return result.status


class RefusedSession(asyncssh.SSHServerSession):
    """A session refused by a limit after login: the answer is written at once, without reading
    the request. The legacy client prints the HTTP reason; stderr reaches any client's terminal
    (a refused channel open is shown by OpenSSH only at LogLevel INFO and above)."""

    def __init__(self, status: int, reason: str):
        self._reply = Reply(status, reason, reason + "\n")

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self._chan = chan

    def pty_requested(self, term_type, term_size, term_modes) -> bool:
        return False

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        return True

    def session_started(self) -> None:
        self._chan.write_stderr(messages.refusal_line(self._reply.status, self._reply.reason).encode())
        self._chan.write(self._reply.to_bytes())
        self._chan.exit(self._reply.exit_status)


class GatewayServer(asyncssh.SSHServer):
    """Authentication for one connection: public keys of `ssh_user`, looked up in the registry."""

    def __init__(self, gateway: Gateway):
        self._gateway = gateway
        self._conn: asyncssh.SSHServerConnection | None = None
        self._looked_up: dict[str, Identity | None] = {}
        # asyncssh does not say which key authenticated. It calls validate_public_key for the
        # query and again, just before checking the signature, for the signed attempt; the key
        # validated last before auth completes is therefore the one that signed.
        self._identity: Identity | None = None
        self._source = "unknown"
        self._failures = 0
        self._authenticated = False
        self._closed = False
        self._user_signature: str | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._source = _client_address(conn)
        limits = self._gateway.limits
        wait = limits.penalties.blocked_for(self._source)
        if wait:
            log.info("refused %s: penalized for failed logins (%.0f s left)", self._source, wait)
            self._refuse(asyncssh.DISC_HOST_NOT_ALLOWED_TO_CONNECT, messages.login_penalty(self._source, wait))
            return
        admission = limits.startups.admit(self, self._source)
        if not admission.admitted:
            log.info("refused %s: too many unauthenticated connections from it", self._source)
            self._refuse(asyncssh.DISC_TOO_MANY_CONNECTIONS, admission.reason or "")
        elif isinstance(admission.evict, GatewayServer):
            log.info("evicted the oldest unauthenticated connection, from %s", admission.evict._source)
            admission.evict._refuse(asyncssh.DISC_TOO_MANY_CONNECTIONS, messages.evicted_startup())

    def _refuse(self, code: int, reason: str) -> None:
        """Disconnect with a reason the client prints; deferred so our version line goes first."""
        loop = asyncio.get_running_loop()

        def _disconnect() -> None:
            if self._conn is None or self._closed:
                return
            transport_socket = self._conn.get_extra_info("socket")
            kept = transport_socket.dup() if transport_socket is not None else None
            self._conn.disconnect(code, reason)
            if kept is not None:
                loop.create_task(_linger_close(kept))

        loop.call_soon(_disconnect)

    def auth_completed(self) -> None:
        self._authenticated = True
        self._gateway.limits.startups.release(self)
        if self._conn is not None:
            self._conn.set_extra_info(legacy_crypto=self._legacy_crypto())

    def _legacy_crypto(self) -> bool:
        assert self._conn is not None
        host_key = self._conn.get_server_host_key()
        return algorithms.legacy_in_use(
            # asyncssh keeps no public record of the negotiated key exchange; the client's
            # KEXINIT and what we offer determine it (the client's first choice we offer).
            getattr(self._conn, "_client_kexinit", b""),
            algorithms.kex_algorithms(self._gateway.settings.legacy_algorithms),
            [alg.decode("ascii") for alg in host_key.host_key_algorithms] if host_key else [],
            self._conn.get_extra_info("recv_mac"),
            self._user_signature,
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        limits = self._gateway.limits
        limits.startups.release(self)
        if not self._authenticated and self._failures:
            limits.penalties.record_failure(self._source)

    async def begin_auth(self, username: str) -> bool:
        banner = await notices.auth_banner(self._gateway)
        if banner and self._conn is not None:
            self._conn.send_auth_banner(banner)
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self._identity = None
        fingerprint = key.get_fingerprint("sha256")
        if username == self._gateway.settings.ssh_user:
            if fingerprint not in self._looked_up:
                hit, identity = self._gateway.keys.cached(fingerprint)
                if not hit:
                    identity = await self._gateway.run(self._gateway.keys.identity, fingerprint)
                self._looked_up[fingerprint] = identity
            self._identity = self._looked_up[fingerprint]
        if self._identity is None:
            self._failures += 1
            if self._failures >= self._gateway.limits.max_auth_tries > 0:
                log.info("disconnected %s after %d failed keys", self._source, self._failures)
                raise asyncssh.PermissionDenied(messages.too_many_auth_tries(self._failures))
            return False
        self._watch_signature(key, fingerprint)
        return True

    def _watch_signature(self, key: asyncssh.SSHKey, fingerprint: str) -> None:
        """Check the signature algorithm of the signed attempt before asyncssh verifies it.

        asyncssh accepts any algorithm the key type knows, SHA-1 `ssh-rsa` included, whatever
        the server's signature_algs, and does not say which one signed. It verifies with the key
        object it hands us here, so we wrap that object's verify.
        """
        verify = key.verify
        legacy = self._gateway.settings.legacy_algorithms

        def checked(data: bytes, signature: bytes) -> bool:
            algorithm = algorithms.signature_algorithm(signature)
            if algorithm in algorithms.LEGACY and not legacy:
                self._failures += 1
                log.info("refused %s: key %s signed with %s", self._source, fingerprint, algorithm)
                raise asyncssh.PermissionDenied(messages.sha1_signature_refused(fingerprint))
            self._user_signature = algorithm
            return verify(data, signature)

        key.verify = checked  # type: ignore[method-assign]

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        "port forwarding is not offered by the upload gateway")

    def unix_connection_requested(self, dest_path):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        "forwarding is not offered by the upload gateway")

    def session_requested(self):
        if self._identity is None or self._conn is None:
            return False
        account = self._identity.account_name
        sessions = self._gateway.limits.sessions
        if not sessions.acquire(account):
            log.info("refused a session of account %s: %d in progress", account, sessions.held(account))
            return RefusedSession(429, messages.too_many_sessions(account, sessions.limit))
        return GatewaySession(self._gateway, self._identity, self._conn,
                              on_close=lambda: sessions.release(account))


async def _linger_close(sock: socket.socket) -> None:
    """Close a refused connection gently. asyncssh aborts the socket; with the client's first bytes
    still unread that sends a TCP reset, and the client loses the disconnect reason it was just
    sent. A duplicate descriptor keeps the socket open: send FIN, read until the client closes
    (it does, on reading the reason), then close."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    try:
        await asyncio.sleep(0)  # asyncssh writes the disconnect message first
        sock.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(LINGER_SECONDS):
            while await loop.sock_recv(sock, 4096):
                pass
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()


def _client_address(conn: asyncssh.SSHServerConnection) -> str:
    """The address limits are keyed by (behind a trusted balancer, the PROXY header's)."""
    peer = conn.get_extra_info("peername")
    return str(peer[0]) if peer else "unknown"


def server_options(gateway: Gateway) -> dict:
    settings = gateway.settings
    legacy = settings.legacy_algorithms
    host_keys = asyncssh.load_keypairs(hostkeys.load(settings.host_key_dir))
    for keypair in host_keys:
        # An RSA host key would otherwise also offer SHA-1 `ssh-rsa` signatures.
        keypair.host_key_algorithms = algorithms.host_key_algorithms(list(keypair.host_key_algorithms), legacy)
    return dict(
        server_host_keys=[keypair for keypair in host_keys if keypair.host_key_algorithms],
        kex_algs=algorithms.kex_algorithms(legacy),
        encryption_algs=algorithms.ciphers(),
        mac_algs=algorithms.mac_algorithms(legacy),
        signature_algs=algorithms.signature_algorithms(legacy),
        compression_algs=["none"],  # uploads are compressed archives; zlib would only cost CPU
        gss_kex=False,
        gss_auth=False,
        # Every key in host_key_dir is announced after login (OpenSSH's hostkeys-00 extension), so
        # clients with UpdateHostKeys learn a new key before it replaces the old one.
        send_server_host_keys=True,
        server_version="pypissh_gateway",
        encoding=None,
        allow_pty=False,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_scp=False,
        line_editor=False,
        login_timeout=settings.login_timeout,
        keepalive_interval=60,
        keepalive_count_max=3,
    )


async def start_server(gateway: Gateway, *, host: str | None = None, port: int | None = None,
                       sock=None) -> GatewayListener:
    """Listen on `listen` (or `sock`, an already bound listening socket) and serve SSH.

    The port is bound with SO_REUSEPORT (several worker processes share it); with
    `proxy_protocol` on, each connection's PROXY header is read before SSH starts.
    """
    settings = gateway.settings
    options = await asyncssh.SSHServerConnectionOptions.construct(
        server_factory=lambda: GatewayServer(gateway), **server_options(gateway))
    if sock is None:
        sock = listener.bind(host if host is not None else settings.listen_host,
                             port if port is not None else settings.listen_port)
    proxy = listener.ProxySettings(settings.proxy_protocol, listener.networks(settings.proxy_allowed))
    return listener.GatewayListener(sock, options, proxy).start()
