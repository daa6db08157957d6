"""One SSH session (channel): the exchange or command it carries, talking to the user through
stdout (the HTTP answer), stderr (notices) and the exit status.

`GatewaySession` hands one channel of a logged-in connection to the session runner (runner.py),
which does the work; `RefusedSession` answers a channel of a revoked connection; `ChannelReader`
hands the channel's bytes to the exchange with back-pressure.
Both sessions are `TimedChannel`s: a channel that never asks for a command or a shell is closed
after `channel_request_timeout`, and the server hears when each channel closes.

A client may close its channel at any moment, also while the answer is being written (a killed
`ssh`, a ControlMaster's client that went away): the answer then has nowhere to go, which is
logged as such, never as a failure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Mapping

import asyncssh

from gateway import phrases
from gateway.ops import metrics, sessionlog
from gateway.registry import Identity
from gateway.services import Services
from gateway.ssh import user_texts
from gateway.ssh.asyncssh_seams import ServerConnection
from gateway.ssh.runner import ClientGone, FrontEnd, run_session
from gateway.upload.exchange import Peer, Reply

log = logging.getLogger(__name__)

# Input is buffered up to this much before the client is stopped (flow control).
HIGH_WATER = 1024 * 1024
# Writing to a channel the client has closed raises one of these.
CHANNEL_GONE = (BrokenPipeError, ConnectionError, asyncssh.Error)


class ChannelReader:
    """Bytes from the channel for `Exchange`, with back-pressure on the client.

    The back-pressure stops reading the connection's socket (TCP flow control), not the channel:
    asyncssh grants a full window each time a paused channel resumes, whatever it still holds, so
    a client faster than the replica's parsing and hashing filled memory (a 256 MiB upload grew
    the replica by 175 MiB, bench/memory.py). One channel per connection makes the two the same.
    Chunks are kept as received and joined once per read.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel, conn: asyncssh.SSHServerConnection | None = None):
        self._flow = conn if isinstance(conn, ServerConnection) else chan
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


class TimedChannel(asyncssh.SSHServerSession[bytes]):  # channels opened with encoding=None
    """A session channel of a logged-in connection: closed if it sends no exec or shell request
    within `request_timeout` (0: no limit), and `on_close` called once when it closes."""

    def __init__(self, *, account: str = "", request_timeout: float = 0.0,
                 on_close: Callable[[], None] | None = None):
        self._account = account
        self._request_timeout = request_timeout
        self._on_close = on_close
        self._chan: asyncssh.SSHServerChannel | None = None
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self._chan = chan
        if self._request_timeout > 0:
            self._request_timer = asyncio.get_running_loop().call_later(self._request_timeout, self._no_request)

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: Mapping[int, int]) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        self._stop_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_request_timer()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    def _stop_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _no_request(self) -> None:
        self._request_timer = None
        if self._chan is None:
            return
        log.info("closed a session channel of account %s: no exec or shell request within %.0f s",
                 self._account, self._request_timeout)
        metrics.CLOSED_BY_GATEWAY.labels(reason="no_request").inc()
        notice = user_texts.channel_without_request(self._account, self._request_timeout)
        with contextlib.suppress(*CHANNEL_GONE):
            self._chan.write_stderr(f"{phrases.PROGRAM}: {notice}\n".encode())
        self._chan.close()


class ChannelSink:
    """The channel's stdout and stderr for the session runner."""

    def __init__(self, chan: asyncssh.SSHServerChannel):
        self._chan = chan

    async def write(self, *, stdout: bytes = b"", stderr: bytes = b"") -> None:
        try:
            if stderr:
                self._chan.write_stderr(stderr)
            if stdout:
                self._chan.write(stdout)
        except CHANNEL_GONE as exc:
            raise ClientGone(type(exc).__name__) from None


class GatewaySession(TimedChannel):
    """A channel of a logged-in connection, run by the session runner."""

    def __init__(self, services: Services, identity: Identity, conn: asyncssh.SSHServerConnection,
                 on_close: Callable[[], None] | None = None, *, on_revoked: Callable[[], None] | None = None,
                 record: sessionlog.Connection | None = None):
        super().__init__(account=identity.account_name,
                         request_timeout=services.settings.channel_request_timeout, on_close=on_close)
        self._services = services
        self._identity = identity
        self._conn = conn
        self._on_revoked = on_revoked
        self._record = record  # the connection's log line: told what this session did
        self._reader: ChannelReader | None = None
        self._command = ""
        self._task: asyncio.Task | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        super().connection_made(chan)
        self._reader = ChannelReader(chan, self._conn)

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command.strip()
        return True

    def session_started(self) -> None:
        super().session_started()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype is None and self._reader is not None:
            self._reader.feed(data)

    def eof_received(self) -> bool:
        if self._reader is not None:
            self._reader.feed_eof()
        return True  # stay half-open: the answer is still to be written

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reader is not None:
            self._reader.feed_eof()
        super().connection_lost(exc)

    async def _run(self) -> None:
        chan = self._chan
        assert chan is not None and self._reader is not None
        addr = self._conn.get_extra_info("peername")
        peer = Peer(
            identity=self._identity,
            client_addr=addr[0] if addr else None,
            ssh_client_version=(self._conn.get_extra_info("client_version") or "")[:255] or None,
            legacy_crypto=bool(self._conn.get_extra_info("legacy_crypto", False)),
        )
        status = 1
        try:
            ended = await run_session(self._services, peer, self._command, self._reader, ChannelSink(chan),
                                      FrontEnd(key_checked=True, holds_slot=True), self._record)
            status = ended.status
            revoked = ended.outcome is not None and ended.outcome.outcome == sessionlog.KEY_REVOKED
            if revoked and self._on_revoked is not None:
                self._on_revoked()
        finally:
            self._reader.stop()
            with contextlib.suppress(*CHANNEL_GONE):
                chan.exit(status)


class RefusedSession(TimedChannel):
    """A session refused by a limit after login: the answer is written at once, without reading
    the request. The legacy client prints the HTTP reason; stderr reaches any client's terminal
    (a refused channel open is shown by OpenSSH only at LogLevel INFO and above)."""

    def __init__(self, status: int, reason: str, *, account: str = "", request_timeout: float = 0.0,
                 on_close: Callable[[], None] | None = None):
        super().__init__(account=account, request_timeout=request_timeout, on_close=on_close)
        self._reply = Reply.refusal(status, reason)

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        return True

    def session_started(self) -> None:
        super().session_started()
        assert self._chan is not None
        if _write(self._chan, stdout=self._reply.to_bytes(),
                  stderr=user_texts.refusal_line(self._reply.status, self._reply.reason)):
            self._chan.exit(self._reply.exit_status)


def _write(chan: asyncssh.SSHServerChannel, *, stdout: bytes = b"", stderr: str = "") -> bool:
    """Write to the client if it is still there; False when it had closed the channel."""
    try:
        if stderr:
            chan.write_stderr(stderr.encode())
        if stdout:
            chan.write(stdout)
    except CHANNEL_GONE:
        return False
    return True
