"""Who gets which campaign email, and what it says: pure selection, idempotence and context.

Idempotence lives in the registry's `notification_sends`: one row per (campaign, account) message,
claimed as `sending` before the message goes to the mail server and marked `sent` once the server
took it. A row still `sending` after a run means the run died (or the connection broke) while
that message was in flight: it may or may not have been delivered. Such a message is never sent
again automatically; it is reported as "maybe sent (interrupted)" with its Message-ID, so the
admin can look it up in the mail server's log, and `notify --retry-interrupted` sends it again on
purpose. `failed` rows (the server refused, or was unreachable before taking the message) are
retried by the next run. With `--repeat-after`, only messages sent within that window count.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import jinja2

from gateway.lifecycle.schedule import Schedule, ScheduleError, format_span, format_utc
from gateway.registry import Account, KeyRecord, NotificationSend
from gateway.render import environment
from gateway.settings import Settings

# Skip reasons, in the order they are checked and reported.
DISABLED = "disabled"
EXEMPT = "exempt"
HAS_MIGRATED = "migrated (evidence on the index; --include-migrated sends anyway)"
NO_EMAIL = "no email"
INACTIVE = "not active in the period"
ALREADY_SENT = "already sent"
INTERRUPTED = "maybe sent (interrupted run)"
OVER_LIMIT = "over --limit (next run)"
ALREADY_EMAILED = "emailed within the repeat window"
DUPLICATE = "duplicate reminder"
SKIP_ORDER = (DISABLED, EXEMPT, HAS_MIGRATED, NO_EMAIL, INACTIVE, ALREADY_SENT, ALREADY_EMAILED, DUPLICATE,
              INTERRUPTED, OVER_LIMIT)


@dataclass(frozen=True)
class Audience:
    """Who a campaign is for: everyone, accounts active in a recent period, or named accounts."""

    everyone: bool = False
    active_since: dt.timedelta | None = None
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Planned:
    account: Account
    # Rows left `sending` by an interrupted run that the admin asked to send again.
    retry_of: tuple[int, ...] = ()
    # For a queued per-use reminder: its row and the time of the use that queued it.
    queued: NotificationSend | None = None


@dataclass
class CampaignPlan:
    send: list[Planned] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    interrupted: list[tuple[str, NotificationSend]] = field(default_factory=list)  # (account, row)
    unknown: list[str] = field(default_factory=list)
    # Queued reminders that will never be sent, with the reason (recorded as `skipped`).
    dropped: list[tuple[NotificationSend, str]] = field(default_factory=list)


def _delivered_since(row: NotificationSend, since: dt.datetime | None) -> bool:
    return since is None or (row.sent_at or row.created_at) >= since


def plan_campaign(accounts: Iterable[Account], last_use: dict[int, dt.datetime],
                  sends: Iterable[NotificationSend], audience: Audience, now: dt.datetime, *,
                  repeat_after: dt.timedelta | None = None, retry_interrupted: bool = False,
                  limit: int | None = None, migrated: Collection[int] = ()) -> CampaignPlan:
    """Decide, for one campaign, who gets the message in this run and why the others do not.
    `migrated`: the ids of accounts the index shows have switched (they are skipped)."""
    plan = CampaignPlan()
    accounts = sorted(accounts, key=lambda a: a.name)
    by_name = {a.name: a for a in accounts}
    if audience.names:
        plan.unknown = [n for n in dict.fromkeys(audience.names) if n not in by_name]
        chosen = [by_name[n] for n in dict.fromkeys(audience.names) if n in by_name]
    else:
        chosen = accounts
    since = now - repeat_after if repeat_after else None
    rows: dict[int, list[NotificationSend]] = {}
    for row in sends:
        rows.setdefault(row.account_id, []).append(row)

    for account in chosen:
        reason = _skip_reason(account, last_use.get(account.id), audience, now, migrated)
        if reason:
            plan.skipped[reason] += 1
            continue
        history = [r for r in rows.get(account.id, ()) if _delivered_since(r, since)]
        if any(r.status == "sent" for r in history):
            plan.skipped[ALREADY_SENT] += 1
            continue
        in_flight = [r for r in history if r.status == "sending"]
        if in_flight and not retry_interrupted:
            plan.skipped[INTERRUPTED] += 1
            plan.interrupted.extend((account.name, r) for r in in_flight)
            continue
        plan.send.append(Planned(account, retry_of=tuple(r.id for r in in_flight)))

    if limit is not None and len(plan.send) > limit:
        plan.skipped[OVER_LIMIT] += len(plan.send) - limit
        plan.send = plan.send[:limit]
    return plan


def _skip_reason(account: Account, last_use: dt.datetime | None, audience: Audience,
                 now: dt.datetime, migrated: Collection[int]) -> str | None:
    if account.disabled:
        return DISABLED
    if account.exempt:
        return EXEMPT
    if account.id in migrated:
        return HAS_MIGRATED
    if not account.email:
        return NO_EMAIL
    if (audience.active_since is not None and not audience.names and not audience.everyone
            and (last_use is None or last_use < now - audience.active_since)):
        return INACTIVE
    return None


def plan_reminders(queued: Iterable[NotificationSend], accounts: Iterable[Account],
                   sends: Iterable[NotificationSend], now: dt.datetime, repeat_after: dt.timedelta, *,
                   limit: int | None = None, migrated: Collection[int] = ()) -> CampaignPlan:
    """Which queued per-use reminders to send: one per account, none to an account emailed
    within the repeat window (by any campaign) since the reminder was queued, none to an
    account that has migrated since."""
    plan = CampaignPlan()
    by_id = {a.id: a for a in accounts}
    since = now - repeat_after
    delivered = [r for r in sends if r.status in ("sent", "sending") and _delivered_since(r, since)]
    seen: set[int] = set()
    for row in sorted(queued, key=lambda r: (r.created_at, r.id)):
        account = by_id.get(row.account_id)
        reason = None
        if account is None:
            reason = DISABLED
        elif row.account_id in seen:
            reason = DUPLICATE
        else:
            reason = _skip_reason(account, None, Audience(everyone=True), now, migrated)
        if reason is None and any(r.account_id == row.account_id for r in delivered):
            reason = ALREADY_EMAILED
        if reason is not None:
            plan.skipped[reason] += 1
            plan.dropped.append((row, reason))
            continue
        assert account is not None  # a missing account was skipped above
        seen.add(row.account_id)
        plan.send.append(Planned(account, queued=row))
    if limit is not None and len(plan.send) > limit:
        plan.skipped[OVER_LIMIT] += len(plan.send) - limit
        plan.send = plan.send[:limit]
    return plan


# -- what the message says ------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """The account's own use of the SSH path, quoted in its emails."""

    keys: list[KeyRecord]
    projects: list[dict]
    last_use: dt.datetime | None
    clients: list[dict]


