"""What one replica lets clients hold before and after they log in.

A public SSH port is probed from the first minute: connections that never log in, addresses that
try key after key, one account opening connection after connection and session after session.
These counters decide; the SSH server (`server.GatewayServer`) asks them at each step of a login
and turns a refusal into an SSH disconnect with the reason. They are pure (no sockets, an
injectable clock) and live on the event loop's thread, so they need no locks. Each replica counts
for itself.
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.ops import sessionlog
from gateway.settings import Settings

# Past this many remembered addresses the penalty box forgets the ones that have nearly decayed,
# so a spray of random (IPv6) sources cannot grow it without bound.
MAX_PENALIZED_ADDRESSES = 100_000


@dataclass(frozen=True)
class Admission:
    """The answer to a new connection: admitted or not (with the reason), and whom to evict."""

    admitted: bool
    reason: str | None = None
    evict: Hashable | None = None


class StartupGate:
    """Connections that have not authenticated yet, like OpenSSH's MaxStartups.

    Two bounds: `max_per_source` for one address (a single host cannot take every slot), and
    `max_total` for the replica. When the replica is full, the *oldest* pending connection is
    evicted to make room: a legitimate handshake takes a fraction of a second, so a stalled
    connection is almost always the oldest one, and a flood of idle sockets cannot lock real users
    out until the login grace time expires.
    """

    def __init__(self, max_total: int, max_per_source: int = 0):
        self.max_total = max_total
        self.max_per_source = max_per_source
        self._pending: OrderedDict[Hashable, str] = OrderedDict()
        self._per_source: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, conn: Hashable, source: str) -> Admission:
        if self.max_per_source > 0 and self._per_source[source] >= self.max_per_source:
            return Admission(False, too_many_startups_from(source, self.max_per_source))
        evict = None
        if self.max_total > 0 and len(self._pending) >= self.max_total:
            evict, _ = next(iter(self._pending.items()))
            self.release(evict)
        self._pending[conn] = source
        self._per_source[source] += 1
        return Admission(True, evict=evict)

    def release(self, conn: Hashable) -> None:
        """The connection authenticated or closed: it no longer counts. Idempotent."""
        source = self._pending.pop(conn, None)
        if source is None:
            return
        self._per_source[source] -= 1
        if self._per_source[source] <= 0:
            del self._per_source[source]


class PenaltyBox:
    """Addresses that keep failing to log in are refused for a while.

    Each failed login adds 1 to the address's score; the score halves every `half_life` seconds.
    Once `threshold` failures come in quick succession (the score reaches threshold - 0.5, which
    leaves room for the decay between them) keys that are not registered are refused from the
    address at once, ending the connection, until the score decays below that bar, while a user
    who fumbles a few keys never notices. A registered key is never refused here: an address can
    be a NAT or a proxy shared with whoever keeps failing, and a valid key proves it is not them.
    """

    def __init__(self, threshold: int, half_life: float, *, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.half_life = half_life
        self._bar = threshold - 0.5
        self._clock = clock
        self._scores: dict[str, tuple[float, float]] = {}  # address -> (score, when)

    def score(self, address: str) -> float:
        entry = self._scores.get(address)
        if entry is None:
            return 0.0
        value, when = entry
        return value * 0.5 ** (max(0.0, self._clock() - when) / self.half_life)

    def record_failure(self, address: str, weight: float = 1.0) -> None:
        if self.threshold <= 0:
            return
        if len(self._scores) >= MAX_PENALIZED_ADDRESSES:
            self._prune()
        self._scores[address] = (self.score(address) + weight, self._clock())

    def blocked_for(self, address: str) -> float:
        """Seconds until the address may try again; 0.0 when it may now."""
        if self.threshold <= 0:
            return 0.0
        current = self.score(address)
        if current < self._bar:
            return 0.0
        # score * 0.5 ** (t / half_life) drops below the bar after this long
        return max(self.half_life * math.log2(current / self._bar), 1.0)

    def _prune(self) -> None:
        self._scores = {addr: entry for addr, entry in self._scores.items() if self.score(addr) >= 0.5}
        while len(self._scores) >= MAX_PENALIZED_ADDRESSES:
            self._scores.pop(next(iter(self._scores)))


class SessionCounter:
    """Concurrent sessions per account: one account cannot take a replica's every worker."""

    def __init__(self, limit: int):
        self.limit = limit
        self._held: Counter[str] = Counter()

    def held(self, account: str) -> int:
        return self._held[account]

    def acquire(self, account: str) -> bool:
        if self.limit > 0 and self._held[account] >= self.limit:
            return False
        self._held[account] += 1
        return True

    def release(self, account: str) -> None:
        if self._held[account] <= 1:
            self._held.pop(account, None)
        else:
            self._held[account] -= 1


@dataclass(frozen=True)
class Login:
    """Who a logged-in connection is: the account and the key it logged in with."""

    account_id: int
    account: str
    fingerprint: str


class Revocable(Protocol):
    """A logged-in connection as the counters hold it; the revocation check closes it."""

    def revoke(self) -> None: ...


class AccountConnections:
    """Logged-in connections per account: one key cannot hold a replica's every file descriptor.
    It also knows which key each connection logged in with, for the revocation check."""

    def __init__(self, limit: int):
        self.limit = limit
        self._logins: dict[Revocable, Login] = {}
        self._held: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._logins)

    def held(self, account: str) -> int:
        return self._held[account]

    def full(self, account: str) -> bool:
        return self.limit > 0 and self._held[account] >= self.limit

    def admit(self, conn: Revocable, login: Login) -> bool:
        if conn in self._logins:
            return True
        if self.full(login.account):
            return False
        self._logins[conn] = login
        self._held[login.account] += 1
        return True

    def release(self, conn: Revocable) -> None:
        """The connection closed: it no longer counts. Idempotent."""
        login = self._logins.pop(conn, None)
        if login is None:
            return
        if self._held[login.account] <= 1:
            self._held.pop(login.account, None)
        else:
            self._held[login.account] -= 1

    def fingerprints(self) -> set[str]:
        """The distinct keys of the logged-in connections."""
        return {login.fingerprint for login in self._logins.values()}

    def logins(self) -> list[tuple[Revocable, Login]]:
        return list(self._logins.items())


@dataclass
class Limits:
    """The limits of one replica, built from the settings."""

    startups: StartupGate
    penalties: PenaltyBox
    sessions: SessionCounter
    max_auth_tries: int
    connections: AccountConnections = field(default_factory=lambda: AccountConnections(0))
    # Refused-key banners per address: as many as the refused-login log lines (a user fumbling
    # keys sees every one; a flood of probes is not answered with text for each attempt).
    banners: sessionlog.RefusalLimiter = field(default_factory=lambda: sessionlog.RefusalLimiter(summaries=False))

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> Limits:
        return cls(
            startups=StartupGate(settings.max_startups, settings.max_startups_per_source),
            penalties=PenaltyBox(settings.failed_login_limit, settings.failed_login_half_life, clock=clock),
            sessions=SessionCounter(settings.max_sessions_per_account),
            max_auth_tries=settings.max_auth_tries,
            connections=AccountConnections(settings.max_connections_per_account),
            banners=sessionlog.RefusalLimiter(sessionlog.PER_ADDRESS, sessionlog.WINDOW, clock=clock, summaries=False),
        )


# -- the reason a refused connection is given ------------------------------------------------------
def too_many_startups_from(address: str, limit: int) -> str:
    return (
        f"{address} already has {limit} connections that have not logged in; close the stalled "
        "ones (or wait for them to time out) and try again"
    )
