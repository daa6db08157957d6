"""One SSH session (channel): the exchange or command it carries, talking to the user through
stdout (the HTTP answer), stderr (notices) and the exit status.

`GatewaySession` runs one channel of a logged-in connection; `RefusedSession` answers a channel
that a limit refused; `ChannelReader` hands the channel's bytes to the exchange with back-pressure.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Callable

import asyncssh

from gateway import messages
from gateway.ops import sessionlog
from gateway.registry import Identity
from gateway.services import Services
from gateway.ssh.asyncssh_seams import ServerConnection
from gateway.ssh.commands import run_command, run_exchange
from gateway.upload.exchange import Peer, Reply

log = logging.getLogger(__name__)

# Input is buffered up to this much before the client is stopped (flow control).
HIGH_WATER = 1024 * 1024


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


class GatewaySession(asyncssh.SSHServerSession):
    def __init__(self, services: Services, identity: Identity, conn: asyncssh.SSHServerConnection,
                 on_close: Callable[[], None] | None = None, record: sessionlog.Connection | None = None):
        self._services = services
        self._record = record  # the connection's log line: told what this session did
        self._outcome: sessionlog.SessionOutcome | None = None
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
        if self._record is not None:
            self._services.sessionlog.session_started(self._record)
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
            if self._record is not None:
                self._services.sessionlog.session_ended(self._record, self._outcome or sessionlog.FAILED)

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
        result = await run_exchange(self._reader, self._peer(), self._services)
        if result.event is not None:
            self._outcome = sessionlog.SessionOutcome.of_exchange(result.event)
        if result.stderr:
            chan.write_stderr(result.stderr.encode())
        chan.write(result.stdout)
        return result.status

    async def _run_command(self, command: str) -> int:
        chan = self._chan
        assert chan is not None
        started = time.monotonic()
        result = await run_command(command, self._identity, self._services)
        self._outcome = sessionlog.SessionOutcome.of_command(command, result.status, started, time.monotonic())
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
