"""Who a key belongs to: registry lookups with a short per-replica cache.

Revocation must reach every replica quickly, so entries live `key_cache_seconds` at most (a few
seconds); unknown keys are cached too, which keeps a flood of random keys off the database. The
keys of connections already logged in are looked up again together (`refresh`, one query for all
of them) every `key_cache_seconds`, which also keeps their entries fresh for the next login.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import RegistryDown
from gateway.ops import metrics
from gateway.registry import Identity

MAX_ENTRIES = 50_000

log = logging.getLogger(__name__)


def owned_by(found: Identity | None, account: str) -> Identity | None:
    """The one check of "is this key still this account's": the registry's current identity for
    a key (None: revoked, or its account disabled), if it still belongs to `account`. By name,
    since that is what every front end holds (sshd's forced command carries only names), and an
    account's name never changes."""
    return found if found is not None and found.account_name == account else None


class KeyCache:
    """`lookup` (the registry's `identity_for_key`) behind a cache of `ttl` seconds per fingerprint."""

    def __init__(self, lookup: Callable[[str], Identity | None], ttl: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 lookup_many: Callable[[Collection[str]], dict[str, Identity]] | None = None):
        self._lookup_in_registry = lookup
        self._lookup_many = lookup_many
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    @property
    def ttl(self) -> float:
        return self._ttl

    def identity(self, fingerprint: str) -> Identity | None:
        """Blocking: call from a worker thread. Raises RegistryDown when the database fails."""
        try:
            identity = self._lookup(fingerprint)
        except SQLAlchemyError as exc:
            log.warning("key lookup failed, the registry is unavailable: %s", type(exc).__name__)
            raise RegistryDown() from None
        if identity is None:
            metrics.UNKNOWN_KEYS.inc()
        return identity

    def cached(self, fingerprint: str) -> tuple[bool, Identity | None]:
        """(True, identity) on a fresh cache hit, else (False, None). Never blocks: the event
        loop asks here first and hops to a worker thread only on a miss."""
        hit = self._cache.get(fingerprint)
        if hit is None or hit[0] <= self._clock():
            return False, None
        if hit[1] is None:
            metrics.UNKNOWN_KEYS.inc()
        return True, hit[1]

    def refresh(self, fingerprints: Collection[str]) -> dict[str, Identity | None]:
        """Blocking: look `fingerprints` up in the registry now, whatever the cache holds, and
        cache the answers. Raises RegistryDown when the database fails."""
        now = self._clock()
        try:
            if self._lookup_many is not None:
                found: dict[str, Identity | None] = dict(self._lookup_many(fingerprints))
            else:
                found = {fp: self._lookup_in_registry(fp) for fp in fingerprints}
        except SQLAlchemyError as exc:
            log.warning("key lookup failed, the registry is unavailable: %s", type(exc).__name__)
            raise RegistryDown() from None
        answers = {fp: found.get(fp) for fp in fingerprints}
        for fp, identity in answers.items():
            self._store(fp, identity, now)
        return answers

    def _lookup(self, fingerprint: str) -> Identity | None:
        now = self._clock()
        hit = self._cache.get(fingerprint)
        if hit is not None and hit[0] > now:
            return hit[1]
        identity = self._lookup_in_registry(fingerprint)
        self._store(fingerprint, identity, now)
        return identity

    def _store(self, fingerprint: str, identity: Identity | None, now: float) -> None:
        if len(self._cache) >= MAX_ENTRIES:
            self._cache = {fp: entry for fp, entry in self._cache.items() if entry[0] > now}
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
        if self._ttl > 0:
            self._cache[fingerprint] = (now + self._ttl, identity)
