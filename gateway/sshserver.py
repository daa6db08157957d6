"""The asyncssh front end: public-key logins for `ssh_user`, one exchange or command per session.

The server object decides authentication; `GatewaySession` does the work of one channel, talking to
the user through stdout (the HTTP answer), stderr (notices) and the exit status.
"""

from __future__ import annotations

import asyncio
import logging

import asyncssh

from gateway import hostkeys, messages
from gateway.app import Gateway
from gateway.exchange import Exchange, Peer
from gateway.registry import Identity

log = logging.getLogger(__name__)

# Input is buffered up to this much before the SSH window stops the client (flow control).
HIGH_WATER = 1024 * 1024


class ChannelReader:
    """Bytes from the channel for `Exchange`, with back-pressure on the SSH window."""

    def __init__(self, chan: asyncssh.SSHServerChannel):
        self._chan = chan
        self._buffer = bytearray()
        self._eof = False
        self._ready = asyncio.Event()
        self._paused = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._ready.set()
        if len(self._buffer) >= HIGH_WATER and not self._paused:
            self._paused = True
            self._chan.pause_reading()

    def feed_eof(self) -> None:
        self._eof = True
        self._ready.set()

    async def read(self, max_bytes: int) -> bytes:
        while not self._buffer and not self._eof:
            self._ready.clear()
            await self._ready.wait()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if self._paused and len(self._buffer) < HIGH_WATER // 2:
            self._paused = False
            self._chan.resume_reading()
        return data


class GatewaySession(asyncssh.SSHServerSession):
    def __init__(self, gateway: Gateway, identity: Identity, conn: asyncssh.SSHServerConnection):
        self._gateway = gateway
        self._identity = identity
        self._conn = conn
        self._chan: asyncssh.SSHServerChannel | None = None
        self._reader: ChannelReader | None = None
        self._command: str | None = None
        self._task: asyncio.Task | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self._chan = chan
        self._reader = ChannelReader(chan)

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
            chan.write_stderr(b"pypissh-gateway: internal error; nothing was published; try again later\n")
        finally:
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
        )

    async def _run_exchange(self) -> int:
        chan = self._chan
        assert chan is not None and self._reader is not None
        place = messages.Place.from_settings(self._gateway.settings)
        chan.write_stderr(messages.session_notice(
            self._identity.account_name, self._identity.fingerprint, place).encode())
        reply = await Exchange(self._reader, self._peer(), self._gateway).run()
        if reply.exit_status:
            # stderr always reaches the user's terminal, even when the client stopped reading
            # stdout (a legacy client answered early reports only "Broken pipe").
            chan.write_stderr(messages.refusal_line(reply.status, reply.reason).encode())
        chan.write(reply.to_bytes())
        return reply.exit_status

    async def _run_command(self, command: str) -> int:
        chan = self._chan
        assert chan is not None
        place = messages.Place.from_settings(self._gateway.settings)
        name = command.split()[0] if command.split() else ""
        identity = self._identity
        if name == "help":
            chan.write(messages.help_text(place).encode())
            return 0
        if name == "whoami":
            chan.write(messages.whoami_text(
                identity.account_name, identity.email, identity.fingerprint, identity.key_comment,
                identity.token_ciphertext is not None, identity.exempt).encode())
            return 0
        if name == "guide":
            text = await self._gateway.run(self._gateway.guide_text, identity)
            chan.write(text.encode())
            return 0
        chan.write_stderr(messages.unknown_command(command).encode())
        return 2


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

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
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
        if username != self._gateway.settings.ssh_user:
            return False
        fingerprint = key.get_fingerprint("sha256")
        if fingerprint not in self._looked_up:
            self._looked_up[fingerprint] = await self._gateway.run(self._gateway.keys.identity, fingerprint)
        identity = self._looked_up[fingerprint]
        self._identity = identity
        return identity is not None

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        "port forwarding is not offered by the upload gateway")

    def unix_connection_requested(self, dest_path):
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        "forwarding is not offered by the upload gateway")

    def session_requested(self):
        if self._identity is None or self._conn is None:
            return False
        return GatewaySession(self._gateway, self._identity, self._conn)


def server_options(gateway: Gateway) -> dict:
    settings = gateway.settings
    return dict(
        server_host_keys=hostkeys.load(settings.host_key_dir),
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
                       sock=None) -> asyncssh.SSHAcceptor:
    settings = gateway.settings
    options = server_options(gateway)
    if sock is not None:
        return await asyncssh.create_server(lambda: GatewayServer(gateway), sock=sock, **options)
    return await asyncssh.create_server(
        lambda: GatewayServer(gateway),
        host if host is not None else settings.listen_host,
        port if port is not None else settings.listen_port,
        reuse_address=True,
        **options,
    )
