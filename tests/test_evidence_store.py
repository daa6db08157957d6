"""The registry's evidence store on SQLite and on PostgreSQL: each read records new files once,
keeps when a file was first seen and the read before that did not list it, takes an upload time
the index gives later, and reads the accounts' migration state back."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.lifecycle.migration import MIGRATED, IndexRelease
from gateway.registry import Registry, UploadEvent
from gateway.upload.index import IndexFile

UTC = dt.timezone.utc


def t(day: int) -> dt.datetime:
    return dt.datetime(2030, 5, 10, 12, tzinfo=UTC) + dt.timedelta(days=day)


@pytest.fixture
def registry(registry_url):
    registry = Registry.from_url(registry_url)
    yield registry
    registry.close()


def test_each_read_records_new_files_once(registry):
    """New files are counted and kept with their first read; a known file only gains an upload time."""
    evidence = registry.evidence
    assert evidence.last_read() is None
    assert evidence.record_read("alpha", [IndexFile("alpha-1.0.tar.gz", "aa" * 32, None)], t(1)) == 1
    listed = [IndexFile("alpha-1.0.tar.gz", "aa" * 32, t(0)), IndexFile("alpha-2.0.tar.gz", None, None)]
    assert evidence.record_read("alpha", listed, t(2)) == 1
    assert evidence.record_read("alpha", listed, t(3)) == 0
    assert evidence.releases() == {"alpha": [
        IndexRelease("alpha", "alpha-1.0.tar.gz", "aa" * 32, t(0), t(1), None),
        IndexRelease("alpha", "alpha-2.0.tar.gz", None, None, t(2), t(1))]}
    assert evidence.last_read() == t(3)


def test_a_file_once_the_gateways_stays_so(registry):
    """A file that came through the gateway is kept but never evidence, even when a later read no
    longer matches it (its event pruned); a release made another way is, and later matching marks it."""
    evidence = registry.evidence
    ours, theirs = IndexFile("alpha-1.0.tar.gz", "aa" * 32, None), IndexFile("alpha-2.0.tar.gz", "bb" * 32, None)
    assert evidence.record_read("alpha", [ours], t(1), via_gateway={"alpha-1.0.tar.gz"}) == 0
    assert evidence.record_read("alpha", [ours, theirs], t(2)) == 1  # the event behind 1.0 is gone
    assert [r.filename for r in evidence.releases()["alpha"]] == ["alpha-2.0.tar.gz"]
    assert evidence.record_read("alpha", [ours, theirs], t(3), via_gateway={"alpha-2.0.tar.gz"}) == 0
    assert evidence.releases() == {}


def test_states_come_from_forwarded_uploads_and_releases(registry):
    """alice's uploads of alpha (one whose replica died while forwarding it), then a release made
    another way: migrated from then on; bob's beta, with nothing on the index, says nothing; a
    refused session is no upload, but the file it carried is never evidence."""
    ids = {name: registry.accounts.add_account(name).id for name in ("alice", "bob")}

    def upload(name: str, project: str, when: dt.datetime, outcome: str = "forwarded", version: str = "1.0") -> None:
        registry.events.record(UploadEvent(at=when, outcome=outcome, account_id=ids[name], account_name=name,
                                           action="file_upload", project=project, version=version,
                                           filename=f"{project}-{version}.tar.gz", sha256=version[0] * 64))

    upload("alice", "alpha", t(1))
    upload("alice", "alpha", t(2), "forwarding", version="1.1")
    upload("alice", "alpha", t(5), "refused_upstream", version="2.5")
    upload("bob", "beta", t(1))
    upload("bob", "gamma", t(1), "refused_upstream")
    evidence = registry.evidence
    assert evidence.ssh_projects() == ["alpha", "beta"]
    assert evidence.forwarded_files("alpha") == {
        "alpha-1.0.tar.gz": {"1" * 64}, "alpha-1.1.tar.gz": {"1" * 64}, "alpha-2.5.tar.gz": {"2" * 64}}
    assert evidence.states() == {}  # nothing read from the index yet

    evidence.record_read("alpha", [IndexFile("alpha-2.0.tar.gz", "22" * 32, t(3))], t(4))
    states = evidence.states()
    assert list(states) == [ids["alice"]] and states[ids["alice"]].status == MIGRATED
    assert evidence.state_of(ids["alice"]).migrated_at == t(3)
    assert evidence.state_of(ids["alice"]).evidence[0].follows == t(2)  # the upload of unknown outcome
    assert evidence.state_of(ids["bob"]).status is None
    assert evidence.states(until=t(3)) == {}  # as of the release's own time, not yet
