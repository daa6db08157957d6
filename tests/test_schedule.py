"""The deprecation schedule as pure logic: the policy decision, validation of changes, the listing
of what happens when, time parsing, and the per-replica cache (with an injected clock)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.lifecycle.schedule import (
    Schedule,
    ScheduleCache,
    ScheduleError,
    Window,
    decide,
    format_span,
    format_utc,
    timeline,
)
from migrate.schedule_input import (
    check_brownout,
    check_notice,
    check_pause,
    check_sunset,
    parse_duration,
    parse_utc,
)

UTC = dt.timezone.utc
NOTICE = dt.datetime(2026, 8, 1, 9, 0, tzinfo=UTC)
BROWNOUT_START = dt.datetime(2026, 10, 1, 14, 0, tzinfo=UTC)
BROWNOUT_END = dt.datetime(2026, 10, 1, 16, 0, tzinfo=UTC)
SUNSET = dt.datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def at(month: int, day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=UTC)


def make_schedule(*extra: Window, notice=NOTICE, sunset=SUNSET) -> Schedule:
    windows = [Window(2, "brownout", BROWNOUT_START, BROWNOUT_END), *extra]
    if notice is not None:
        windows.append(Window(1, "notice", notice))
    if sunset is not None:
        windows.append(Window(3, "sunset", sunset))
    return Schedule.from_windows(windows)


# -- decide ---------------------------------------------------------------------------------------
def test_before_the_notice_uploads_pass_in_the_normal_phase():
    """Before the notice start the phase is normal and uploads go through."""
    assert decide(make_schedule(), at(7, 1), exempt=False) == decide(Schedule(), at(7, 1), exempt=False)
    assert decide(make_schedule(), at(7, 1), exempt=False).phase == "normal"


def test_notice_phase_allows_uploads():
    """From the notice start on, uploads still succeed (with the notice)."""
    decision = decide(make_schedule(), at(9, 1), exempt=False)
    assert decision.allowed and decision.phase == "notice"


def test_brownout_refuses_and_names_its_window():
    """Inside a brownout a normal account is refused and the decision carries the window."""
    decision = decide(make_schedule(), at(10, 1, 15), exempt=False)
    assert not decision.allowed
    assert decision.phase == "brownout" and decision.window.ends_at == BROWNOUT_END


def test_brownout_bounds_start_inclusive_end_exclusive():
    """A brownout starts at its start instant and is over at its end instant."""
    assert decide(make_schedule(), BROWNOUT_START, exempt=False).phase == "brownout"
    assert decide(make_schedule(), BROWNOUT_END, exempt=False).phase == "notice"


def test_exempt_account_passes_brownout_and_sunset():
    """Exempt accounts pass brownouts and the sunset, and the decision says why."""
    for when in (at(10, 1, 15), at(12, 2)):
        decision = decide(make_schedule(), when, exempt=True)
        assert decision.allowed and decision.exempted


def test_after_sunset_every_normal_upload_is_refused():
    """From the sunset instant on, uploads are refused."""
    assert not decide(make_schedule(), SUNSET, exempt=False).allowed
    assert decide(make_schedule(), SUNSET, exempt=False).phase == "sunset"


def test_pause_refuses_exempt_accounts_whatever_the_clock():
    """A pause is a switch: it refuses exempt accounts too, even at a clock before its start."""
    paused = make_schedule(Window(9, "pause", at(11, 1)))
    decision = decide(paused, at(7, 1), exempt=True)
    assert not decision.allowed and decision.phase == "paused"


def test_resumed_pause_is_no_longer_in_force():
    """A pause with an end (resumed) no longer refuses anything."""
    resumed = make_schedule(Window(9, "pause", at(9, 1), at(9, 2)))
    assert decide(resumed, at(9, 1, 13), exempt=False).allowed


windows = st.lists(
    st.tuples(st.integers(0, 2000), st.integers(1, 300)), max_size=6
)


@given(windows, st.integers(0, 2400), st.booleans())
def test_decide_never_lets_a_normal_account_through_a_brownout(spans, minute, paused):
    """Property: inside any brownout, after the sunset or while paused, a normal account is refused."""
    base = dt.datetime(2026, 1, 1, tzinfo=UTC)
    brownouts = [Window(i, "brownout", base + dt.timedelta(minutes=s), base + dt.timedelta(minutes=s + d))
                 for i, (s, d) in enumerate(spans)]
    extra = [Window(99, "pause", base)] if paused else []
    schedule = Schedule.from_windows([*brownouts, *extra, Window(100, "sunset", base + dt.timedelta(minutes=2200))])
    now = base + dt.timedelta(minutes=minute)
    decision = decide(schedule, now, exempt=False)
    inside = paused or minute >= 2200 or any(w.contains(now) for w in brownouts)
    assert decision.allowed is not inside


# -- times ----------------------------------------------------------------------------------------
def test_times_are_written_exactly_in_utc():
    """Notices write `2026-12-01 14:00 UTC`; a same-day window shows the end time only once."""
    assert format_utc(SUNSET) == "2026-12-01 14:00 UTC"
    assert format_utc(SUNSET.astimezone(dt.timezone(dt.timedelta(hours=2)))) == "2026-12-01 14:00 UTC"
    assert format_span(BROWNOUT_START, BROWNOUT_END) == "2026-10-01 14:00 UTC to 16:00 UTC"


@pytest.mark.parametrize("text", ["2026-12-01 14:00", "2026-12-01T14:00Z", "2026-12-01T14:00:00+00:00",
                                  "2026-12-01 14:00 UTC"])
def test_parse_utc_accepts_utc_spellings(text):
    """Admins may write UTC times with or without a UTC marker."""
    assert parse_utc(text, at(1, 1)) == SUNSET


def test_parse_utc_refuses_other_offsets_and_names_the_utc_time():
    """A non-UTC offset is refused, and the error gives the UTC equivalent to write instead."""
    with pytest.raises(ScheduleError, match="2026-12-01 12:00"):
        parse_utc("2026-12-01T14:00+02:00", at(1, 1))


def test_parse_utc_now_and_garbage():
    """'now' is the current minute; anything unreadable is refused with an example."""
    assert parse_utc("now", dt.datetime(2026, 5, 5, 10, 7, 33, tzinfo=UTC)) == at(5, 5, 10, 7)
    with pytest.raises(ScheduleError, match="2026-12-01 14:00"):
        parse_utc("next tuesday", at(1, 1))


def test_parse_duration():
    """Durations read as admins write them; zero or unknown units are refused."""
    assert parse_duration("90d") == dt.timedelta(days=90)
    assert parse_duration("30min") == dt.timedelta(minutes=30)
    assert parse_duration("2h") == dt.timedelta(hours=2)
    for bad in ("0h", "3 fortnights", ""):
        with pytest.raises(ScheduleError):
            parse_duration(bad)


# -- validation -----------------------------------------------------------------------------------
def test_overlapping_brownout_is_refused_touching_is_fine():
    """A brownout may not overlap another; one starting when another ends is accepted."""
    schedule = make_schedule()
    with pytest.raises(ScheduleError, match="overlaps brownout 2"):
        check_brownout(schedule, at(10, 1, 15), at(10, 1, 17), at(9, 1))
    assert check_brownout(schedule, BROWNOUT_END, at(10, 1, 18), at(9, 1)) == []


def test_brownout_after_sunset_or_backwards_or_past_is_refused():
    """No brownout ends after the sunset, ends before it starts, or starts in the past."""
    schedule = make_schedule()
    with pytest.raises(ScheduleError, match="after the sunset"):
        check_brownout(schedule, at(11, 30, 12), at(12, 1, 15), at(9, 1))
    with pytest.raises(ScheduleError, match="before it starts"):
        check_brownout(schedule, at(11, 2, 12), at(11, 2, 11), at(9, 1))
    with pytest.raises(ScheduleError, match="in the past"):
        check_brownout(schedule, at(8, 2), at(9, 2), at(9, 1))


def test_brownout_before_any_notice_warns():
    """A brownout that users were never told about is allowed, with a warning saying so."""
    warnings = check_brownout(make_schedule(notice=None), at(11, 2, 12), at(11, 2, 14), at(9, 1))
    assert any("no notice" in w for w in warnings)


def test_sunset_before_a_brownout_or_in_the_past_is_refused():
    """The sunset may not leave a brownout after it, be in the past, or come before the notice."""
    schedule = make_schedule(sunset=None)
    with pytest.raises(ScheduleError, match="brownout 2"):
        check_sunset(schedule, at(10, 1, 15), at(9, 1))
    with pytest.raises(ScheduleError, match="pause"):
        check_sunset(schedule, at(8, 1), at(9, 1))
    with pytest.raises(ScheduleError, match="notice"):
        check_sunset(make_schedule(sunset=None, notice=at(12, 5)), at(12, 1), at(9, 1))
    assert check_sunset(schedule, SUNSET, at(9, 1)) == []


def test_notice_must_start_before_the_sunset():
    """A notice that starts at or after the sunset is refused."""
    with pytest.raises(ScheduleError, match="before the sunset"):
        check_notice(make_schedule(), SUNSET)
    assert check_notice(make_schedule(), at(9, 1)) == []


def test_second_pause_is_refused():
    """Pausing twice is refused with the way to resume."""
    with pytest.raises(ScheduleError, match="resume"):
        check_pause(make_schedule(Window(9, "pause", at(9, 1))))


# -- listing --------------------------------------------------------------------------------------
def test_timeline_puts_now_in_place_and_marks_states():
    """The listing is in time order with 'now' in its place, past/in force/next/later marked."""
    entries = timeline(make_schedule(), at(10, 1, 15))
    assert [e.kind for e in entries] == ["notice", "brownout", "now", "sunset"]
    states = {e.kind: e.state for e in entries}
    assert states == {"notice": "in force", "brownout": "in force", "now": "now", "sunset": "next"}
    assert "until 2026-10-01 16:00 UTC" in entries[2].what


def test_timeline_before_everything():
    """Before the notice, the first event to come is 'next' and the rest 'later'."""
    entries = timeline(make_schedule(), at(7, 1))
    assert [(e.kind, e.state) for e in entries] == [
        ("now", "now"), ("notice", "next"), ("brownout", "later"), ("sunset", "later")]


# -- cache ----------------------------------------------------------------------------------------
class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_rereads_once_its_ttl_has_passed():
    """Within the ttl the cached schedule is used; after it, a change is read."""
    current = [Schedule()]
    reads = []

    def load():
        reads.append(1)
        return current[0]

    clock = FakeMonotonic()
    cache = ScheduleCache(load, 2.0, clock=clock)
    assert cache.get() == Schedule()
    current[0] = make_schedule()
    clock.now += 1.9
    assert cache.get() == Schedule() and len(reads) == 1
    clock.now += 0.2
    assert cache.get() == make_schedule() and len(reads) == 2


def test_cache_keeps_the_last_schedule_when_the_database_fails():
    """A failed re-read keeps the schedule read before; a replica that never read one fails."""
    clock = FakeMonotonic()
    state = {"fail": False}

    def load():
        if state["fail"]:
            raise ConnectionError("database down")
        return make_schedule()

    cache = ScheduleCache(load, 2.0, clock=clock)
    cache.get()
    state["fail"] = True
    clock.now += 5
    assert cache.get() == make_schedule()
    with pytest.raises(ConnectionError):
        ScheduleCache(load, 2.0, clock=clock).get()
