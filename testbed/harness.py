"""An in-process gateway for tests and benchmarks: the real asyncssh server and services, run on
an event loop in a background thread, listening on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.services import Gateway
from gateway.settings import Settings
from gateway.ssh import hostkeys


class GatewayHarness:
    def __init__(self, settings: Settings, **services: Any):
        self.settings = settings
        self._services = services
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self.gateway: Gateway | None = None
        self.port = 0

    @property
    def registry(self) -> Registry:
        assert self.gateway is not None
        return self.gateway.registry

    def start(self) -> "GatewayHarness":
        from gateway.ssh.server import start_server

        upgrade(self.settings.database_url)
        self.gateway = Gateway.build(self.settings, **self._services)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def _start() -> None:
            try:
                self._server = await start_server(self.gateway, port=self.settings.listen_port)
                self.port = self._server.sockets[0].getsockname()[1]
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

    def call(self, func: Callable, *args) -> Any:
        """Run a coroutine function on the gateway's loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(func(*args), self._loop).result(30)

    def set_clock(self, clock: Callable) -> None:
        assert self.gateway is not None
        self.gateway.clock = clock

    def stop(self) -> None:
        if self._loop is None:
            return

        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if self.gateway is not None:
            self.gateway.close()
        self._loop = None

    def __enter__(self) -> "GatewayHarness":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def known_hosts_line(self, host: str = "127.0.0.1") -> str:
        return hostkeys.known_hosts(self.settings.host_key_dir, self.port, host)
