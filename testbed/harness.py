"""An in-process gateway for tests and benchmarks: the real asyncssh server and services, run on
an event loop in a background thread, listening on a free port of 127.0.0.1; with `openssh_mode`
also the OpenSSH mode's `shim_socket`, as a replica serves it."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any, Callable

from gateway.registry import Registry, utcnow
from gateway.registry.migrate_db import upgrade
from gateway.services import Services
from gateway.settings import Settings
from gateway.ssh.server import start_server
from gateway.ssh.shimserver import ShimServer, bind_shim_socket
from gateway.upload.upstream import UpstreamClient
from testbed.knownhosts import known_hosts_lines


class Ticks:
    """A monotonic clock a test can move forward: the real one plus what `advance` added, so a
    cache expires without the test sleeping."""

    def __init__(self) -> None:
        self._offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


class GatewayHarness:
    """The services are built with the harness's clocks: `ticks` (the monotonic clock that ages the
    key and schedule caches and the limits) and a wall clock that `set_clock` moves."""

    def __init__(self, settings: Settings, *, upstream: UpstreamClient | None = None):
        self.settings = settings
        self.ticks = Ticks()
        self._upstream = upstream
        self._now: Callable[[], dt.datetime] = utcnow
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self.shim: ShimServer | None = None
        self.services: Services | None = None
        self.port = 0

    @property
    def registry(self) -> Registry:
        assert self.services is not None
        return self.services.registry

    def clock(self) -> dt.datetime:
        """The gateway's wall clock: real UTC until a test sets another."""
        return self._now()

    def set_clock(self, clock: Callable[[], dt.datetime]) -> None:
        """From now on the gateway's wall clock reads `clock()` (schedules, notices, events)."""
        self._now = clock

    def start(self) -> "GatewayHarness":
        upgrade(self.settings.database_url)
        self.services = Services.build(self.settings, clock=self.clock, ticks=self.ticks, upstream=self._upstream)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def _start() -> None:
            try:
                self._server = await start_server(self.services, port=self.settings.listen_port)
                self.port = self._server.sockets[0].getsockname()[1]
                if self.settings.openssh_mode:
                    self.shim = await ShimServer(self.services, bind_shim_socket(self.settings)).start()
            except BaseException as exc:  # surfaced to the caller below
                failure.append(exc)
            finally:
                ready.set()

        def _run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.create_task(_start())
            self._loop.run_forever()

        self._thread = threading.Thread(target=_run, name="gateway-harness", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run `coro` on the gateway's event loop (where its services live) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is None:
            return

        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                # As `serve` does on SIGTERM, with no grace: open connections are disconnected, so
                # their transports close here rather than in the garbage collector.
                await self._server.drain(0)
            if self.shim is not None:
                self.shim.close()
            # What asyncio.run does for `serve` on its way out: sessions still open are cancelled
            # and awaited, not left to be garbage-collected as pending tasks.
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(30)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if self._thread is None or not self._thread.is_alive():
            # As asyncio.run ends: the executor's threads joined, then the loop and its
            # self-pipe closed (left to the garbage collector, each is a ResourceWarning).
            try:
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                self._loop.close()
        if self.services is not None:
            self.services.close()
        self._loop = None

    def __enter__(self) -> "GatewayHarness":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def known_hosts_line(self, host: str = "127.0.0.1") -> str:
        return known_hosts_lines(self.settings.host_key_dir, self.port, host)
