"""Assembling a replica: settings in, the long-lived services out."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor

from gateway.registry import Registry
from gateway.settings import Settings
from gateway.ssh.keycache import KeyCache
from gateway.ssh.limits import Limits
from gateway.tokens import TokenBox
from gateway.upload.exchange import Services
from gateway.upload.upstream import UpstreamClient


class Gateway(Services):
    """The services of one replica process, plus the key lookup cache."""

    keys: KeyCache
    limits: Limits

    @classmethod
    def build(cls, settings: Settings, *, registry: Registry | None = None, **overrides) -> "Gateway":
        registry = registry or Registry.from_url(settings.database_url)
        gateway = cls(
            settings=settings,
            registry=registry,
            tokens=TokenBox.from_settings(settings, create=True),
            upstream=UpstreamClient(settings),
            # Upstream forwarding and database calls are blocking; they run here, off the loop.
            executor=ThreadPoolExecutor(max_workers=64, thread_name_prefix="pypissh"),
            replica=f"{socket.gethostname()}:{os.getpid()}",
            **overrides,
        )
        gateway.keys = KeyCache(registry.accounts.identity_for_key, settings.key_cache_seconds)
        gateway.limits = Limits.from_settings(settings)
        return gateway

    def guide_text(self, identity) -> str:
        from gateway.lifecycle.guide import guide_text

        return guide_text(self.registry, self.settings, identity, now=self.clock())

    def close(self) -> None:
        self.upstream.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.registry.engine.dispose()
