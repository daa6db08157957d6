"""Pure report logic: the period, weekly rows, account statuses, projects, trend and verdict.

Nothing here touches the database; `build.py` feeds it the aggregates of
`gateway.registry.reports` so every rule can be tested with plain values.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from gateway.lifecycle.migration import MIGRATED, MIXED_USE, NO_EVIDENCE, MigrationState
from gateway.lifecycle.schedule import Window
from gateway.registry.audit import AuditEntry
from gateway.registry.reports import (
    AccountClient,
    AccountOverview,
    AccountProjectUse,
    CampaignDelivery,
    Delivery,
    RangeTotals,
)
from migrate.report.model import (
    ACTIVE,
    CATEGORIES,
    DORMANT,
    NEVER_USED,
    OTHER,
    QUIET,
    STATUSES,
    STILL_USING,
    USING,
    AccountReport,
    Change,
    Counts,
    Marker,
    NoticeDelivery,
    Period,
    ProjectReport,
    Trend,
    Verdict,
    Week,
    category_of,
)

UTC = dt.UTC
# A notice needs time to work: someone who uploads every few weeks has not "gone quiet" two days
# after an email. Only a notice at least this old can mark an account quiet (likely migrated).
QUIET_AFTER = dt.timedelta(days=14)
# How many whole weeks before and after a notice or brownout the trend compares.
TREND_WEEKS = 4
# A change smaller than this fraction counts as flat.
TREND_TOLERANCE = 0.10
# Campaigns sent one by one as people use the path: not a dated step to mark or compare around.
PER_USE_CAMPAIGNS = ("reminder",)


# -- the period -----------------------------------------------------------------------------------
_RELATIVE = re.compile(r"^(\d+)\s*([dw])$")


def parse_instant(text: str, *, end_of_day: bool = False) -> dt.datetime:
    """A date (YYYY-MM-DD: its start, or with `end_of_day` the start of the next day) or an ISO
    date-time (UTC unless it names an offset)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            start = dt.datetime.combine(day, dt.time(), UTC)
            return start + dt.timedelta(days=1) if end_of_day else start
        when = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is not a date; use YYYY-MM-DD or an ISO time like 2026-03-01T12:00") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_period(since: str | None, until: str | None, now: dt.datetime) -> Period:
    """`--since` (a date, or a span back from the end like 90d or 12w) and `--until` (a date,
    included whole, or a time; default now)."""
    end = parse_instant(until, end_of_day=True) if until else now.astimezone(UTC)
    text = (since or "90d").strip()
    relative = _RELATIVE.match(text.lower())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        start = end - (dt.timedelta(days=amount) if unit == "d" else dt.timedelta(weeks=amount))
    else:
        start = parse_instant(text)
    if start >= end:
        raise ValueError(f"the period is empty: --since {start:%Y-%m-%d %H:%M} is not before --until "
                         f"{end:%Y-%m-%d %H:%M} UTC; give an earlier --since or a later --until")
    return Period(start, end)


# -- weeks ----------------------------------------------------------------------------------------
WEEK_ORIGIN = dt.date(1970, 1, 5)  # a Monday: week indexes count whole ISO weeks from it
Range = tuple[dt.datetime, dt.datetime]


def week_start(index: int) -> dt.date:
    return WEEK_ORIGIN + dt.timedelta(weeks=index)


def week_of(when: dt.datetime | dt.date) -> int:
    """The index of the ISO week holding a date or an aware datetime (UTC)."""
    day = when.astimezone(UTC).date() if isinstance(when, dt.datetime) else when
    return (day - WEEK_ORIGIN).days // 7


def _monday(index: int) -> dt.datetime:
    return dt.datetime.combine(week_start(index), dt.time(), UTC)


def table_weeks(period: Period) -> list[tuple[int, Range]]:
    """The ISO weeks the period touches, each with its part inside the period."""
    first, last = week_of(period.since), week_of(period.until - dt.timedelta(microseconds=1))
    return [(i, (max(_monday(i), period.since), min(_monday(i + 1), period.until))) for i in range(first, last + 1)]


