"""A failover of the registry's database, as an operator sets one up: a primary and a streaming
standby, two replicas behind HAProxy on the multi-host URL, real legacy uploads and logins before,
during and after, the primary stopped hard and then the standby promoted. Nothing is restarted
or reconfigured: the same URL finds the new primary.

The story runs once (the `story` fixture); each test asserts one thing about it.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field

import pytest

from gateway.checks import database_host_findings
from gateway.settings import Settings
from testbed import pgpair
from testbed.failover import ACCOUNT, Attempt, FailoverRig, database_lines
from tests.helpers import recorded_events, wait_until

# Serial although it leaves the machine's own PostgreSQL alone: two servers, two replicas, HAProxy
# and the legacy clients need the cores, and the crossing upload is held for a fixed time.
pytestmark = [
    pytest.mark.serial,
    pytest.mark.skipif(pgpair.unavailable_reason() is not None, reason=str(pgpair.unavailable_reason())),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (./dev test installs it)"),
    pytest.mark.timeout(180),
]

KEY_CACHE_SECONDS = 1.0
# Long enough for the test to see the upload's "forwarding" row and stop the primary under it.
UPSTREAM_DELAY = 3.0
UPLOADS_PER_PHASE = 3
NOTHING_PUBLISHED = "nothing was published"
REGISTRY_DOWN = "cannot reach its account registry"


@dataclass
class Story:
    rig: FailoverRig
    before: list[Attempt] = field(default_factory=list)
    crossing: list[Attempt] = field(default_factory=list)  # being forwarded when the primary died
    outage: list[Attempt] = field(default_factory=list)
    after: list[Attempt] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    promoted_at: float = 0.0
    ready_during: list = field(default_factory=list)
    ready_after: list = field(default_factory=list)
    admin_during: object = None
    admin_after: object = None
    check_before: object = None
    check_during: object = None
    check_after: object = None

    @property
    def attempts(self) -> list[Attempt]:
        return self.before + self.crossing + self.outage + self.after

    def uploads(self, phase: list[Attempt]) -> list[Attempt]:
        return [attempt for attempt in phase if attempt.kind == "upload"]


def _phase(rig: FailoverRig, label: str) -> list[Attempt]:
    attempts = [rig.login(f"{label}-login")]
    attempts += [rig.upload(f"Failover-{label}-{i + 1}") for i in range(UPLOADS_PER_PHASE)]
    return attempts


def _forwarding_rows(rig: FailoverRig) -> list:
    registry = rig.registry()
    try:
        return [e for e in recorded_events(registry, account_name=ACCOUNT) if e.outcome == "forwarding"]
    finally:
        registry.close()


@pytest.fixture(scope="module")
def story(tmp_path_factory, upstream, host_key_dir, user_keys):
    with FailoverRig(tmp_path_factory.mktemp("failover"), upstream, host_key_dir, user_keys["alice"],
                     replicas=2, key_cache_seconds=KEY_CACHE_SECONDS) as rig:
        told = Story(rig, pids=[replica.pid for replica in rig.replicas])
        told.before = _phase(rig, "Before")
        told.check_before = rig.check()

        # One upload is at the upload server when the primary dies: its row says "forwarding".
        upstream.set_fault(delay=UPSTREAM_DELAY)
        crossing = threading.Thread(target=lambda: told.crossing.append(rig.upload("Failover-Crossing")))
        crossing.start()
        try:
            wait_until(lambda: _forwarding_rows(rig), what="the crossing upload to be forwarded", timeout=20)
            rig.pair.primary.stop_hard()
            stopped_at = time.monotonic()
        finally:
            crossing.join(60)
            upstream.clear_fault()
        wait_until(lambda: rig.all_ready(False), what="every replica to report the registry unavailable",
                   timeout=15)
        told.ready_during = rig.readiness()
        told.admin_during = rig.admin("accounts", "list")
        told.check_during = rig.check()
        # A key looked up before the crash may still be cached; past this bound no replica answers from it.
        time.sleep(max(0.0, stopped_at + KEY_CACHE_SECONDS + 0.1 - time.monotonic()))
        told.outage = _phase(rig, "Outage")

        rig.pair.standby.promote()  # returns once the standby accepts writes
        told.promoted_at = time.monotonic()
        told.after = [rig.upload(f"Failover-After-{i + 1}") for i in range(UPLOADS_PER_PHASE)]
        told.after.append(rig.login("After-login"))
        wait_until(lambda: rig.all_ready(True), what="every replica to be ready again", timeout=20)
        told.ready_after = rig.readiness()
        told.admin_after = rig.admin("accounts", "list")
        told.check_after = rig.check()
        yield told


def test_every_file_at_the_upstream_has_its_event_on_the_new_primary(story, upstream):
    """Each published file has its event row, read on the promoted standby: `forwarded`, or
    `forwarding` for the upload the crash caught at the upload server (the report's "outcome unknown")."""
    assert story.rig.pair.standby.query("SELECT pg_is_in_recovery()") == [(False,)]
    registry = story.rig.registry()
    try:
        events = {event.filename: event for event in recorded_events(registry, account_name=ACCOUNT)}
    finally:
        registry.close()
    published = [a for a in story.uploads(story.attempts) if a.upstream_name in upstream.files()]
    assert len(published) == 2 * UPLOADS_PER_PHASE + 1
    for attempt in published:
        assert attempt.upstream_name in events, f"{attempt.name} is published but has no event row"
        expected = "forwarding" if attempt in story.crossing else "forwarded"
        assert events[attempt.upstream_name].outcome == expected


def test_the_upload_caught_by_the_crash_is_told_it_landed(story, upstream):
    """The upload at the upload server when the primary died landed, and its client was told so."""
    (attempt,) = story.crossing
    assert attempt.told_success, attempt.output
    assert upstream.files()[attempt.upstream_name] == attempt.sha256


def test_success_is_printed_only_for_uploads_that_landed(story, upstream):
    """An upload told `Server response (200)` is at the upstream, byte for byte; no other is."""
    files = upstream.files()
    for attempt in story.uploads(story.attempts):
        if attempt.told_success:
            assert files.get(attempt.upstream_name) == attempt.sha256, attempt.output
        else:
            assert attempt.upstream_name not in files, attempt.output


def test_uploads_before_and_after_the_outage_succeed(story):
    """The stream succeeds before the crash and from the first upload after the promotion."""
    for attempt in story.uploads(story.before + story.after):
        assert attempt.told_success, attempt.output


def test_uploads_during_the_outage_are_refused_saying_nothing_was_published(story):
    """With no writable server, every upload is refused before forwarding, and the client is told so."""
    for attempt in story.uploads(story.outage):
        assert not attempt.told_success
        assert attempt.returncode != 0
        assert REGISTRY_DOWN in attempt.output and NOTHING_PUBLISHED in attempt.output, attempt.output


def test_logins_fail_clearly_during_the_outage_and_work_after(story):
    """`whoami` names the account before and after; during the outage the login is refused with the reason."""
    logins = {attempt.name: attempt for attempt in story.attempts if attempt.kind == "login"}
    assert logins["Before-login"].told_success, logins["Before-login"].output
    assert logins["After-login"].told_success, logins["After-login"].output
    during = logins["Outage-login"]
    assert not during.told_success
    assert REGISTRY_DOWN in during.output and NOTHING_PUBLISHED in during.output, during.output


def test_readyz_reports_the_registry_unavailable_then_ready(story):
    """/readyz: 503 naming the database on every replica during the outage, 200 after the promotion."""
    for status, reason in story.ready_during:
        assert status == 503 and "database" in reason, reason
    assert [status for status, _reason in story.ready_after] == [200] * len(story.rig.replicas)


def test_the_replicas_were_never_restarted(story):
    """The same processes served before, during and after: healing needs no restart."""
    assert [replica.pid for replica in story.rig.replicas] == story.pids
    assert all(replica.running for replica in story.rig.replicas)


def test_admin_commands_say_one_line_during_the_outage_and_work_after(story):
    """`pypissh-migrate accounts list`, same configuration: one error line, then the accounts."""
    during = story.admin_during
    assert during.returncode == 1 and during.stdout == ""
    assert len(during.stderr.splitlines()) == 1, during.stderr
    assert during.stderr.startswith("Error: ") and "registry" in during.stderr
    after = story.admin_after
    assert after.returncode == 0, after.stderr
    assert ACCOUNT in after.stdout


def test_check_names_the_primary_and_the_standby_lag(story):
    """`check` says which host is the primary before, that none is during the outage, and the new one after."""
    primary, standby = story.rig.pair.primary.address, story.rig.pair.standby.address
    before = database_lines(story.check_before.stdout)
    assert before[0].startswith(f"[ok] database host {primary}: the primary"), before
    assert "streaming" in before[0] and "not yet replayed" in before[0]
    assert before[1].startswith(f"[ok] database host {standby}: a standby"), before
    assert "not yet replayed" in before[1]

    during = story.check_during.stdout
    assert story.check_during.returncode == 1
    assert f"[FAIL] database host {primary}: unreachable" in during
    assert f"[FAIL] database host {standby}: a standby (read-only) that receives no WAL" in during
    assert "[FAIL] none of the 2 database hosts accepts writes" in during

    after = database_lines(story.check_after.stdout)
    assert after[0].startswith(f"[FAIL] database host {primary}: unreachable"), after
    assert after[1].startswith(f"[ok] database host {standby}: the primary"), after



def test_check_without_pg_monitor_says_what_is_hidden_and_fails_nothing():
    """A registry role without pg_monitor sees no replication state: `check` says so, and does not
    mistake the hidden WAL receiver for a standby cut off from its primary."""
    with pgpair.standby_pair() as pair:
        pair.create_database("pypissh")
        pair.primary.query("CREATE ROLE gateway LOGIN")
        wait_until(lambda: pair.standby.query("SELECT 1 FROM pg_roles WHERE rolname = 'gateway'"),
                   what="the role to reach the standby")
        url = pair.url("pypissh").replace("postgres@", "gateway@")
        findings = database_host_findings(Settings(database_url=url))
    assert all(finding.ok for finding in findings), [f.line() for f in findings]
    primary, standby = (finding.text for finding in findings)
    assert primary.startswith(f"database host {pair.primary.address}: the primary")
    assert "hidden: grant pg_monitor" in primary
    assert standby.startswith(f"database host {pair.standby.address}: a standby (read-only), WAL receiver hidden")
    assert "bytes received but not yet replayed" in standby
