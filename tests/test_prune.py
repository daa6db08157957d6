"""Retention: `pypissh-migrate prune` deletes old upload events in bounded batches, never an
account's latest, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.registry import Registry, UploadEvent
from migrate.cli import cli
from tests.helpers import cli_runner, ok, recorded_events

UTC = dt.timezone.utc
NOW = "2027-03-01 10:00"


def _day(month: int, day: int, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, 12, 0, tzinfo=UTC)


@pytest.fixture
def history(registry_url):
    """alice: events on Jan 1, 2, 3 and Dec 1 2026; bob: one on Jan 5; carol: two on Feb 1 (same
    time); two events of a deleted account (no account id) on Jan 1; all but Dec 1 before 2026-06-01."""
    registry = Registry.from_url(registry_url)
    accounts = {name: registry.accounts.add_account(name) for name in ("alice", "bob", "carol")}

    def event(name: str | None, when: dt.datetime) -> None:
        account = accounts.get(name) if name else None
        registry.events.record(UploadEvent(at=when, outcome="forwarded", account_id=account.id if account else None,
                                           account_name=name, project="demo"))

    for day in (1, 2, 3):
        event("alice", _day(1, day))
    event("alice", _day(12, 1))
    event("bob", _day(1, 5))
    event("carol", _day(2, 1))
    event("carol", _day(2, 1))
    event(None, _day(1, 1))
    event(None, _day(1, 1))

    yield cli_runner(cli, now=NOW, database_url=registry_url), registry
    registry.engine.dispose()


def test_prune_deletes_old_events_but_each_accounts_latest(history):
    """Before 2026-06-01: alice's three January events, carol's earlier twin and the two orphans go;
    bob's only event and carol's latest stay (and alice's December one, which is newer)."""
    invoke, registry = history
    result = invoke("prune", "--before", "2026-06-01", "--batch", "2", "--yes")
    ok(result)
    assert "deleted 6 upload event(s) recorded before 2026-06-01 00:00 UTC in 3 batch(es)" in result.output
    assert "kept 2 older one(s) as their account's latest; 3 event(s) remain" in result.output
    left = sorted((e.account_name, e.at) for e in recorded_events(registry))
    assert left == [("alice", _day(12, 1)), ("bob", _day(1, 5)), ("carol", _day(2, 1))]
    last_use = registry.events.last_use_by_account()
    assert {registry.accounts.get_account(n).id for n in ("alice", "bob", "carol")} == set(last_use)


def test_prune_never_deletes_an_accounts_only_events(history):
    """A cut-off after every event still leaves each account its latest event."""
    invoke, registry = history
    ok(invoke("prune", "--before", "0d", "--yes"))
    assert sorted(e.account_name for e in recorded_events(registry)) == ["alice", "bob", "carol"]


def test_dry_run_counts_and_deletes_nothing(history):
    """--dry-run says how many would go and how many are kept; nothing is deleted or journalled."""
    invoke, registry = history
    result = invoke("prune", "--before", "2026-06-01", "--dry-run")
    ok(result)
    assert "dry run: 6 upload event(s) recorded before 2026-06-01 00:00 UTC would be deleted; 2 older one(s) " \
           "kept" in result.output
    assert len(recorded_events(registry)) == 9 and registry.audit.entries() == []


def test_relative_cut_off_and_the_journal(history):
    """--before 400d counts back from now; the run is journalled with its counts."""
    invoke, registry = history
    ok(invoke("prune", "--before", "400d", "--yes"))  # 2026-01-25 10:00: alice's three, bob's, the orphans
    (entry,) = registry.audit.entries()
    assert entry.after == {"before": "2026-01-25T10:00:00Z", "deleted": 5, "batches": 1, "kept_latest": 1,
                           "remaining": 4}


def test_cut_off_in_the_future_is_refused(history):
    """A --before date later than now is refused in one line; nothing is deleted."""
    invoke, registry = history
    result = invoke("prune", "--before", "2030-01-01", "--yes")
    assert result.exit_code != 0 and "2030-01-01 is in the future" in result.output
    assert len(recorded_events(registry)) == 9


def test_prune_without_yes_in_a_script_refuses(history):
    """Deleting cannot be undone: without a terminal and without --yes it refuses and deletes nothing."""
    invoke, registry = history
    result = invoke("prune", "--before", "2026-06-01")
    assert result.exit_code != 0 and "--yes" in result.output
    assert len(recorded_events(registry)) == 9
