"""The deprecation schedule: a notice phase, brownout windows, the sunset, and an emergency pause.

It lives in the registry so every replica obeys a change at once. `Schedule` is a plain value and
`decide()` is pure, so the policy can be tested with any clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

KINDS = ("notice", "brownout", "sunset", "pause")


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
    def from_windows(cls, windows: list[Window]) -> "Schedule":
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


@dataclass(frozen=True)
class Decision:
    allowed: bool
    phase: str  # normal | notice | brownout | sunset | paused
    window: Window | None = None
    exempted: bool = False


def decide(schedule: Schedule, now: dt.datetime, *, exempt: bool) -> Decision:
    """May an upload go through now? Exempt accounts pass brownouts and the sunset, not a pause."""
    if schedule.pause is not None and schedule.pause.contains(now):
        return Decision(False, "paused", schedule.pause)
    if schedule.sunset is not None and now >= schedule.sunset:
        return Decision(exempt, "sunset", exempted=exempt)
    for window in schedule.brownouts:
        if window.contains(now):
            return Decision(exempt, "brownout", window, exempted=exempt)
    if schedule.notice_start is not None and now >= schedule.notice_start:
        return Decision(True, "notice")
    return Decision(True, "normal")
