"""Hostile SSH clients for tests, built on asyncssh's client: what a tenant trying to starve the
others does, which OpenSSH's client will not do.

- `LoginFlood` opens many connections with one key and holds every one that logs in (the way to
  take a replica's every file descriptor), from many source addresses so that the per-address
  limits before login do not stop it, only the per-account cap after login. It runs its own event
  loop in a thread, so a test can run real `ssh` clients while the flood is held.
- `open_bare_session` opens a session channel and never sends an exec, shell or subsystem request
  (holding one of the account's session slots). asyncssh's client always sends one, so this uses
  its channel object directly (`SSHClientChannel._open`): a stand-in for a hand-written hostile
  client, since no real client does this.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import asyncssh
from asyncssh.channel import SSHClientChannel

WINDOW = 2 * 1024 * 1024
MAX_PACKET = 32 * 1024


@dataclass
class FloodResult:
    held: int = 0  # connections that logged in and are held open
    refused: Counter = field(default_factory=Counter)  # disconnect reason -> count
    failed: Counter = field(default_factory=Counter)  # other failures, by exception type


class LoginFlood:
    """`count` logins with the key at `key_path` to 127.0.0.1:`port`, `concurrency` at a time,
    spread over `sources`; held until `close`."""

    def __init__(self, port: int, key_path: Path, *, sources: Sequence[str], username: str = "submit",
                 concurrency: int = 50, timeout: float = 60.0):
        self.port = port
        self.key = asyncssh.read_private_key(str(key_path))
        self.sources = list(sources)
        self.username = username
        self.concurrency = concurrency
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="login-flood", daemon=True)
        self._thread.start()
        self._held: list[asyncssh.SSHClientConnection] = []

    def open(self, count: int) -> FloodResult:
        """Blocking: make the `count` attempts; return what became of them."""
        return asyncio.run_coroutine_threadsafe(self._open(count), self._loop).result()

    async def _open(self, count: int) -> FloodResult:
        result = FloodResult()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(index: int) -> None:
            async with gate:
                try:
                    conn = await asyncio.wait_for(asyncssh.connect(
                        "127.0.0.1", self.port, username=self.username, client_keys=[self.key],
                        known_hosts=None, agent_path=None, local_addr=(self.sources[index % len(self.sources)], 0),
                        login_timeout=self.timeout), self.timeout)
                except asyncssh.DisconnectError as exc:
                    result.refused[exc.reason] += 1
                except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
                    result.failed[type(exc).__name__] += 1
                else:
                    self._held.append(conn)
                    result.held += 1

        await asyncio.gather(*(one(index) for index in range(count)))
        return result

    def still_open(self) -> int:
        """How many held connections the server has not closed."""
        return sum(1 for conn in self._held if not conn.is_closed())

    def close(self) -> None:
        async def _close() -> None:
            for conn in self._held:
                conn.close()
            await asyncio.gather(*(conn.wait_closed() for conn in self._held), return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():  # else the loop still runs; closing it would fail
                self._loop.close()  # its self-pipe with it, not left to the garbage collector


class _Collector(asyncssh.SSHClientSession):
    def __init__(self) -> None:
        self.stderr = ""

    def data_received(self, data: str, datatype) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr += data


async def open_bare_session(conn: asyncssh.SSHClientConnection) -> tuple[SSHClientChannel, _Collector]:
    """A session channel with no request: the channel and what the server writes to its stderr."""
    loop = asyncio.get_running_loop()
    chan = SSHClientChannel(conn, loop, "strict", "utf-8", "strict", WINDOW, MAX_PACKET)
    await chan._open(b"session")
    collector = _Collector()
    chan._session = collector
    collector.connection_made(chan)
    chan.resume_reading()  # what asyncssh does once a session's request is answered
    return chan, collector