def trend_weeks(period: Period) -> list[tuple[int, Range]]:
    """The whole weeks the trend compares: from TREND_WEEKS before the period's first week to the
    last week that ended by the end of the period."""
    first = week_of(period.since) - TREND_WEEKS
    last = week_of(period.until) - 1  # the week holding `until` has not ended (or ends exactly then)
    return [(i, (_monday(i), _monday(i + 1))) for i in range(first, last + 1)]


def weeks(period: Period, totals: dict[Range, RangeTotals],
          migrations: Mapping[int, int] | None = None) -> tuple[Week, ...]:
    """One row per ISO week the period touches, zeros included, oldest first. `migrations`:
    week index -> accounts whose migration fell in that week (`migrations_per_week`)."""
    migrations = migrations or {}
    rows = []
    for index, span in table_weeks(period):
        found = totals[span]
        counted = dict(found.by_category)
        counted[OTHER] = found.sessions - sum(counted.values())
        start = week_start(index)
        iso = start.isocalendar()
        partial = span != (_monday(index), _monday(index + 1))
        rows.append(Week(start, f"{iso.year}-W{iso.week:02d}", partial, Counts(counted), found.accounts,
                         migrations.get(index, 0)))
    return tuple(rows)


def migrations_per_week(accounts: Sequence[AccountReport], period: Period) -> dict[int, int]:
    """Week index -> migrated accounts whose migration (the last of their projects' releases made
    another way) was published in that week of the period."""
    found: dict[int, int] = defaultdict(int)
    for account in accounts:
        if account.status == MIGRATED and account.migrated_at and period.contains(account.migrated_at):
            found[week_of(account.migrated_at)] += 1
    return dict(found)


def week_samples(period: Period, totals: dict[Range, RangeTotals]) -> dict[int, RangeTotals]:
    return {index: totals[span] for index, span in trend_weeks(period)}


# -- accounts -------------------------------------------------------------------------------------
def account_status(*, last_use: dt.datetime | None, notices: Sequence[dt.datetime],
                   notice_start: dt.datetime | None, period: Period, migration: str | None = None) -> str:
    """Where an account stands, as of the end of the period (see model.STATUS_HELP).
    `migration` is what the index says (MIGRATED, MIXED_USE or None): evidence beats the guesses
    from sessions and notices; mixed use marks an account that still uses the path."""
    if last_use is None:
        return NEVER_USED
    if migration == MIGRATED:
        return MIGRATED
    status = _status_from_sessions(last_use, notices, notice_start, period)
    if migration == MIXED_USE and status in USING:
        return MIXED_USE
    return status


def _status_from_sessions(last_use: dt.datetime, notices: Sequence[dt.datetime], notice_start: dt.datetime | None,
                          period: Period) -> str:
    reference = max(notices) if notices else notice_start
    if reference is not None and last_use < reference <= period.until - QUIET_AFTER:
        return QUIET
    if last_use < period.since:
        return DORMANT
    if any(sent <= last_use for sent in notices):
        return STILL_USING
    return ACTIVE


def _sorted_set(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if v}))


