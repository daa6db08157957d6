"""End to end through the real OpenSSH client and stdlib distutils: notices, brownouts, the sunset
and the pause, with the gateway's clock injected (no test waits for a real date)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.registry import Registry
from testbed.clock import command_at
from tests.helpers import recorded_events, register_account, wait_until

UTC = dt.timezone.utc
NOTICE = dt.datetime(2026, 8, 1, 9, 0, tzinfo=UTC)
BROWNOUT = (dt.datetime(2026, 10, 1, 14, 0, tzinfo=UTC), dt.datetime(2026, 10, 1, 16, 0, tzinfo=UTC))
SUNSET = dt.datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
IN_NOTICE = dt.datetime(2026, 9, 15, 8, 30, tzinfo=UTC)
IN_BROWNOUT = dt.datetime(2026, 10, 1, 15, 0, tzinfo=UTC)
AFTER_SUNSET = dt.datetime(2026, 12, 24, tzinfo=UTC)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def set_schedule(registry: Registry) -> None:
    registry.schedule.add_window("notice", NOTICE)
    registry.schedule.add_window("brownout", *BROWNOUT, note="afternoon in Europe")
    registry.schedule.add_window("sunset", SUNSET)


def fixed(when: dt.datetime):
    return lambda: when


def posts(upstream) -> list:
    return [r for r in upstream.recordings() if r.method == "POST"]


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def migrate_cli(settings, *args: str, now: dt.datetime | None = None) -> subprocess.CompletedProcess:
    """`pypissh-migrate` in a process of its own, on the gateway's database; at `now` when given
    (the clock pinned through testbed/clock.py)."""
    program = command_at(now) if now is not None else [sys.executable, "-m", "migrate"]
    return subprocess.run(
        [*program, "--set", f"database_url={settings.database_url}", *args],
        capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)


@pytest.fixture
def scheduled(gateway, alice):
    set_schedule(gateway.registry)
    return gateway


def test_brownout_refuses_upload_with_410_and_nothing_reaches_upstream(
        scheduled, ssh_client, legacy_project, legacy_home, upstream, project_name):
    """Inside a brownout `setup.py upload` fails with the 410 reason; the upstream gets nothing."""
    scheduled.set_clock(fixed(IN_BROWNOUT))
    upstream.clear_recordings()
    result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    assert result.returncode != 0
    text = output(result)
    assert "Upload failed (410): SSH uploads are off for a scheduled brownout until 2026-10-01 16:00 UTC" in text
    assert "twine upload dist/*" in text
    assert posts(upstream) == []
    event = recorded_events(scheduled.registry, account_name="alice")[-1]
    assert event.outcome == "refused_schedule" and event.project == project_name.lower()
    assert "brownout" in event.error


def test_outside_the_brownout_same_upload_succeeds_with_dated_notice(
        scheduled, ssh_client, legacy_project, legacy_home, upstream, project_name, user_key):
    """The upload refused in the brownout succeeds after it, and stderr carries the exact dates."""
    project = legacy_project()
    client = ssh_client()
    scheduled.set_clock(fixed(IN_BROWNOUT))
    assert client.legacy(project, "sdist", "upload", home=legacy_home).returncode != 0
    scheduled.set_clock(fixed(IN_NOTICE))
    result = client.legacy(project, "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, output(result)
    assert "Server response (200)" in result.stdout
    assert f"account 'alice', key {user_key.fingerprint}, project '{project_name.lower()}'" in result.stderr
    assert "Uploads over SSH are deprecated and end on 2026-12-01 14:00 UTC." in result.stderr
    assert "Next brownout (SSH uploads refused, a rehearsal of the end): 2026-10-01 14:00 UTC to 16:00 UTC" in result.stderr
    assert "twine upload dist/*" in result.stderr
    assert project_name.lower().replace("-", "_") + "-1.0.tar.gz" in upstream.files()


def test_after_sunset_every_upload_and_register_is_refused(
        scheduled, ssh_client, legacy_project, legacy_home, upstream):
    """After the sunset uploads are refused (410) and register is answered 410 too; guide still works."""
    scheduled.set_clock(fixed(AFTER_SUNSET))
    upstream.clear_recordings()
    client = ssh_client()
    result = client.legacy(legacy_project(), "register", "sdist", "upload", home=legacy_home)
    assert result.returncode != 0
    text = output(result)
    assert "Server response (410): SSH uploads ended on 2026-12-01 14:00 UTC" in text
    assert "Upload failed (410): SSH uploads ended on 2026-12-01 14:00 UTC" in text
    assert posts(upstream) == []
    guide = client.run("guide")
    assert guide.returncode == 0 and b"twine upload" in guide.stdout


def test_exempt_account_uploads_through_brownout_and_after_sunset(
        gateway, ssh_client, user_keys, legacy_project, legacy_home, upstream):
    """An exempt account passes a brownout and the sunset, and its notice says why."""
    register_account(gateway, "bob", user_keys["bob"], token=upstream.token, email="bob@example.org", exempt=True)
    set_schedule(gateway.registry)
    client = ssh_client(user_keys["bob"])
    gateway.set_clock(fixed(IN_BROWNOUT))
    result = client.legacy(legacy_project(version="1.0"), "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, output(result)
    assert "Account 'bob' is exempt, so its SSH uploads are not refused." in result.stderr
    gateway.set_clock(fixed(AFTER_SUNSET))
    result = client.legacy(legacy_project(version="2.0"), "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, output(result)
    assert "SSH uploads ended on 2026-12-01 14:00 UTC." in result.stderr


def test_pause_refuses_even_exempt_accounts(gateway, ssh_client, user_keys, legacy_project, legacy_home, upstream):
    """While paused every upload is refused at once, exempt accounts included, with the note."""
    register_account(gateway, "bob", user_keys["bob"], token=upstream.token, exempt=True)
    gateway.registry.schedule.add_window("pause", NOTICE, note="incident 42")
    upstream.clear_recordings()
    result = ssh_client(user_keys["bob"]).legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    assert result.returncode != 0
    assert "Upload failed (410): SSH uploads are paused by the index administrators" in output(result)
    assert "(incident 42)" in output(result)
    assert posts(upstream) == []


def test_schedule_change_from_another_process_is_obeyed_without_restart(
        start_gateway, settings, alice, ssh_client, legacy_project, legacy_home):
    """A pause and a brownout added by `pypissh-migrate` in another process reach a running gateway
    once its 2 s schedule cache expires (the cache's clock is injected; nothing sleeps)."""
    harness = start_gateway(settings)
    client = ssh_client(harness=harness)
    project = legacy_project()
    admin_now = dt.datetime(2031, 5, 3, 9, 0, tzinfo=UTC)  # the admin tool's clock (pinned)
    tomorrow = admin_now + dt.timedelta(days=1)
    harness.set_clock(fixed(tomorrow + dt.timedelta(minutes=30)))
    assert client.legacy(legacy_project(version="0.1"), "sdist", "upload", home=legacy_home).returncode == 0

    done = migrate_cli(settings, "schedule", "pause", "--note", "maintenance", "--yes", now=admin_now)
    assert done.returncode == 0, done.stderr
    harness.ticks.advance(2.5)
    refused = client.legacy(project, "sdist", "upload", home=legacy_home)
    assert "Upload failed (410): SSH uploads are paused" in output(refused)

    assert migrate_cli(settings, "schedule", "resume", now=admin_now).returncode == 0
    start = tomorrow.strftime("%Y-%m-%d %H:%M")
    added = migrate_cli(settings, "schedule", "add-brownout", start, "--for", "2h", now=admin_now)
    assert added.returncode == 0, added.stderr
    harness.ticks.advance(2.5)
    refused = client.legacy(project, "sdist", "upload", home=legacy_home)
    assert "Upload failed (410): SSH uploads are off for a scheduled brownout" in output(refused)

    brownout_id = harness.registry.schedule.current().brownouts[0].id
    assert migrate_cli(settings, "schedule", "cancel-brownout", str(brownout_id), now=admin_now).returncode == 0
    harness.ticks.advance(2.5)
    assert client.legacy(project, "sdist", "upload", home=legacy_home).returncode == 0


def test_openssh_shows_the_authentication_banner(scheduled, ssh_client):
    """The real ssh client prints the login banner with the dates (at its default log level)."""
    scheduled.set_clock(fixed(IN_NOTICE))
    client = ssh_client()
    argv = [arg.replace("LogLevel=ERROR", "LogLevel=INFO") for arg in client.argv("-T", "-l", "submit")]
    result = subprocess.run([*argv, "127.0.0.1", "whoami"], capture_output=True, timeout=60)
    assert result.returncode == 0
    stderr = result.stderr.decode()
    assert "Uploads over SSH are deprecated and end on 2026-12-01 14:00 UTC." in stderr
    assert "twine upload dist/*" in stderr
    assert b"account:  alice" in result.stdout


def test_every_legacy_reply_carries_the_deprecation_header(scheduled, ssh_client):
    """A legacy reply (here list_classifiers) carries X-PyPI-SSH-Deprecation and Sunset headers."""
    scheduled.set_clock(fixed(IN_NOTICE))
    request = b"GET /legacy/?:action=list_classifiers HTTP/1.1\r\nHost: upload.pypi.org\r\nConnection: close\r\n\r\n"
    result = ssh_client().run(data=request)
    head = result.stdout.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.0 200")
    assert "X-PyPI-SSH-Deprecation: deprecated; phase=notice; sunset=2026-12-01T14:00:00Z;" in head
    assert "Sunset: Tue, 01 Dec 2026 14:00:00 GMT" in head


def test_upload_queues_one_reminder_off_the_session(scheduled, ssh_client, legacy_project, legacy_home):
    """An upload in the notice phase queues a per-use reminder row (sent later by notify)."""
    scheduled.set_clock(fixed(IN_NOTICE))
    assert ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home).returncode == 0
    registry = scheduled.registry
    # Queued by a worker thread after the answer.
    (row,) = wait_until(lambda: registry.outbox.sends(campaign="reminder"), what="the reminder to be queued")
    assert row.status == "queued" and row.email == "alice@example.org" and row.created_at == IN_NOTICE
