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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway.errors import ServiceBusy
from gateway.keycache import KeyCache, owned_by
from gateway.lifecycle.schedule import Schedule, ScheduleCache
from gateway.limits import Limits
from gateway.ops.pools import PoolFull, WorkerPool
from gateway.ops.sessionlog import SessionLog
from gateway.registry import Identity, Registry, utcnow
from gateway.settings import Settings
from gateway.tokens import TokenBox
from gateway.upload.upstream import UpstreamClient

T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    settings: Settings
    registry: Registry
    tokens: TokenBox  # opens the accounts' stored upstream tokens
    upstream: UpstreamClient
    # Blocking work runs off the event loop in two pools, so that logins never wait behind uploads:
    executor: WorkerPool = field(repr=False)  # uploads: reading archives, forwarding (`run`)
    registry_executor: WorkerPool = field(repr=False)  # key lookups, registry reads and writes (`run_registry`)
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
              upstream: UpstreamClient | None = None) -> Services:
        """The services for `settings`. `clock` is the wall clock; `ticks` the monotonic one that
        ages the caches and the limits' penalties."""
        registry = registry or Registry.from_url(settings.database_url)
        return cls(
            settings=settings,
            registry=registry,
            tokens=TokenBox.from_settings(settings),
            upstream=upstream or UpstreamClient(settings),
            executor=WorkerPool("upload", settings.upload_threads, queue_limit=settings.upload_queue),
            registry_executor=WorkerPool("registry", settings.registry_threads,
                                         saturation_bound=settings.registry_queue),
            keys=KeyCache(registry.keys.identity_for_key, settings.key_cache_seconds, clock=ticks,
                          lookup_many=registry.keys.identities_for_keys),
            limits=Limits.from_settings(settings, clock=ticks),
            schedules=ScheduleCache(registry.schedule.current, settings.schedule_cache_seconds, clock=ticks),
            clock=clock,
            replica=f"{socket.gethostname()}:{os.getpid()}",
            sessionlog=SessionLog(clock=ticks),
        )

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking upload work `func(*args)` in an upload thread. Raises ServiceBusy when
        `upload_queue` uploads are already waiting for one."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)
        except PoolFull:
            raise ServiceBusy() from None

    async def run_registry(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking registry work `func(*args)` (a key lookup, an event row) in a registry thread."""
        return await asyncio.get_running_loop().run_in_executor(self.registry_executor, func, *args)

    async def current_schedule(self) -> Schedule:
        """The deprecation schedule, at most `schedule_cache_seconds` old."""
        cached = self.schedules.fresh()
        return cached if cached is not None else await self.run_registry(self.schedules.refresh)

    async def identity_for_key(self, fingerprint: str) -> Identity | None:
        """The login lookup through the key cache: a fresh entry without leaving the event loop,
        else the registry in a registry thread. Raises RegistryDown when it cannot be read."""
        hit, found = self.keys.cached(fingerprint)
        if hit:
            return found
        return await self.run_registry(self.keys.identity, fingerprint)

    async def current_identity(self, account: str, fingerprint: str) -> Identity | None:
        """What the registry says now (at most `key_cache_seconds` ago) about the key `fingerprint`
        of `account`: its identity, or None once the key is revoked, the account disabled or the
        key no longer the account's. Raises RegistryDown when the registry cannot be read."""
        return owned_by(await self.identity_for_key(fingerprint), account)

    def saturation(self) -> str | None:
        """Why this replica should take no new work now (a full pool), or None."""
        return self.executor.saturation() or self.registry_executor.saturation()

    def close(self) -> None:
        self.upstream.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.registry_executor.shutdown(wait=False, cancel_futures=True)
        self.registry.close()