def account_reports(overview: Sequence[AccountOverview], uses: Sequence[AccountProjectUse],
                    clients: Sequence[AccountClient], deliveries: Sequence[Delivery], *,
                    notice_start: dt.datetime | None, period: Period,
                    migrations: Mapping[int, MigrationState] | None = None) -> tuple[AccountReport, ...]:
    migrations = migrations or {}
    uses_of: dict[int | None, list[AccountProjectUse]] = defaultdict(list)
    for use in uses:
        uses_of[use.account_id].append(use)
    clients_of: dict[int | None, list[AccountClient]] = defaultdict(list)
    for client in clients:
        clients_of[client.account_id].append(client)
    notices: dict[int, list[NoticeDelivery]] = defaultdict(list)
    for delivery in deliveries:
        notices[delivery.account_id].append(NoticeDelivery(delivery.campaign, delivery.first_sent_at))
    reports = []
    for account in overview:
        mine = uses_of.get(account.id, [])
        counts: dict[str, int] = defaultdict(int)
        for use in mine:
            counts[category_of(use.outcome)] += use.sessions
        uploads = [u.last_at for u in mine if category_of(u.outcome) == "forwarded"]
        banners = clients_of.get(account.id, [])
        told = tuple(sorted(notices.get(account.id, []), key=lambda n: (n.sent_at, n.campaign)))
        migration = migrations.get(account.id, NO_EVIDENCE)
        reports.append(AccountReport(
            name=account.name, email=account.email,
            status=account_status(last_use=account.last_use, notices=[n.sent_at for n in told],
                                  notice_start=notice_start, period=period, migration=migration.status),
            exempt=account.exempt, disabled=account.disabled, active_keys=account.active_keys,
            weak_key=account.weak_key, last_use=account.last_use, counts=Counts(dict(counts)),
            last_upload=max(uploads, default=None),
            projects=_sorted_set(u.project for u in mine),
            fingerprints=_sorted_set(c.key_fingerprint for c in banners),
            ssh_clients=_sorted_set(c.ssh_client_version for c in banners),
            user_agents=_sorted_set(c.user_agent for c in banners),
            notices=told,
            evidence=migration.evidence,
            migrated_at=migration.migrated_at,
        ))
    order = {status: i for i, status in enumerate(STATUSES)}
    reports.sort(key=lambda a: (order[a.status], -a.sessions, a.name))
    return tuple(reports)


def unattributed_sessions(uses: Sequence[AccountProjectUse], known_ids: set[int]) -> int:
    """Sessions in the period whose account no longer exists."""
    return sum(u.sessions for u in uses if u.account_id is None or u.account_id not in known_ids)


# -- projects -------------------------------------------------------------------------------------
DELETED_ACCOUNT = "(deleted account)"


def project_reports(uses: Sequence[AccountProjectUse], names: dict[int, str]) -> tuple[ProjectReport, ...]:
    """Per project named in the period, most recently attempted first."""
    sessions: dict[str, int] = defaultdict(int)
    uploads: dict[str, int] = defaultdict(int)
    last_upload: dict[str, dt.datetime] = {}
    last_attempt: dict[str, dt.datetime] = {}
    accounts: dict[str, set[str]] = defaultdict(set)
    for use in uses:
        if not use.project:
            continue
        project = use.project
        sessions[project] += use.sessions
        accounts[project].add(names.get(use.account_id, DELETED_ACCOUNT) if use.account_id else DELETED_ACCOUNT)
        if project not in last_attempt or use.last_at > last_attempt[project]:
            last_attempt[project] = use.last_at
        if category_of(use.outcome) == "forwarded":
            uploads[project] += use.sessions
            if project not in last_upload or use.last_at > last_upload[project]:
                last_upload[project] = use.last_at
    reports = [ProjectReport(name=p, sessions=sessions[p], uploads=uploads[p], last_upload=last_upload.get(p),
                             last_attempt=last_attempt[p], accounts=tuple(sorted(accounts[p])))
               for p in sessions]
    reports.sort(key=lambda p: (p.last_attempt, p.name), reverse=True)
    return tuple(reports)


def totals(week_rows: Sequence[Week]) -> Counts:
    summed: dict[str, int] = defaultdict(int)
    for week in week_rows:
        for name in CATEGORIES:
            summed[name] += week.counts[name]
    return Counts(dict(summed))


# -- markers and trend ------------------------------------------------------------------------------
_KIND_LABELS = {"notice": "notice phase", "brownout": "brownout", "sunset": "sunset", "pause": "pause"}


def markers(windows: Sequence[Window], campaigns: Sequence[CampaignDelivery]) -> tuple[Marker, ...]:
    """Every dated step of the retirement, oldest first; campaigns from their first delivery."""
    found = [Marker(w.kind, _KIND_LABELS.get(w.kind, w.kind), w.starts_at, w.ends_at) for w in windows]
    found += [Marker("campaign", f"campaign '{c.campaign}' ({c.delivered} delivered)", c.first_sent_at,
                     c.last_sent_at if c.last_sent_at != c.first_sent_at else None)
              for c in campaigns if c.campaign not in PER_USE_CAMPAIGNS]
    return tuple(sorted(found, key=lambda m: (m.starts_at, m.kind)))


