"""The deprecation report as values: what `build` computes and every renderer shows.

Outcome categories and account statuses are defined here, once; the renderers only present them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from gateway.lifecycle.migration import FIRST_SEEN, FROM_INDEX, MIGRATED, MIXED_USE, Evidence

# Report category -> the upload-event outcomes it counts. Everything else the gateway records
# (answered locally, no credential, refused by a key's project policy, internal errors) is "other".
# "forwarding" is written before an upload is handed to the upload server and replaced by the
# outcome afterwards; a row still "forwarding" is one whose replica died meanwhile (or that is in
# flight right now): it may or may not have been published, like an "unknown" one, whose answer was
# lost or an error after the upload server had the whole upload.
OUTCOME_CATEGORIES: dict[str, tuple[str, ...]] = {
    "forwarded": ("forwarded",),
    "refused_upstream": ("refused_upstream",),
    "refused_schedule": ("refused_schedule",),
    "bad_request": ("bad_request",),
    "client_aborted": ("client_aborted",),
    "upstream_error": ("upstream_error",),
    "unknown": ("forwarding", "unknown"),
}
OTHER = "other"
CATEGORIES: tuple[str, ...] = (*OUTCOME_CATEGORIES, OTHER)
CATEGORY_LABELS = {
    "forwarded": "forwarded",
    "refused_upstream": "refused by the upstream",
    "refused_schedule": "refused by brownout or sunset",
    "bad_request": "bad request",
    "client_aborted": "client aborted",
    "upstream_error": "upstream error",
    "unknown": "outcome unknown",
    OTHER: "other",
}
_CATEGORY_OF = {outcome: name for name, outcomes in OUTCOME_CATEGORIES.items() for outcome in outcomes}


def category_of(outcome: str) -> str:
    return _CATEGORY_OF.get(outcome, OTHER)


# Account statuses, in the order an admin cares about them. MIXED_USE ("mixed-use": released another
# way, then used the path again) and MIGRATED ("migrated": the index shows a release made another
# way since the last SSH upload of every project) come from the index, judged by
# gateway.lifecycle.migration, which the gateway's per-use reminder also asks.
ACTIVE = "active"                               # used in the period; no notice has reached it yet
STILL_USING = "notified-still-using"            # used the path after a delivered notice
QUIET = "quiet-since-notice"                    # no session since its notice: likely migrated
DORMANT = "dormant"                             # used before the period only, no notice since
NEVER_USED = "never-used"                       # registered but no session at all
STATUSES = (STILL_USING, MIXED_USE, ACTIVE, DORMANT, QUIET, MIGRATED, NEVER_USED)
STATUS_HELP = {
    STILL_USING: "was sent a notice and used the SSH path after it",
    MIXED_USE: ("used the SSH path in this period, although it had released a project another way after "
                "uploading it over SSH: still depends on the path"),
    ACTIVE: "used the SSH path in this period and has not been sent a notice",
    DORMANT: "last used the SSH path before this period, and no notice has gone out since",
    QUIET: "no SSH session since its latest notice (email, else the start of the notice phase): likely migrated",
    MIGRATED: ("every project it uploaded over SSH has a release on the index made another way since its last "
               "SSH upload of that project (pypissh-migrate evidence refresh)"),
    NEVER_USED: "has keys registered but never opened an SSH session",
}
# The statuses of accounts that still use the path: they would break at the sunset.
USING = (STILL_USING, MIXED_USE, ACTIVE)
# How the publication time of a release on the index is known.
KNOWN_FROM = {FROM_INDEX: "upload time on the index", FIRST_SEEN: "first seen by evidence refresh"}
NOT_READ_YET = ("The index has not been read yet: run `pypissh-migrate evidence refresh` to see which accounts "
                "have migrated.")


@dataclass(frozen=True)
class Period:
    """Half-open: since <= t < until, aware UTC."""

    since: dt.datetime
    until: dt.datetime

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400

    def contains(self, when: dt.datetime) -> bool:
        return self.since <= when < self.until


@dataclass(frozen=True)
class Counts:
    """Sessions by category; `total` is their sum."""

    values: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, category: str) -> int:
        return self.values.get(category, 0)

    @property
    def total(self) -> int:
        return sum(self.values.values())

    def as_dict(self) -> dict[str, int]:
        return {name: self[name] for name in CATEGORIES}


@dataclass(frozen=True)
class Week:
    start: dt.date  # the Monday
    label: str  # ISO week, e.g. 2026-W06
    partial: bool  # the period covers only part of it
    counts: Counts
    active_accounts: int
    migrations: int = 0  # accounts whose migration (the last release of theirs made another way) fell in it

    @property
    def sessions(self) -> int:
        return self.counts.total


@dataclass(frozen=True)
class NoticeDelivery:
    campaign: str
    sent_at: dt.datetime


@dataclass(frozen=True)
class AccountReport:
    name: str
    email: str | None
    status: str
    exempt: bool
    disabled: bool
    active_keys: int
    weak_key: bool
    last_use: dt.datetime | None  # ever, up to the end of the period
    counts: Counts  # sessions in the period
    last_upload: dt.datetime | None  # last forwarded upload in the period
    projects: tuple[str, ...]
    fingerprints: tuple[str, ...]
    ssh_clients: tuple[str, ...]
    user_agents: tuple[str, ...]
    notices: tuple[NoticeDelivery, ...]
    # From the index: per project, a release made another way after its SSH uploads (see
    # gateway.lifecycle.migration); for a migrated account one per project it uploaded over SSH.
    evidence: tuple[Evidence, ...] = ()
    migrated_at: dt.datetime | None = None

    @property
    def sessions(self) -> int:
        return self.counts.total


@dataclass(frozen=True)
class ProjectReport:
    name: str
    sessions: int
    uploads: int  # forwarded
    last_upload: dt.datetime | None
    last_attempt: dt.datetime
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class Marker:
    """A dated event of the retirement: notice phase, email campaign, brownout, sunset, pause."""

    kind: str  # notice | campaign | brownout | sunset | pause
    label: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None = None


@dataclass(frozen=True)
class Change:
    """An admin's change from the journal (a schedule change or a notify run), at the time it was
    made, with who made it and why."""

    at: dt.datetime
    kind: str  # schedule | campaign
    label: str
    actor: str
    reason: str | None = None


@dataclass(frozen=True)
class Trend:
    """Mean weekly usage in the whole weeks before a marker against as many whole weeks after it
    (after its end, for a brownout): sessions and distinct accounts per week."""

    marker: Marker
    weeks: int  # compared on each side; 0 when no whole week has passed since
    before_sessions: float
    after_sessions: float
    before_accounts: float
    after_accounts: float
    direction: str  # falling | flat | rising | too early | no usage


@dataclass(frozen=True)
class Verdict:
    safe: bool
    headline: str
    would_break: tuple[AccountReport, ...]  # enabled, not exempt, still using the path
    exempt_still_using: tuple[AccountReport, ...]  # keep working after sunset
    trend: tuple[Trend, ...]
    overall: str  # one sentence on the weekly line
    migrated: tuple[AccountReport, ...] = ()  # left off would_break: the index shows they switched
    empty: bool = False  # the registry has no accounts or no keys: nothing to judge, never "safe"

    @property
    def state(self) -> str:
        """`empty`, `safe` or `not-safe`: the verdict for scripts."""
        return "empty" if self.empty else ("safe" if self.safe else "not-safe")


@dataclass(frozen=True)
class Report:
    generated_at: dt.datetime
    period: Period
    weeks: tuple[Week, ...]
    accounts: tuple[AccountReport, ...]
    projects: tuple[ProjectReport, ...]
    markers: tuple[Marker, ...]
    verdict: Verdict
    totals: Counts
    unattributed_sessions: int = 0  # events whose account was deleted since
    evidence_read_at: dt.datetime | None = None  # the index's last read (None: never read)
    database: str = ""  # the registry it was read from (URL, password masked)
    changes: tuple[Change, ...] = ()  # schedule changes and notify runs in the period, from the journal

    def status_counts(self) -> dict[str, int]:
        found = {status: 0 for status in STATUSES}
        for account in self.accounts:
            found[account.status] += 1
        return found
