"""`pypissh-migrate schedule`: changes written to the registry, validated, and listed in order."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from migrate.cli import cli
from testbed.clock import invoke_at

UTC = dt.timezone.utc
# Every command here is told this is the current time (pinned through testbed/clock.py): the listing, the
# countdown and the checks against the past never depend on when the suite runs.
NOW = dt.datetime(2031, 3, 10, 9, 17, tzinfo=UTC)


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    return url


def day(offset: int, hour: int = 14) -> str:
    """A UTC time `offset` days after NOW's date (validation refuses the past)."""
    when = NOW.replace(hour=hour, minute=0) + dt.timedelta(days=offset)
    return when.strftime("%Y-%m-%d %H:%M")


def schedule(database: str, *args: str):
    return invoke_at(NOW, cli, ["--set", f"database_url={database}", "schedule", *args])


def test_show_lists_what_happens_when_with_now_in_place(database):
    """The listing runs in time order with 'now' between the past and what is to come."""
    assert schedule(database, "set-notice", "now").exit_code == 0
    assert schedule(database, "set-sunset", day(60)).exit_code == 0
    assert schedule(database, "add-brownout", day(10), "--for", "2h", "--note", "afternoon").exit_code == 0
    assert schedule(database, "add-brownout", day(20, 3), day(20, 5)).exit_code == 0
    result = schedule(database, "show")
    assert result.exit_code == 0, result.output
    headline, out = result.output.split("\n", 1)
    assert headline.startswith("now (") and "notice phase" in headline
    order = [out.index(text) for text in ("notice starts", "notice phase:", "brownout for 2 h", day(20, 3),
                                          "sunset: SSH uploads end")]
    assert order == sorted(order)
    assert "afternoon" in out and "next" in out
    assert out.endswith("sunset in 60 d 4 h 43 min\n")  # 2031-05-09 14:00 less 2031-03-10 09:17


def test_overlap_and_non_utc_times_are_refused_with_the_fix(database):
    """An overlapping brownout and a non-UTC time are refused, each saying what to do instead."""
    assert schedule(database, "add-brownout", day(10), "--for", "2h").exit_code == 0
    overlap = schedule(database, "add-brownout", day(10, 15), "--for", "2h")
    assert overlap.exit_code != 0 and "cancel-brownout" in overlap.output
    offset = schedule(database, "add-brownout", day(11).replace(" ", "T") + "+02:00", "--for", "1h")
    assert offset.exit_code != 0 and "not in UTC" in offset.output and day(11, 12) in offset.output


def test_brownout_after_sunset_is_refused(database):
    """No window after the sunset: neither a late brownout nor an early sunset."""
    assert schedule(database, "set-sunset", day(30)).exit_code == 0
    late = schedule(database, "add-brownout", day(31), "--for", "1h")
    assert late.exit_code != 0 and "before the sunset" in late.output
    assert schedule(database, "add-brownout", day(10), "--for", "1h").exit_code == 0
    early = schedule(database, "set-sunset", day(5))
    assert early.exit_code != 0 and "cancel it first" in early.output


def test_setting_the_sunset_again_replaces_it(database):
    """set-sunset moves the one sunset, earlier or later; --clear removes it."""
    assert schedule(database, "set-sunset", day(60)).exit_code == 0
    assert schedule(database, "set-sunset", day(40), "--yes").exit_code == 0
    registry = Registry.from_url(database)
    assert registry.schedule.current().sunset.strftime("%Y-%m-%d %H:%M") == day(40)
    assert schedule(database, "set-sunset", "--clear").exit_code == 0
    assert registry.schedule.current().sunset is None


def test_pause_resume_and_cancel(database):
    """pause refuses a second pause, resume ends it; a future brownout can be cancelled."""
    assert schedule(database, "pause", "--note", "incident 7", "--yes").exit_code == 0
    assert schedule(database, "pause", "--yes").exit_code != 0
    registry = Registry.from_url(database)
    assert registry.schedule.current().pause.note == "incident 7"
    assert schedule(database, "resume").exit_code == 0
    assert registry.schedule.current().pause is None
    assert schedule(database, "resume").exit_code != 0
    assert schedule(database, "add-brownout", day(3), "--for", "1h").exit_code == 0
    (window,) = registry.schedule.current().brownouts
    assert schedule(database, "cancel-brownout", str(window.id)).exit_code == 0
    assert registry.schedule.current().brownouts == ()
    assert schedule(database, "cancel-brownout", str(window.id)).exit_code != 0