def trend(marker: Marker, samples: dict[int, RangeTotals], period: Period) -> Trend | None:
    """Mean weekly usage in the whole weeks before the marker's week against as many whole weeks
    after the week it ended (a brownout's own days, with their retries, are left out). None for
    a marker outside the period or a pause (which is not a message to users)."""
    if marker.kind == "pause" or not period.contains(marker.starts_at):
        return None
    first_after = week_of(marker.ends_at if marker.kind == "brownout" and marker.ends_at else marker.starts_at) + 1
    before = [samples[i] for i in range(week_of(marker.starts_at) - TREND_WEEKS, week_of(marker.starts_at))
              if i in samples]
    after = [samples[i] for i in range(first_after, first_after + TREND_WEEKS) if i in samples]
    size = min(len(before), len(after))
    before, after = before[len(before) - size:], after[:size]

    def mean(rows: Sequence[RangeTotals], value: Callable[[RangeTotals], float]) -> float:
        return sum(value(r) for r in rows) / len(rows) if rows else 0.0

    b_sessions, a_sessions = mean(before, lambda r: r.sessions), mean(after, lambda r: r.sessions)
    b_accounts, a_accounts = mean(before, lambda r: r.accounts), mean(after, lambda r: r.accounts)
    return Trend(marker=marker, weeks=size, before_sessions=b_sessions, after_sessions=a_sessions,
                 before_accounts=b_accounts, after_accounts=a_accounts,
                 direction=trend_direction(size, b_sessions, a_sessions, b_accounts, a_accounts))


def trend_direction(weeks: int, b_sessions: float, a_sessions: float, b_accounts: float, a_accounts: float) -> str:
    """Accounts first (people matter more than retries), then sessions."""
    if weeks == 0:
        return "too early"
    if b_sessions == 0 and a_sessions == 0:
        return "no usage"
    for was, now in ((b_accounts, a_accounts), (b_sessions, a_sessions)):
        if now < was * (1 - TREND_TOLERANCE):
            return "falling"
        if now > was * (1 + TREND_TOLERANCE):
            return "rising"
    return "flat"


