"""The deprecation notice: who, what, when, how and where, rendered for every channel users see.

One `Notice` value, built from the schedule, the clock and the session, is rendered from the
templates under `templates/notice/` into the stderr notice of every upload session, the SSH login
banner, the HTTP headers of every legacy reply and the 410 reason a refused upload prints. The
dates appear from the notice start on (and in every brownout, after the sunset and during a
pause); before it users see only the short deprecation line.

Also here: queueing the per-use reminder email, off the session's critical path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from gateway.errors import one_line
from gateway.lifecycle.migration import MIGRATED
from gateway.lifecycle.schedule import Decision, Schedule, Window, decide, format_span, format_utc
from gateway.phrases import NOTHING_PUBLISHED, Place
from gateway.registry import Identity, Registry
from gateway.render import render
from gateway.settings import Settings

log = logging.getLogger(__name__)

HEADER = "X-PyPI-SSH-Deprecation"


class NoticeServices(Protocol):
    """What the banner and the reminders use of the process's `Services` (gateway/services.py)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def registry_executor(self) -> Executor: ...
    @property
    def clock(self) -> Callable[[], dt.datetime]: ...
    async def current_schedule(self) -> Schedule: ...


@dataclass(frozen=True)
class Notice:
    phase: str  # normal | notice | brownout | sunset | paused
    # Not part of equality: the texts depend on the phase and the dates, not on the instant, so
    # equal notices share one cached rendering.
    now: dt.datetime = field(compare=False)
    allowed: bool
    url: str
    token_url: str
    guide: str  # the ssh command that prints the user's own steps
    notice_start: dt.datetime | None = None
    sunset: dt.datetime | None = None
    brownout: Window | None = None  # in force now, or the next one
    pause: Window | None = None
    account: str | None = None
    fingerprint: str | None = None
    project: str | None = None
    exempt: bool = False
    exempted: bool = False  # exempt, and that is why this upload may go through

    @property
    def shows_dates(self) -> bool:
        return self.phase != "normal"


def build_notice(settings: Settings, schedule: Schedule, now: dt.datetime, *, identity: Identity | None = None,
                 project: str | None = None, decision: Decision | None = None) -> Notice:
    """The notice for one session (`identity` given) or for everyone (the login banner)."""
    exempt = bool(identity is not None and identity.exempt)
    decision = decision or decide(schedule, now, exempt=exempt)
    brownout = decision.window if decision.phase == "brownout" else schedule.next_brownout(now)
    return Notice(
        phase=decision.phase,
        now=now,
        allowed=decision.allowed,
        url=settings.help_url,
        token_url=settings.token_url,
        guide=Place.from_settings(settings).ssh("guide"),
        notice_start=schedule.notice_start,
        sunset=schedule.sunset,
        brownout=brownout,
        pause=schedule.pause,
        account=identity.account_name if identity is not None else None,
        fingerprint=identity.fingerprint if identity is not None else None,
        project=project,
        exempt=exempt,
        exempted=decision.exempted,
    )


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1024)
def _render(name: str, notice: Notice) -> str:
    return render(f"notice/{name}", n=notice, utc=format_utc, span=format_span, iso=_iso,
                  nothing_published=NOTHING_PUBLISHED)


def session_text(notice: Notice) -> str:
    """The stderr notice of an upload session."""
    return _render("session.txt.j2", notice)


def banner_text(notice: Notice) -> str | None:
    """The login banner, once the notice phase has started; None before."""
    return _render("banner.txt.j2", notice) if notice.shows_dates else None


def refusal_reason(notice: Notice) -> str:
    """The one-line 410 reason for an upload the schedule refuses."""
    return one_line(_render("refusal.txt.j2", notice))


def header_lines(notice: Notice) -> list[tuple[str, str]]:
    """HTTP headers for every legacy reply: ours, plus the standard Sunset (RFC 8594) and
    Deprecation (RFC 9745) headers once the dates are public."""
    headers = [(HEADER, one_line(_render("header.txt.j2", notice), limit=1000))]
    if notice.shows_dates:
        if notice.notice_start is not None:
            headers.append(("Deprecation", f"@{int(notice.notice_start.timestamp())}"))
        if notice.sunset is not None:
            headers.append(("Sunset", email.utils.format_datetime(notice.sunset.astimezone(dt.UTC),
                                                                  usegmt=True)))
        headers.append(("Link", f'<{notice.url}>; rel="deprecation"; type="text/html"'))
    return headers


async def auth_banner(services: NoticeServices) -> str | None:
    """The banner for a new connection; None when there is nothing to announce or on a failure
    (a login never waits on, or fails because of, the banner)."""
    try:
        schedule = await services.current_schedule()
        return banner_text(build_notice(services.settings, schedule, services.clock()))
    except Exception:
        log.exception("could not build the login banner")
        return None


# -- per-use reminders ----------------------------------------------------------------------------
def wants_reminder(settings: Settings, identity: Identity, notice: Notice) -> bool:
    """Queue a reminder for this use? Only once users are being told (the notice phase), only for
    accounts campaigns would mail (an address, not exempt), and only when reminders are on."""
    return (settings.reminder_repeat_days > 0 and notice.shows_dates and not identity.exempt
            and bool(identity.email))


def queue_reminder_soon(services: NoticeServices, identity: Identity, when: dt.datetime) -> asyncio.Future:
    """Queue the per-use reminder in a worker thread without waiting for it: the session's answer
    never waits on this, and the mail itself goes out only with `pypissh-migrate notify --reminders`.
    An account the index shows has migrated gets none: a stray attempt (a forgotten cron job
    refused by a brownout, say) is no reason to mail someone who has switched. An upload that
    went through makes it mixed use, not migrated, and the reminder is queued. Returns the
    worker's future."""
    since = when - dt.timedelta(days=services.settings.reminder_repeat_days)

    def _queue() -> None:
        if services.registry.evidence.state_of(identity.account_id).status == MIGRATED:
            return
        services.registry.outbox.queue_reminder(identity.account_id, identity.email, when, since)

    future = asyncio.get_running_loop().run_in_executor(services.registry_executor, _queue)
    future.add_done_callback(_log_failure)
    return future  # the session never awaits it; a test may


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("could not queue a reminder: %s", future.exception())
