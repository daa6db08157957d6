"""`pypissh-migrate evidence refresh` against the real TLS pypiserver (PEP 503 HTML) and the
testbed's PEP 691 JSON stand-in over the same files: uploads through the gateway with the real
OpenSSH client and distutils, releases made another way with the real twine, and what the
report, the verdict and the per-use reminder make of it. Every clock is pinned: the gateway's
through the harness, the admin tool's with testbed/clock.py, the JSON index's upload times with os.utime."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.utils import canonicalize_name

from gateway.lifecycle import notices
from gateway.registry import UploadEvent
from migrate.cli import cli
from testbed import legacyrequests as lr
from testbed.json_index import JsonIndex
from testbed.clock import invoke_at
from tests.helpers import register_account, wait_until

UTC = dt.timezone.utc
T0 = dt.datetime(2030, 3, 4, 10, 0, tzinfo=UTC)  # the first SSH upload of each test
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


def fixed(when: dt.datetime):
    return lambda: when


def admin(settings, *args: str, now: dt.datetime, index_url: str | None = None):
    """`pypissh-migrate` on the gateway's registry, with "now" pinned."""
    return invoke_at(now, cli, ["--set", f"database_url={settings.database_url}",
                                "--set", f"index_url={index_url or settings.index_url}",
                                "--set", f"upstream_ca_bundle={settings.upstream_ca_bundle}", *args])


def refresh(settings, *args: str, now: dt.datetime, index_url: str | None = None):
    result = admin(settings, "evidence", "refresh", *args, now=now, index_url=index_url)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def report(settings, now: dt.datetime) -> dict:
    result = admin(settings, "report", "--since", "30d", "--format", "json", now=now)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def statuses(data: dict) -> dict[str, str]:
    return {a["account"]: a["status"] for a in data["accounts"]}


def would_break(data: dict) -> list[str]:
    return [a["account"] for a in data["verdict"]["would_break"]]


