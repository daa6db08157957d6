"""Upstream faults, beyond the basics: a timeout after the whole upload was sent is retried (and
said to be unknown when no retry is left), a redirect is never followed, 502/503/504 are retried a bounded number of times from the spool
with backoff, other errors are reported once; a full spool disk gives a clear reason."""

from __future__ import annotations

import os
import subprocess

import pytest

from testbed import legacyrequests as lr
from tests.helpers import recorded_events, register_account, reply_status


def _upload(harness, ssh_client, user_key, upstream, project_name, *, pad: bytes = b""):
    register_account(harness, "alice", user_key, token=upstream.token)
    content = lr.make_sdist(project_name, "1.0", pad=pad)
    return ssh_client(harness=harness).run(data=lr.python3_upload(project_name, "1.0", content))


def _posts(upstream):
    return [record for record in upstream.recordings() if record.method == "POST"]


def test_upstream_timeout_after_the_whole_upload_is_retried_and_lands_once(
        start_gateway, make_settings, ssh_client, user_key, upstream, project_name, recorded_sleeps):
    """An answer slower than upstream_timeout after the whole upload was sent: retried, published once."""
    harness, sleeps = recorded_sleeps(make_settings(upstream_timeout=1.0, upstream_retries=2))
    upstream.clear_recordings()
    upstream.set_fault(delay=3.0, count=1)
    result = _upload(harness, ssh_client, user_key, upstream, project_name)
    code, reason = reply_status(result.stdout)
    # The retry lands first, or it finds the first attempt's file and the index confirms it.
    assert code == 200, reason
    assert sleeps == [0.5]
    upstream.wait_recordings(2, timeout=15)
    assert len(_posts(upstream)) == 2
    assert [name for name in upstream.files() if name.endswith(".tar.gz") and project_name.lower().replace("-", "_") in name]
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "forwarded"


def test_upstream_timeout_without_retries_says_the_outcome_is_unknown(
        start_gateway, make_settings, ssh_client, user_key, upstream, project_name):
    """No retry left after a timeout with the whole upload sent: 504 saying it may have been published."""
    harness = start_gateway(make_settings(upstream_timeout=1.0, upstream_retries=0))
    upstream.clear_recordings()
    upstream.set_fault(delay=3.0, count=1)
    result = _upload(harness, ssh_client, user_key, upstream, project_name)
    code, reason = reply_status(result.stdout)
    assert code == 504 and "received the whole upload but sent no answer (timed out)" in reason
    assert "may have been published" in reason and "nothing was published" not in reason
    assert f"{upstream.simple_url}" in reason
    upstream.wait_recordings(1, timeout=15)
    assert len(_posts(upstream)) == 1
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed_and_names_the_target(gateway, ssh_client, user_key, upstream, project_name,
                                                       status):
    """A 3xx from the upstream is reported with its target (as twine does) and never followed."""
    upstream.clear_recordings()
    upstream.set_fault(status=status, headers={"Location": "https://elsewhere.example/legacy/"})
    result = _upload(gateway, ssh_client, user_key, upstream, project_name)
    code, reason = reply_status(result.stdout)
    assert code == 502
    assert f"answered {status} and redirected to https://elsewhere.example/legacy/" in reason
    assert "does not follow redirects" in reason and "nothing was published" in reason
    assert len(_posts(upstream)) == 1


def test_redirect_without_location_is_still_a_redirect(gateway, ssh_client, user_key, upstream, project_name):
    """A bare 302 (no Location) is not passed on as if it were the index's answer."""
    upstream.set_fault(status=302, reason="Found")
    code, reason = reply_status(_upload(gateway, ssh_client, user_key, upstream, project_name).stdout)
    assert code == 502 and "redirected to an address it did not give" in reason


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_a_bounded_number_of_times_with_backoff(
        start_gateway, make_settings, ssh_client, user_key, upstream, project_name, recorded_sleeps, status):
    """A lasting 502/503/504: 1 + upstream_retries identical attempts with backoff, then its reason,
    saying the upload may have been published (a server may fail having stored it); event unknown."""
    harness, sleeps = recorded_sleeps(make_settings(upstream_retries=2))
    upstream.clear_recordings()
    upstream.set_fault(status=status, reason="Try Later")
    result = _upload(harness, ssh_client, user_key, upstream, project_name)
    code, reason = reply_status(result.stdout)
    assert code == status
    assert reason.startswith("Try Later (the upload server failed after receiving the whole upload: it may have "
                             "been published; look for ") and upstream.simple_url in reason
    posts = _posts(upstream)
    assert len(posts) == 3 and posts[0].body == posts[1].body == posts[2].body
    assert sleeps == [0.5, 1.0]
    (event,) = recorded_events(harness.registry)
    assert (event.outcome, event.upstream_status) == ("unknown", status)


@pytest.mark.parametrize("status,reason", [(400, "Invalid value for classifiers"), (403, "Invalid API Token"),
                                           (409, "File already exists"), (500, "Internal Server Error")])
def test_other_errors_are_reported_once(start_gateway, make_settings, ssh_client, user_key, upstream, project_name,
                                        recorded_sleeps, status, reason):
    """Any other error is not retried: one attempt, its status and reason passed to the user (a 5xx
    with where to look, since the server may have stored the file)."""
    harness, sleeps = recorded_sleeps(make_settings(upstream_retries=2))
    upstream.clear_recordings()
    upstream.set_fault(status=status, reason=reason)
    result = _upload(harness, ssh_client, user_key, upstream, project_name)
    code, told = reply_status(result.stdout)
    assert code == status
    assert told == reason if status < 500 else told.startswith(f"{reason} (the upload server failed after")
    assert len(_posts(upstream)) == 1 and sleeps == []


def test_unreachable_upstream_is_retried_with_backoff(start_gateway, make_settings, ssh_client, user_key, upstream,
                                                      project_name, recorded_sleeps):
    """Connection refused: retried upstream_retries times with backoff, then 502 'cannot reach'."""
    harness, sleeps = recorded_sleeps(make_settings(upstream_url="https://127.0.0.1:9/legacy/", upstream_retries=3))
    code, reason = reply_status(_upload(harness, ssh_client, user_key, upstream, project_name).stdout)
    assert code == 502 and "cannot reach the upload server" in reason
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (the test runs as root; without the privilege to mount, it is skipped)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}); "
                    "the full-spool test needs root with CAP_SYS_ADMIN")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_spool_disk_gives_a_clear_reason(start_gateway, make_settings, ssh_client, user_key, upstream,
                                              project_name, tiny_disk):
    """A full spool disk: 503 saying so, nothing upstream, and the space is free for the next upload."""
    harness = start_gateway(make_settings(spool_dir=str(tiny_disk)))
    upstream.clear_recordings()
    result = _upload(harness, ssh_client, user_key, upstream, project_name, pad=os.urandom(3 * 1024 * 1024))
    code, reason = reply_status(result.stdout)
    assert code == 503
    assert "disk for uploads in progress is full" in reason and "nothing was published" in reason
    assert upstream.recordings() == []
    assert list(tiny_disk.iterdir()) == []
    small = ssh_client(harness=harness).run(
        data=lr.python3_upload(project_name + "-small", "1.0", lr.make_sdist(project_name + "-small", "1.0")))
    assert reply_status(small.stdout)[0] == 200
