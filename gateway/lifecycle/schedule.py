"""The deprecation schedule: a notice phase, brownout windows, the sunset, and an emergency pause.

It lives in the registry so every replica obeys a change at once. `Schedule` is a plain value and
`decide()` is pure, so the policy can be tested with any clock. The listing of what happens when
is pure too (the checks of an admin's new window sit beside the schedule command, in
migrate/schedule_input.py); `ScheduleCache` is the small per-replica cache in front of the
registry (a change made by any process is obeyed within its few seconds, without a restart).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

UTC = dt.UTC


class ScheduleError(ValueError):
    """A schedule change that cannot be made; the message says why and what to do instead."""


@dataclass(frozen=True)
class Window:
    id: int
    kind: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None = None
    note: str | None = None

    def contains(self, when: dt.datetime) -> bool:
        return self.starts_at <= when and (self.ends_at is None or when < self.ends_at)


@dataclass(frozen=True)
class Schedule:
    notice_start: dt.datetime | None = None
    sunset: dt.datetime | None = None
    brownouts: tuple[Window, ...] = ()
    pause: Window | None = None
    windows: tuple[Window, ...] = field(default=(), repr=False)

    @classmethod
    def from_windows(cls, windows: list[Window]) -> Schedule:
        def latest(kind: str) -> Window | None:
            found = [w for w in windows if w.kind == kind]
            return max(found, key=lambda w: (w.starts_at, w.id)) if found else None

        notice, sunset, pause = latest("notice"), latest("sunset"), latest("pause")
        return cls(
            notice_start=notice.starts_at if notice else None,
            sunset=sunset.starts_at if sunset else None,
            brownouts=tuple(sorted((w for w in windows if w.kind == "brownout"), key=lambda w: w.starts_at)),
            pause=pause if pause and pause.ends_at is None else None,
            windows=tuple(windows),
        )

    def next_brownout(self, now: dt.datetime) -> Window | None:
        """The brownout in force now, or the next one to come."""
        upcoming = [w for w in self.brownouts if w.ends_at is None or w.ends_at > now]
        return upcoming[0] if upcoming else None

    def upcoming_brownouts(self, now: dt.datetime) -> list[Window]:
        """Brownouts in force now or still to come, soonest first."""
        return [w for w in self.brownouts if w.ends_at is None or w.ends_at > now]

    def window(self, kind: str) -> Window | None:
        """The window that sets `notice_start` or `sunset` (for its id and note)."""
        found = [w for w in self.windows if w.kind == kind]
        return max(found, key=lambda w: (w.starts_at, w.id)) if found else None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    phase: str  # normal | notice | brownout | sunset | paused
    window: Window | None = None
    exempted: bool = False


def decide(schedule: Schedule, now: dt.datetime, *, exempt: bool) -> Decision:
    """May an upload go through now? Exempt accounts pass brownouts and the sunset, not a pause.

    A pause is a switch, not a time window: it is in force from `pause` until `resume`, whatever
    the clock of the replica says.
    """
    if schedule.pause is not None:
        return Decision(False, "paused", schedule.pause)
    if schedule.sunset is not None and now >= schedule.sunset:
        return Decision(exempt, "sunset", exempted=exempt)
    for window in schedule.brownouts:
        if window.contains(now):
            return Decision(exempt, "brownout", window, exempted=exempt)
    if schedule.notice_start is not None and now >= schedule.notice_start:
        return Decision(True, "notice")
    return Decision(True, "normal")


# -- times ----------------------------------------------------------------------------------------
def format_utc(when: dt.datetime) -> str:
    """Exact UTC, as every notice and email writes it: `2026-12-01 14:00 UTC`."""
    when = when.astimezone(UTC)
    pattern = "%Y-%m-%d %H:%M:%S UTC" if when.second else "%Y-%m-%d %H:%M UTC"
    return when.strftime(pattern)


def format_span(start: dt.datetime, end: dt.datetime | None) -> str:
    """`2026-10-01 14:00 UTC to 16:00 UTC`, or both dates when the window spans midnight."""
    if end is None:
        return f"from {format_utc(start)}"
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    if start_utc.date() == end_utc.date():
        return f"{format_utc(start)} to {format_utc(end)[11:]}"
    return f"{format_utc(start)} to {format_utc(end)}"


def format_duration(span: dt.timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p) or "less than a minute"


# -- the listing of what happens when -------------------------------------------------------------
@dataclass(frozen=True)
class TimelineEntry:
    when: dt.datetime
    kind: str  # now | notice | brownout | sunset | pause
    state: str  # past | in force | now | next | later
    what: str
    window_id: int | None = None
    until: dt.datetime | None = None


PHASE_TEXT = {
    "normal": "no notice yet: uploads go through and users see only the short deprecation line",
    "notice": "notice phase: uploads go through; every session shows the dates and the twine steps",
    "brownout": "brownout: uploads are refused with 410 (exempt accounts pass)",
    "sunset": "after the sunset: uploads are refused with 410 (exempt accounts pass)",
    "paused": "paused: every upload is refused with 410, exempt accounts too",
}


def describe_now(schedule: Schedule, now: dt.datetime) -> str:
    decision = decide(schedule, now, exempt=False)
    text = PHASE_TEXT[decision.phase]
    if decision.phase == "brownout" and decision.window is not None and decision.window.ends_at:
        text += f", until {format_utc(decision.window.ends_at)}"
    if decision.phase == "paused" and schedule.pause is not None and schedule.pause.note:
        text += f" ({schedule.pause.note})"
    return text


def _state(entry: TimelineEntry, schedule: Schedule, now: dt.datetime) -> str:
    if entry.when > now:
        return "later"
    if entry.kind == "pause":
        return "in force"
    if entry.kind == "brownout":
        return "in force" if entry.until is None or entry.until > now else "past"
    if entry.kind == "notice":
        return "past" if schedule.sunset is not None and schedule.sunset <= now else "in force"
    return "in force"  # a sunset that has come


def timeline(schedule: Schedule, now: dt.datetime) -> list[TimelineEntry]:
    """Every scheduled event and 'now', in time order, each with what it does to uploads."""
    entries: list[TimelineEntry] = [TimelineEntry(now, "now", "now", describe_now(schedule, now))]
    notice = schedule.window("notice")
    if notice is not None:
        entries.append(TimelineEntry(
            notice.starts_at, "notice", "",
            "notice starts: sessions, the login banner and replies carry the dates", notice.id))
    for window in schedule.brownouts:
        length = format_duration(window.ends_at - window.starts_at) if window.ends_at else "open-ended"
        what = f"brownout for {length}: uploads refused with 410, exempt accounts pass"
        entries.append(TimelineEntry(window.starts_at, "brownout", "",
                                     what + (f"; {window.note}" if window.note else ""), window.id, window.ends_at))
    sunset = schedule.window("sunset")
    if sunset is not None:
        entries.append(TimelineEntry(sunset.starts_at, "sunset", "",
                                     "sunset: SSH uploads end for good (exempt accounts still pass)", sunset.id))
    if schedule.pause is not None:
        what = "paused: every upload refused, exempt accounts too, until `schedule resume`"
        entries.append(TimelineEntry(schedule.pause.starts_at, "pause", "",
                                     what + (f"; {schedule.pause.note}" if schedule.pause.note else ""),
                                     schedule.pause.id))
    # "now" sorts after what started at the same instant: it describes their effect.
    entries.sort(key=lambda e: (e.when, e.kind == "now"))
    result, seen_next = [], False
    for entry in entries:
        state = entry.state or _state(entry, schedule, now)
        if state == "later" and not seen_next:
            state, seen_next = "next", True
        result.append(TimelineEntry(entry.when, entry.kind, state, entry.what, entry.window_id, entry.until))
    return result


# -- the per-replica cache ------------------------------------------------------------------------
class ScheduleCache:
    """The schedule as this replica last read it, re-read once it is `ttl` seconds old.

    If the database cannot be read, the last schedule read stays in force (and the failure is
    logged); only a replica that never read it fails.
    """

    def __init__(self, load: Callable[[], Schedule], ttl: float = 2.0, *,
                 clock: Callable[[], float] = time.monotonic):
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._entry: tuple[float, Schedule] | None = None

    def fresh(self) -> Schedule | None:
        """The cached schedule if it is younger than the ttl; never blocks."""
        entry = self._entry
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return None

    def refresh(self) -> Schedule:
        """Blocking: read the schedule from the registry (call from a worker thread)."""
        try:
            schedule = self._load()
        except Exception:
            if self._entry is None:
                raise
            log.exception("could not read the schedule; keeping the one read before")
            return self._entry[1]
        self._entry = (self._clock() + self._ttl, schedule)
        return schedule

    def get(self) -> Schedule:
        cached = self.fresh()
        return cached if cached is not None else self.refresh()