def twine_release(upstream, folder: Path, name: str, version: str) -> Path:
    """Publish `name` `version` with the real twine, straight to the upstream, as a user who has
    switched does; returns where the upstream stored it."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = folder / f"{canonicalize_name(name).replace('-', '_')}-{version}.tar.gz"
    dist.write_bytes(lr.make_sdist(name, version, metadata_version="2.1"))
    # twine does not take a private CA through --cert reliably; REQUESTS_CA_BUNDLE does.
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(upstream.ca_file), TWINE_USERNAME="__token__",
               TWINE_PASSWORD=upstream.token)
    run = subprocess.run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                          "--repository-url", upstream.url, str(dist)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return upstream.packages_dir / dist.name


def stored_at(path: Path, when: dt.datetime) -> None:
    """Set when the index says the file was uploaded (the JSON stand-in reads its mtime)."""
    os.utime(path, (when.timestamp(), when.timestamp()))


def ssh_upload(gateway, ssh_client, legacy_project, legacy_home, when: dt.datetime, version: str, *,
               name: str | None = None, key=None) -> None:
    gateway.set_clock(fixed(when))
    result = ssh_client(key).legacy(legacy_project(name, version=version), "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def json_index(upstream):
    """The PEP 691 JSON stand-in over the upstream's package folder, with the upstream's certificate."""
    with JsonIndex(upstream.packages_dir, upstream.tls) as index:
        yield index


def test_twine_release_after_the_ssh_upload_makes_the_account_migrated(
        gateway, alice, ssh_client, legacy_project, legacy_home, upstream, project_name, tmp_path):
    """pypiserver's HTML pages: the first refresh is the baseline; a twine release found by the
    next one makes alice migrated and takes her off the would-break list; a third run adds nothing."""
    settings = gateway.settings
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0, "1.0")
    first = refresh(settings, now=T0 + HOUR)
    assert first.exit_code == 0, first.output
    assert first.stdout == (f"evidence refresh: 1 of 1 project page(s) read from {upstream.simple_url}, "
                            "0 new file(s) recorded, 0 failed\n")
    before = report(settings, T0 + 2 * HOUR)
    assert would_break(before) == ["alice"] and statuses(before)["alice"] == "active"

    released = twine_release(upstream, tmp_path / "dist", project_name, "2.0")
    second = refresh(settings, now=T0 + DAY)
    assert second.exit_code == 0 and "1 new file(s) recorded" in second.stdout
    after = report(settings, T0 + 2 * DAY)
    assert statuses(after)["alice"] == "migrated"
    assert would_break(after) == [] and after["verdict"]["migrated"] == ["alice"]
    assert after["summary"]["safe_to_switch_off"] is True
    assert after["evidence"] == [{
        "account": "alice", "status": "migrated", "project": canonicalize_name(project_name),
        "filename": released.name, "published_at": "2030-03-05T10:00:00Z",
        "known_from": "first seen by evidence refresh", "after_ssh_upload": "2030-03-04T10:00:00Z"}]

    again = refresh(settings, now=T0 + 3 * DAY)
    assert again.exit_code == 0 and "0 new file(s) recorded" in again.stdout
    assert report(settings, T0 + 2 * DAY)["evidence"] == after["evidence"]


def test_an_account_without_a_new_release_still_would_break(
        gateway, alice, user_keys, ssh_client, legacy_project, legacy_home, upstream, project_name, tmp_path,
        json_index):
    """JSON pages with upload times: one refresh makes alice (twine release since) migrated; bob,
    whose project saw no release since his SSH upload, still would break."""
    settings = gateway.settings
    register_account(gateway, "bob", user_keys["bob"], token=upstream.token, email="bob@example.org")
    bobs = f"{project_name}-bob"
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0, "1.0")
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0 + HOUR, "1.0", name=bobs, key=user_keys["bob"])
    stored_at(twine_release(upstream, tmp_path / "dist", project_name, "2.0"), T0 + DAY)

    result = refresh(settings, now=T0 + 2 * DAY, index_url=json_index.url)
    assert result.exit_code == 0 and "2 of 2 project page(s) read" in result.stdout
    data = report(settings, T0 + 3 * DAY)
    assert statuses(data) == {"bob": "active", "alice": "migrated"}
    assert would_break(data) == ["bob"]
    (evidence,) = data["evidence"]
    assert (evidence["account"], evidence["published_at"], evidence["known_from"]) == \
           ("alice", "2030-03-05T10:00:00Z", "upload time on the index")


def test_a_release_through_the_gateway_does_not_count(
        gateway, alice, ssh_client, legacy_project, legacy_home, upstream, project_name, json_index):
    """Two SSH uploads, both dated on the index after the last one: matched by name and sha256 to
    the gateway's own events, nothing is recorded and alice still would break."""
    settings = gateway.settings
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0, "1.0")
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0 + DAY, "2.0")
    prefix = canonicalize_name(project_name).replace("-", "_")
    ours = sorted(upstream.packages_dir.glob(f"{prefix}-*"))
    assert [p.name for p in ours] == [f"{prefix}-1.0.tar.gz", f"{prefix}-2.0.tar.gz"]
    for path in ours:
        stored_at(path, T0 + 2 * DAY)

    result = refresh(settings, now=T0 + 3 * DAY, index_url=json_index.url)
    assert result.exit_code == 0 and "0 new file(s) recorded" in result.stdout
    data = report(settings, T0 + 3 * DAY)
    assert would_break(data) == ["alice"] and data["evidence"] == []


def test_an_unreachable_index_is_reported_and_changes_nothing(
        gateway, alice, ssh_client, legacy_project, legacy_home, upstream, project_name, tmp_path, json_index):
    """Nothing listening at index_url: one line per project, the summary counts them, exit status
    1, and the report (alice migrated) is exactly what it was."""
    settings = gateway.settings
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0, "1.0")
    other = canonicalize_name(f"{project_name}-other")
    alice_id = gateway.registry.accounts.get_account("alice").id
    gateway.registry.events.record(UploadEvent(at=T0 + HOUR, outcome="forwarded", account_id=alice_id,
                                               account_name="alice", action="file_upload", project=other,
                                               filename=f"{other.replace('-', '_')}-1.0.tar.gz", sha256="0f" * 32))
    stored_at(twine_release(upstream, tmp_path / "dist", project_name, "2.0"), T0 + DAY)
    stored_at(twine_release(upstream, tmp_path / "dist", other, "1.1"), T0 + DAY)
    assert refresh(settings, now=T0 + 2 * DAY, index_url=json_index.url).exit_code == 0
    before = report(settings, T0 + 3 * DAY)
    assert statuses(before)["alice"] == "migrated"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{sock.getsockname()[1]}/simple/"
    failed = refresh(settings, now=T0 + 3 * DAY, index_url=closed)
    assert failed.exit_code == 1
    lines = failed.stderr.splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == sorted([canonicalize_name(project_name), other])
    for line in lines:
        assert f"cannot read the index page {closed}" in line and "connection refused" in line
        assert line.endswith("its evidence is unchanged, run the refresh again later")
    assert failed.stdout == (f"evidence refresh: 0 of 2 project page(s) read from {closed}, 0 new file(s) recorded, "
                             "2 failed (listed above; exit status 1)\n")
    assert report(settings, T0 + 3 * DAY) == before


