"""The long-lived services of one replica process, built in one place and passed down typed.

Every front end (the asyncssh server, OpenSSH's `stdio` mode), the exchange, the SSH commands and
the notices receive one `Services`. It is frozen: everything it carries is declared here and made
by `Services.build`, including the clocks, so tests pass theirs in instead of patching.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from gateway.lifecycle.schedule import Schedule, ScheduleCache
from gateway.ops.sessionlog import SessionLog
from gateway.registry import Registry, utcnow
from gateway.settings import Settings
from gateway.ssh.keycache import KeyCache
from gateway.ssh.limits import Limits
from gateway.tokens import TokenBox
from gateway.upload.upstream import UpstreamClient

T = TypeVar("T")

# Upstream forwarding and database calls are blocking; they run in this many threads, off the loop.
WORKER_THREADS = 64


@dataclass(frozen=True)
class Services:
    settings: Settings
    registry: Registry
    tokens: TokenBox  # opens the accounts' stored upstream tokens
    upstream: UpstreamClient
    executor: Executor = field(repr=False)
    keys: KeyCache  # the login lookup, cached for key_cache_seconds
    limits: Limits  # what clients may hold before and after login
    schedules: ScheduleCache  # the deprecation schedule, re-read every schedule_cache_seconds
    clock: Callable[[], dt.datetime]  # the wall clock (aware UTC) of schedules, notices and events
    replica: str  # "host:pid", recorded with every event
    # The log's line per connection, session and refused login (floods summarised).
    sessionlog: SessionLog = field(default_factory=SessionLog)

    @classmethod
    def build(cls, settings: Settings, *, clock: Callable[[], dt.datetime] = utcnow,
              ticks: Callable[[], float] = time.monotonic, registry: Registry | None = None,
              upstream: UpstreamClient | None = None) -> "Services":
        """The services for `settings`. `clock` is the wall clock; `ticks` the monotonic one that
        ages the caches and the limits' penalties."""
        registry = registry or Registry.from_url(settings.database_url)
        return cls(
            settings=settings,
            registry=registry,
            tokens=TokenBox.from_settings(settings),
            upstream=upstream or UpstreamClient(settings),
            executor=ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="pypissh"),
            keys=KeyCache(registry.accounts.identity_for_key, settings.key_cache_seconds, clock=ticks),
            limits=Limits.from_settings(settings, clock=ticks),
            schedules=ScheduleCache(registry.schedule.current, settings.schedule_cache_seconds, clock=ticks),
            clock=clock,
            replica=f"{socket.gethostname()}:{os.getpid()}",
            sessionlog=SessionLog(clock=ticks),
        )

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking `func(*args)` in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)

    async def current_schedule(self) -> Schedule:
        """The deprecation schedule, at most `schedule_cache_seconds` old."""
        cached = self.schedules.fresh()
        return cached if cached is not None else await self.run(self.schedules.refresh)

    def close(self) -> None:
        self.upstream.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.registry.close()
