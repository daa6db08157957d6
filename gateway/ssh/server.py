"""The asyncssh front end: public-key logins for `ssh_user`, one exchange or command per session.

The server object (`GatewayServer`, one per connection) decides authentication and applies the
limits before and after login; `session.GatewaySession` does the work of each channel.
`start_server` listens with the gateway's algorithms and host keys.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import asyncssh

from gateway import messages
from gateway.lifecycle import notices
from gateway.ops import sessionlog
from gateway.registry import Identity
from gateway.services import Services
from gateway.ssh import algorithms, asyncssh_seams, hostkeys, listener
from gateway.ssh.listener import GatewayListener
from gateway.ssh.session import GatewaySession, RefusedSession

log = logging.getLogger(__name__)

# How long a refused connection is kept half-open for its client to read the reason.
LINGER_SECONDS = 1.0


class GatewayServer(asyncssh.SSHServer):
    """Authentication for one connection: public keys of `ssh_user`, looked up in the registry."""

    def __init__(self, services: Services):
        self._services = services
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
        # This connection's line in the log (gateway/ops/sessionlog.py), written when it ends.
        self.record = services.sessionlog.connection(None)

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._source = self.record.client_addr = _client_address(conn)
        limits = self._services.limits
        wait = limits.penalties.blocked_for(self._source)
        if wait:
            self.record.refusal = sessionlog.PENALIZED
            self._refuse(asyncssh.DISC_HOST_NOT_ALLOWED_TO_CONNECT, messages.login_penalty(self._source, wait))
            return
        admission = limits.startups.admit(self, self._source)
        if not admission.admitted:
            self.record.refusal = sessionlog.TOO_MANY_STARTUPS
            self._refuse(asyncssh.DISC_TOO_MANY_CONNECTIONS, admission.reason or "")
        elif isinstance(admission.evict, GatewayServer):
            admission.evict.record.refusal = sessionlog.EVICTED
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
        if self._identity is not None:
            self.record.logged_in(self._identity)
        self._services.limits.startups.release(self)
        if self._conn is not None:
            self._conn.set_extra_info(legacy_crypto=self._legacy_crypto())

    def _legacy_crypto(self) -> bool:
        assert self._conn is not None
        host_key = self._conn.get_server_host_key()
        return algorithms.legacy_in_use(
            asyncssh_seams.client_kexinit(self._conn),
            algorithms.kex_algorithms(self._services.settings.legacy_algorithms),
            asyncssh_seams.offered_host_key_algorithms(host_key) if host_key else [],
            self._conn.get_extra_info("recv_mac"),
            self._user_signature,
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        limits = self._services.limits
        limits.startups.release(self)
        if not self._authenticated and self._failures:
            limits.penalties.record_failure(self._source)
        if self._conn is not None:
            self.record.ssh_client_version = self._conn.get_extra_info("client_version")
        self._services.sessionlog.connection_closed(self.record)

    async def begin_auth(self, username: str) -> bool:
        self.record.username = username
        banner = await notices.auth_banner(self._services)
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
        self.record.key_fingerprint, self.record.key_type = fingerprint, key.get_algorithm()
        if username == self._services.settings.ssh_user:
            if fingerprint not in self._looked_up:
                hit, identity = self._services.keys.cached(fingerprint)
                if not hit:
                    identity = await self._services.run(self._services.keys.identity, fingerprint)
                self._looked_up[fingerprint] = identity
            self._identity = self._looked_up[fingerprint]
        if self._identity is None:
            self._failures += 1
            wrong_user = username != self._services.settings.ssh_user
            self.record.refusal = sessionlog.WRONG_USER if wrong_user else sessionlog.UNKNOWN_KEY
            if self._failures >= self._services.limits.max_auth_tries > 0:
                self.record.refusal = sessionlog.TOO_MANY_AUTH_TRIES
                raise asyncssh.PermissionDenied(messages.too_many_auth_tries(self._failures))
            return False
        self._watch_signature(key, fingerprint)
        return True

    def _watch_signature(self, key: asyncssh.SSHKey, fingerprint: str) -> None:
        """Refuse a SHA-1 `ssh-rsa` signature (unless legacy_algorithms) and remember which
        algorithm signed, before asyncssh verifies the signed attempt."""
        legacy = self._services.settings.legacy_algorithms

        def check(signature: bytes) -> None:
            algorithm = algorithms.signature_algorithm(signature)
            if algorithm in algorithms.LEGACY and not legacy:
                self._failures += 1
                self.record.refusal = sessionlog.SHA1_SIGNATURE
                raise asyncssh.PermissionDenied(messages.sha1_signature_refused(fingerprint))
            self._user_signature = algorithm

        asyncssh_seams.watch_signature(key, check)

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, messages.forwarding_refused())

    def unix_connection_requested(self, dest_path):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        messages.forwarding_refused("forwarding"))

    def session_requested(self):
        if self._identity is None or self._conn is None:
            return False
        account = self._identity.account_name
        sessions = self._services.limits.sessions
        if not sessions.acquire(account):
            log.info("refused a session of account %s: %d in progress", account, sessions.held(account))
            self._services.sessionlog.session_refused(self.record, sessionlog.TOO_MANY_SESSIONS)
            return RefusedSession(429, messages.too_many_sessions(account, sessions.limit))
        return GatewaySession(self._services, self._identity, self._conn,
                              on_close=lambda: sessions.release(account), record=self.record)


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


def server_options(services: Services) -> dict:
    settings = services.settings
    legacy = settings.legacy_algorithms
    host_keys = asyncssh.load_keypairs(hostkeys.load(settings.host_key_dir))
    for keypair in host_keys:
        # An RSA host key would otherwise also offer SHA-1 `ssh-rsa` signatures.
        offered = asyncssh_seams.offered_host_key_algorithms(keypair)
        asyncssh_seams.offer_host_key_algorithms(keypair, algorithms.host_key_algorithms(offered, legacy))
    return dict(
        server_host_keys=[keypair for keypair in host_keys if asyncssh_seams.offered_host_key_algorithms(keypair)],
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


async def start_server(services: Services, *, host: str | None = None, port: int | None = None,
                       sock=None) -> GatewayListener:
    """Listen on `listen` (or `sock`, an already bound listening socket) and serve SSH.

    The port is bound with SO_REUSEPORT (several worker processes share it); with
    `proxy_protocol` on, each connection's PROXY header is read before SSH starts.
    """
    settings = services.settings
    options = await asyncssh.SSHServerConnectionOptions.construct(
        server_factory=lambda: GatewayServer(services), **server_options(services))
    if sock is None:
        sock = listener.bind(host if host is not None else settings.listen_host,
                             port if port is not None else settings.listen_port)
    proxy = listener.ProxySettings(settings.proxy_protocol, listener.networks(settings.proxy_allowed))
    return listener.GatewayListener(sock, options, proxy).start()
