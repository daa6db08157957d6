"""What an admin gives `pypissh-migrate schedule` (and `notify`): times, durations, and the checks
of a new window against the schedule, each refusal or warning saying what to do instead.

The times are UTC, as every notice and email writes them.
"""

from __future__ import annotations

import datetime as dt
import re

from gateway.lifecycle.schedule import UTC, Schedule, ScheduleError, format_duration, format_span, format_utc

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> dt.timedelta:
    """`90d`, `2h`, `30min`, `2w` -> timedelta."""
    match = _DURATION.match(text or "")
    if not match:
        raise ScheduleError(f"'{text}' is not a duration; write a number and a unit: 30min, 2h, 90d or 2w")
    value, unit = float(match.group(1)), match.group(2).lower()
    span = dt.timedelta(seconds=value * _UNITS[unit])
    if span <= dt.timedelta(0):
        raise ScheduleError(f"the duration '{text}' must be longer than zero")
    return span


def parse_utc(text: str, now: dt.datetime) -> dt.datetime:
    """A time given by an admin: `now`, `2026-12-01 14:00`, `2026-12-01T14:00Z` or `...+00:00`.

    Times without an offset are UTC. An offset other than UTC is refused rather than converted, so
    nobody schedules a brownout an hour off by accident; the message gives the UTC equivalent.
    """
    raw = (text or "").strip()
    if raw.lower() == "now":  # to the minute: listings and notices read better
        return now.astimezone(UTC).replace(second=0, microsecond=0)
    cleaned = raw
    if cleaned.upper().endswith("UTC"):
        cleaned = cleaned[:-3].rstrip() + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(cleaned)
    except ValueError:
        raise ScheduleError(
            f"'{raw}' is not a time; write UTC as 2026-12-01 14:00 (or 2026-12-01T14:00Z), or 'now'"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    if parsed.utcoffset() != dt.timedelta(0):
        as_utc = parsed.astimezone(UTC)
        raise ScheduleError(
            f"'{raw}' is not in UTC; schedule times are UTC: write {as_utc:%Y-%m-%d %H:%M} instead"
        )
    return parsed.astimezone(UTC)


# -- validation -----------------------------------------------------------------------------------
# A little slack for "now": the admin's command and its check run a moment apart.
NOW_SLACK = dt.timedelta(minutes=1)


def check_brownout(schedule: Schedule, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> list[str]:
    """Refuse a brownout that cannot work; return warnings about one that is merely unwise."""
    if end <= start:
        raise ScheduleError(f"the brownout ends ({format_utc(end)}) before it starts ({format_utc(start)})")
    if start < now - NOW_SLACK:
        raise ScheduleError(
            f"the brownout would start in the past ({format_utc(start)}); start it 'now' or later")
    if schedule.sunset is not None and end > schedule.sunset:
        raise ScheduleError(
            f"the brownout would end after the sunset ({format_utc(schedule.sunset)}), when SSH uploads "
            "are off anyway; end it before the sunset")
    for other in schedule.upcoming_brownouts(now - NOW_SLACK):
        other_end = other.ends_at or dt.datetime.max.replace(tzinfo=UTC)
        if start < other_end and other.starts_at < end:
            raise ScheduleError(
                f"the brownout overlaps brownout {other.id} ({format_span(other.starts_at, other.ends_at)}); "
                f"pick another time or `pypissh-migrate schedule cancel-brownout {other.id}` first")
    warnings = []
    if schedule.notice_start is None or schedule.notice_start > start:
        warnings.append("no notice is shown before this brownout starts; users will not have been told "
                        "(`pypissh-migrate schedule set-notice now`)")
    if end - start > dt.timedelta(days=1):
        warnings.append(f"this brownout lasts {format_duration(end - start)}; brownouts are usually hours, "
                        "so a forgotten job fails without locking everyone out for long")
    return warnings


def check_sunset(schedule: Schedule, when: dt.datetime, now: dt.datetime) -> list[str]:
    if when < now - NOW_SLACK:
        raise ScheduleError(
            f"the sunset would be in the past ({format_utc(when)}); to stop uploads right now use "
            "`pypissh-migrate schedule pause`")
    late = [w for w in schedule.brownouts if w.ends_at is None or w.ends_at > when]
    if late:
        listed = ", ".join(f"{w.id} ({format_span(w.starts_at, w.ends_at)})" for w in late)
        raise ScheduleError(
            f"brownout {listed} would run after this sunset; cancel it first or choose a later sunset")
    if schedule.notice_start is not None and schedule.notice_start >= when:
        raise ScheduleError(
            f"the notice starts {format_utc(schedule.notice_start)}, not before this sunset; "
            "users must be told before the end")
    warnings = []
    if schedule.notice_start is None:
        warnings.append("no notice phase is set; users see the dates only once it starts "
                        "(`pypissh-migrate schedule set-notice now`)")
    return warnings


def check_notice(schedule: Schedule, when: dt.datetime) -> list[str]:
    if schedule.sunset is not None and when >= schedule.sunset:
        raise ScheduleError(
            f"the notice must start before the sunset ({format_utc(schedule.sunset)}), or users learn "
            "of the end only when it has come")
    first = schedule.brownouts[0] if schedule.brownouts else None
    if first is not None and when > first.starts_at:
        return [(f"brownout {first.id} ({format_span(first.starts_at, first.ends_at)}) starts before "
                 "the notice; users will not have been told")]
    return []


def check_pause(schedule: Schedule) -> None:
    if schedule.pause is not None:
        raise ScheduleError(
            f"uploads are already paused since {format_utc(schedule.pause.starts_at)}; "
            "`pypissh-migrate schedule resume` ends the pause")
