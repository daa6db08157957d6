"""Who a key belongs to: registry lookups with a short per-replica cache.

Revocation must reach every replica quickly, so entries live `key_cache_seconds` at most (a few
seconds); unknown keys are cached too, which keeps a flood of random keys off the database.
"""

from __future__ import annotations

import time
from typing import Callable

from gateway.registry import Identity, Registry

MAX_ENTRIES = 50_000


class KeyLookup:
    def __init__(self, registry: Registry, ttl: float, *, clock: Callable[[], float] = time.monotonic):
        self._registry = registry
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    def identity(self, fingerprint: str) -> Identity | None:
        """Blocking: call from a worker thread."""
        now = self._clock()
        hit = self._cache.get(fingerprint)
        if hit is not None and hit[0] > now:
            return hit[1]
        identity = self._registry.identity_for_key(fingerprint)
        if len(self._cache) >= MAX_ENTRIES:
            self._cache = {fp: entry for fp, entry in self._cache.items() if entry[0] > now}
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
        if self._ttl > 0:
            self._cache[fingerprint] = (now + self._ttl, identity)
        return identity

    def forget(self, fingerprint: str | None = None) -> None:
        if fingerprint is None:
            self._cache.clear()
        else:
            self._cache.pop(fingerprint, None)