def test_refresh_json_is_the_summary_value(gateway, alice, ssh_client, legacy_project, legacy_home, upstream):
    """--format json prints the one summary value (what the audit journal records), failures included."""
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0, "1.0")
    result = refresh(gateway.settings, "--format", "json", "--concurrency", "2", now=T0 + DAY)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "action": "evidence refresh", "index_url": upstream.simple_url, "started_at": "2030-03-05T10:00:00Z",
        "finished_at": "2030-03-05T10:00:00Z", "concurrency": 2, "projects": 1, "projects_read": 1,
        "files_recorded": 0, "failed": 0, "failures": []}


def test_each_refresh_leaves_one_journal_entry_with_its_summary(
        gateway, alice, ssh_client, legacy_project, legacy_home, upstream):
    """A refresh is an admin change: `audit` lists it with the actor, the --reason and the summary."""
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0, "1.0")
    assert refresh(gateway.settings, "--reason", "weekly evidence run", now=T0 + DAY).exit_code == 0
    listed = admin(gateway.settings, "audit", "--since", "2030-01-01", "--format", "json", now=T0 + DAY)
    assert listed.exit_code == 0, listed.output
    (entry,) = [e for e in json.loads(listed.stdout) if e["target_kind"] == "evidence"]
    assert entry["actor"] == pwd.getpwuid(os.geteuid()).pw_name and entry["reason"] == "weekly evidence run"
    assert entry["target"] == upstream.simple_url and entry["command"] == "pypissh-migrate evidence refresh"
    assert (entry["after"]["projects_read"], entry["after"]["failed"]) == (1, 0)


def test_a_project_never_uploaded_over_ssh_is_refused(gateway, alice, ssh_client, legacy_project, legacy_home):
    """--project names only projects of the SSH path; another is a usage error saying where to look."""
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0, "1.0")
    result = refresh(gateway.settings, "--project", "Never_Seen", now=T0 + DAY)
    assert result.exit_code == 2
    assert "'never-seen' was never uploaded over SSH" in result.output and "pypissh-migrate report" in result.output


def test_refresh_help_names_the_exit_status():
    """`evidence refresh --help` says what is read, what an index without upload times means, and the exit status."""
    result = CliRunner().invoke(cli, ["evidence", "refresh", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for expected in ("--concurrency", "PEP 691 JSON", "PEP 700", "count for nothing",
                     "Exit status: 0 when every page was read, 1 when any could not be"):
        assert expected in text


def test_no_reminder_is_queued_for_a_migrated_account(
        gateway, alice, user_key, ssh_client, legacy_project, legacy_home, upstream, project_name, tmp_path,
        json_index):
    """In the notice phase, a migrated account's use of the path queues no reminder; once an SSH
    upload goes through again (mixed use), one is queued."""
    registry = gateway.registry
    registry.schedule.add_window("notice", T0 - 30 * DAY)
    gateway.ticks.advance(60)  # the schedule cache sees the notice at once
    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, T0, "1.0")
    (first,) = wait_until(lambda: registry.outbox.sends(campaign="reminder"), what="the first reminder")
    registry.outbox.finish_send(first.id, "sent", sent_at=T0)  # as `notify --reminders` leaves it
    stored_at(twine_release(upstream, tmp_path / "dist", project_name, "2.0"), T0 + DAY)
    assert refresh(gateway.settings, now=T0 + 2 * DAY, index_url=json_index.url).exit_code == 0

    identity = registry.keys.identity_for_key(user_key.fingerprint)
    later = T0 + 40 * DAY  # past the repeat window of the first reminder

    async def use_of_the_path() -> None:
        await notices.queue_reminder_soon(gateway.services, identity, later)

    asyncio.run(use_of_the_path())
    assert [s.id for s in registry.outbox.sends(campaign="reminder")] == [first.id]

    ssh_upload(gateway, ssh_client, legacy_project, legacy_home, later + HOUR, "3.0")
    queued = wait_until(lambda: [s for s in registry.outbox.sends(campaign="reminder") if s.status == "queued"],
                        what="the reminder of the upload after migrating")
    assert [s.created_at for s in queued] == [later + HOUR]
