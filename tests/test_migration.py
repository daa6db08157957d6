"""The migration rules on plain values (`gateway.lifecycle.migration`): what counts as a release
made another way, when it provably came after an SSH upload, migrated against mixed use."""

from __future__ import annotations

import datetime as dt

from gateway.lifecycle.migration import (
    FIRST_SEEN,
    FROM_INDEX,
    MIGRATED,
    MIXED_USE,
    Evidence,
    IndexRelease,
    ProjectUploads,
    forwarded_by_gateway,
    migration_state,
    migration_states,
)

UTC = dt.timezone.utc


def day(n: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2030, 3, n, hour, tzinfo=UTC)


def uploads(*spans: tuple[str, int, int], account: int = 1) -> list[ProjectUploads]:
    """(project, first day, last day) of one account's forwarded uploads."""
    return [ProjectUploads(account, project, day(first), day(last)) for project, first, last in spans]


def timed(project: str, filename: str, n: int) -> IndexRelease:
    """A release whose upload time the index gave (PEP 700)."""
    return IndexRelease(project, filename, "ab" * 32, day(n), first_seen_at=day(28))


def seen(project: str, filename: str, first_seen: int, absent: int | None) -> IndexRelease:
    """A release without an upload time: first listed on `first_seen`, not listed on `absent`."""
    return IndexRelease(project, filename, None, None, day(first_seen), day(absent) if absent else None)


def test_a_release_after_the_last_ssh_upload_of_every_project_is_migrated():
    """Both projects released another way after their last SSH upload: migrated, dated by the later release."""
    state = migration_state(uploads(("alpha", 1, 3), ("beta", 2, 2)),
                            {"alpha": [timed("alpha", "alpha-2.0.tar.gz", 5)],
                             "beta": [timed("beta", "beta-1.1.tar.gz", 9), timed("beta", "beta-1.2.tar.gz", 12)]})
    assert state.status == MIGRATED
    assert state.evidence == (Evidence("alpha", "alpha-2.0.tar.gz", day(5), FROM_INDEX, day(3)),
                              Evidence("beta", "beta-1.1.tar.gz", day(9), FROM_INDEX, day(2)))
    assert state.migrated_at == day(9)


def test_one_project_without_a_later_release_is_not_migrated():
    """alpha switched, beta did not: no verdict, but alpha's release is shown."""
    alpha = {"alpha": [timed("alpha", "alpha-2.0.tar.gz", 5)]}
    state = migration_state(uploads(("alpha", 1, 3), ("beta", 2, 2)), alpha)
    assert state.status is None
    assert [e.filename for e in state.evidence] == ["alpha-2.0.tar.gz"]


def test_a_release_older_than_the_last_ssh_upload_proves_nothing():
    """An old release made another way (before the SSH uploads) is no evidence of a switch."""
    state = migration_state(uploads(("alpha", 4, 6)), {"alpha": [timed("alpha", "alpha-0.9.tar.gz", 2)]})
    assert state.status is None and state.evidence == ()


def test_without_an_upload_time_only_a_file_absent_at_an_earlier_read_counts():
    """A file listed at the project's first read may be older than anything; one absent at a read
    after the last SSH upload was certainly published after it; one absent only before it proves nothing."""
    project = uploads(("alpha", 1, 3))
    assert migration_state(project, {"alpha": [seen("alpha", "alpha-2.0.tar.gz", 10, None)]}).status is None
    assert migration_state(project, {"alpha": [seen("alpha", "alpha-2.0.tar.gz", 10, 2)]}).status is None
    state = migration_state(project, {"alpha": [seen("alpha", "alpha-2.0.tar.gz", 10, 4)]})
    assert state.status == MIGRATED
    assert state.evidence == (Evidence("alpha", "alpha-2.0.tar.gz", day(10), FIRST_SEEN, day(3)),)


def test_ssh_upload_after_a_release_made_another_way_is_mixed_use():
    """Released alpha with twine, then uploaded alpha over SSH again: mixed use, not migrated."""
    state = migration_state(uploads(("alpha", 1, 8)), {"alpha": [timed("alpha", "alpha-2.0.tar.gz", 5)]})
    assert state.status == MIXED_USE
    assert state.evidence == (Evidence("alpha", "alpha-2.0.tar.gz", day(5), FROM_INDEX, day(1)),)
    assert state.back_on_ssh_at == day(8)


def test_ssh_upload_of_another_project_after_a_switch_is_mixed_use():
    """alpha released another way, then beta uploaded over SSH (and never released otherwise): mixed use."""
    alpha = {"alpha": [timed("alpha", "alpha-2.0.tar.gz", 5)]}
    state = migration_state(uploads(("alpha", 1, 1), ("beta", 9, 9)), alpha)
    assert state.status == MIXED_USE and state.back_on_ssh_at == day(9)


def test_until_ignores_releases_published_later():
    """As of a date before the release, the account has not migrated yet."""
    project = uploads(("alpha", 1, 3))
    releases = {"alpha": [timed("alpha", "alpha-2.0.tar.gz", 5)]}
    assert migration_state(project, releases, until=day(5)).status is None
    assert migration_state(project, releases, until=day(6)).status == MIGRATED


def test_states_keep_only_accounts_with_something_to_show():
    """Per account; an account the index says nothing about is left out."""
    both = uploads(("alpha", 1, 3), account=1) + uploads(("gamma", 1, 3), account=2)
    states = migration_states(both, {"alpha": [timed("alpha", "alpha-2.0.tar.gz", 5)]})
    assert list(states) == [1] and states[1].status == MIGRATED


def test_a_file_is_the_gateways_by_name_and_sha256():
    """Same name and sha256: forwarded by the gateway; same name, other content: not; no sha256 given: by name."""
    forwarded = {"alpha-1.0.tar.gz": {"aa" * 32}}
    assert forwarded_by_gateway("alpha-1.0.tar.gz", "aa" * 32, forwarded)
    assert not forwarded_by_gateway("alpha-1.0.tar.gz", "bb" * 32, forwarded)
    assert not forwarded_by_gateway("alpha-2.0.tar.gz", "aa" * 32, forwarded)
    assert forwarded_by_gateway("alpha-1.0.tar.gz", None, forwarded)