def overall_trend(week_rows: Sequence[Week]) -> str:
    """One sentence comparing the first and the last (up to) four whole weeks of the period."""
    if not any(w.sessions for w in week_rows):
        return "No SSH session in this period."
    whole = [w for w in week_rows if not w.partial]
    if len(whole) < 2:
        return "The period has fewer than two whole weeks: too short to show a trend."
    size = min(4, len(whole) // 2)
    first, last = whole[:size], whole[-size:]

    def mean(rows: Sequence[Week], value: Callable[[Week], float]) -> float:
        return sum(value(w) for w in rows) / len(rows)

    s0, s1 = mean(first, lambda w: w.sessions), mean(last, lambda w: w.sessions)
    a0, a1 = mean(first, lambda w: w.active_accounts), mean(last, lambda w: w.active_accounts)
    if a1 < a0 * (1 - TREND_TOLERANCE) or (a1 <= a0 and s1 < s0 * (1 - TREND_TOLERANCE)):
        word = "falling"
    elif a1 > a0 * (1 + TREND_TOLERANCE) or (a1 >= a0 and s1 > s0 * (1 + TREND_TOLERANCE)):
        word = "rising"
    else:
        word = "flat"
    weeks_word = "week" if size == 1 else f"{size} weeks"
    return (f"Usage is {word}: {s0:.1f} sessions and {a0:.1f} active accounts a week in the first "
            f"{weeks_word} of the period, {s1:.1f} and {a1:.1f} in the last {weeks_word}.")


# -- verdict --------------------------------------------------------------------------------------
def _names(accounts: Sequence[AccountReport], limit: int = 5) -> str:
    shown = ", ".join(a.name for a in accounts[:limit])
    return shown + (f" and {len(accounts) - limit} more" if len(accounts) > limit else "")


def verdict(accounts: Sequence[AccountReport], trends: Sequence[Trend], week_rows: Sequence[Week],
            *, sunset: dt.datetime | None, until: dt.datetime | None = None) -> Verdict:
    """Who would break if the path were switched off at the end of the period: enabled accounts,
    not exempt, with a usable key, that used the path in the period and neither went quiet nor
    migrated (the index shows their releases made another way)."""
    using = [a for a in accounts if a.status in USING and not a.disabled and a.active_keys]
    migrated = tuple(a for a in accounts if a.status == MIGRATED)
    would_break = tuple(a for a in using if not a.exempt)
    exempt = tuple(a for a in using if a.exempt)
    if would_break:
        count = f"{len(would_break)} account{'s' if len(would_break) != 1 else ''}"
        if sunset is None:
            what = f"{count} would break if the path were switched off today"
        elif until is not None and sunset <= until:
            what = f"{count} still used or tried the path after the sunset on {sunset:%Y-%m-%d}"
        else:
            what = f"{count} would break at the sunset on {sunset:%Y-%m-%d} if it were today"
        headline = (f"Not yet safe to switch off: {what} ({_names(would_break)}); contact them before "
                    "switching off.")
    elif any(w.sessions for w in week_rows):
        headline = ("Safe to switch off: every account that used the SSH path in this period is exempt, "
                    "disabled, without keys, migrated, or quiet since its notice.")
    else:
        headline = "Safe to switch off: nobody used the SSH path in this period."
    return Verdict(safe=not would_break, headline=headline, would_break=would_break,
                   exempt_still_using=exempt, trend=tuple(trends), overall=overall_trend(week_rows),
                   migrated=migrated)


def empty_verdict(headline: str, week_rows: Sequence[Week]) -> Verdict:
    """The verdict on a registry with no accounts or no keys: nothing to judge, so never safe."""
    return Verdict(safe=False, headline=headline, would_break=(), exempt_still_using=(), trend=(),
                   overall=overall_trend(week_rows), empty=True)


# -- the admin journal ----------------------------------------------------------------------------
def _journal_time(value: str | None) -> str:
    """A time as the journal stores it (2027-09-01T00:00:00Z) as the report writes it."""
    if not value:
        return "-"
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")


def _window_span(values: dict) -> str:
    span = _journal_time(values.get("starts_at"))
    return span + (f" to {_journal_time(values['ends_at'])}" if values.get("ends_at") else "")


def change_label(entry: AuditEntry) -> str:
    """One line for a journal entry on the report's timeline: what changed in the schedule, or
    what a notify run sent."""
    if entry.target_kind == "campaign":
        sent = entry.after or {}
        failed = f", {sent['failed']} failed" if sent.get("failed") else ""
        return f"notify '{entry.target}': {sent.get('sent', 0)} sent{failed}"
    what, before, after = entry.target or "schedule", entry.before, entry.after
    if before is None and after is not None:
        return f"{what} set: {_window_span(after)}"
    if after is None and before is not None:
        return f"{what} removed (was {_window_span(before)})"
    if before is None or after is None:
        return f"{what} changed"
    if after.get("state") == "cancelled" and before.get("state") != "cancelled":
        return f"{what} cancelled (was {_window_span(before)})"
    if before.get("starts_at") != after.get("starts_at"):
        return f"{what} moved: {_journal_time(before.get('starts_at'))} -> {_journal_time(after.get('starts_at'))}"
    if before.get("ends_at") != after.get("ends_at"):
        return f"{what} ends {_journal_time(after.get('ends_at'))}"
    return f"{what} changed"


def changes(entries: Sequence[AuditEntry]) -> tuple[Change, ...]:
    """The schedule changes and notify runs of the journal, oldest first."""
    return tuple(Change(at=entry.at, kind=entry.target_kind, label=change_label(entry), actor=entry.actor,
                        reason=entry.reason)
                 for entry in entries if entry.target_kind in ("schedule", "campaign"))