def email_context(campaign: str, account: Account, evidence: Evidence, schedule: Schedule,
                  settings: Settings, now: dt.datetime, *, repeat_after: dt.timedelta | None = None,
                  used_at: dt.datetime | None = None) -> dict:
    from gateway.phrases import Place

    upcoming = schedule.upcoming_brownouts(now)
    return {
        "campaign": campaign,
        "account": account,
        "keys": evidence.keys,
        "projects": evidence.projects,
        "last_use": evidence.last_use,
        "clients": evidence.clients,
        "used_at": used_at,
        "now": now,
        "notice_start": schedule.notice_start,
        "sunset": schedule.sunset,
        "brownouts": upcoming,
        "next_brownout": upcoming[0] if upcoming else None,
        "days_left": (schedule.sunset - now).days if schedule.sunset and schedule.sunset > now else None,
        "guide": Place.from_settings(settings).ssh("guide"),
        "host": settings.public_host,
        "token_url": settings.token_url,
        "help_url": settings.help_url,
        "repeat_days": int(repeat_after.total_seconds() // 86400) if repeat_after else None,
        "utc": format_utc,
        "span": format_span,
    }


@lru_cache(maxsize=1)
def _email_environment() -> jinja2.Environment:
    # The shared environment escapes `.html` files; these HTML bodies are `.html.j2`.
    return environment().overlay(autoescape=jinja2.select_autoescape(
        enabled_extensions=("html", "html.j2"), default_for_string=False))


def campaigns() -> list[str]:
    """The campaigns that have templates (folders under templates/email/)."""
    names = {name.split("/")[1] for name in _email_environment().list_templates()
             if name.startswith("email/") and name.endswith("/subject.txt.j2")}
    return sorted(names)


def render_email(campaign: str, context: dict) -> tuple[str, str, str]:
    """(subject, text body, HTML body) of one message."""
    env = _email_environment()
    subject = env.get_template(f"email/{campaign}/subject.txt.j2").render(context)
    text = env.get_template(f"email/{campaign}/body.txt.j2").render(context)
    html = env.get_template(f"email/{campaign}/body.html.j2").render(context)
    return " ".join(subject.split()), text, html


# -- option values --------------------------------------------------------------------------------
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h))?\s*$", re.IGNORECASE)
_PER = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_rate(text: str) -> float:
    """`5/s`, `300/m`, `1000/h` or `5` -> messages per second."""
    match = _RATE.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ScheduleError(f"'{text}' is not a rate; write messages per time unit: 5/s, 300/m or 1000/h")
    return float(match.group(1)) / _PER[(match.group(2) or "s").lower()]


def safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "account"
