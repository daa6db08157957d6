"""Bad input gets a clear one-line refusal, the upstream receives nothing, and the gateway keeps
serving: each case is sent through a real SSH session, then a real upload must still succeed."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from testbed import legacyrequests as lr
from tests.helpers import reply_status


@pytest.fixture
def small_gateway(start_gateway, make_settings, user_key, upstream):
    """A gateway with small limits so the bad cases are cheap: 64 KiB files, 2 s read timeout."""
    from tests.helpers import register_account

    harness = start_gateway(make_settings(max_upload_bytes=64 * 1024, read_timeout=2.0, max_header_bytes=16 * 1024))
    register_account(harness, "alice", user_key, token=upstream.token)
    return harness


@pytest.fixture
def client(small_gateway, ssh_client):
    return ssh_client(harness=small_gateway)


@pytest.fixture(autouse=True)
def _nothing_forwarded_then_upload_works(client, upstream, project_name):
    """After every bad case: nothing reached the upstream, and a good upload still goes through."""
    upstream.clear_recordings()
    yield
    assert upstream.recordings() == [], "a bad request reached the upstream"
    content = lr.make_sdist(project_name + "-after", "1.0")
    result = client.run(data=lr.python3_upload(project_name + "-after", "1.0", content))
    assert reply_status(result.stdout)[0] == 200, result.stdout + result.stderr


def test_garbage_instead_of_http(client):
    """Bytes that are not HTTP get a 400 saying this is the upload endpoint and how to get help."""
    result = client.run(data=b"hello there\r\n\r\n")
    code, reason = reply_status(result.stdout)
    assert code == 400
    assert "not an HTTP request" in reason and "help" in reason
    assert result.returncode == 1


def test_body_shorter_than_content_length(client, project_name):
    """A request cut short (EOF before Content-Length bytes) is refused; nothing is published."""
    content = lr.make_sdist(project_name, "1.0")
    request = lr.python3_upload(project_name, "1.0", content)
    result = client.run(data=request[:-200])
    code, reason = reply_status(result.stdout)
    assert code == 400
    assert "cut short" in reason and "nothing was published" in reason


def test_file_larger_than_max_upload_bytes(client, project_name):
    """A file above max_upload_bytes (but a request within the form allowance) is refused with 413."""
    content = lr.make_sdist(project_name, "1.0", pad=os.urandom(100 * 1024))
    result = client.run(data=lr.python3_upload(project_name, "1.0", content))
    code, reason = reply_status(result.stdout)
    assert code == 413
    assert "above this gateway's limit of 64 KiB" in reason


def test_declared_length_far_above_the_limit_is_refused_before_reading(client, project_name):
    """A Content-Length far above the limit is refused at once; the user sees why on stderr."""
    content = lr.make_sdist(project_name, "1.0", pad=os.urandom(3 * 1024 * 1024))
    result = client.run(data=lr.python3_upload(project_name, "1.0", content))
    assert b"not published (413)" in result.stderr
    assert b"above this gateway's limit of 64 KiB" in result.stderr


def test_huge_header_block(client):
    """A header block beyond max_header_bytes is refused with 431."""
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 100) for i in range(400))
    result = client.run(data=b"POST /legacy/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    code, reason = reply_status(result.stdout)
    assert code == 431
    assert "headers exceed" in reason


def test_client_that_stops_sending(client, project_name):
    """A client that goes silent mid-body is told, within the read timeout, to try again."""
    content = lr.make_sdist(project_name, "1.0")
    request = lr.python3_upload(project_name, "1.0", content)
    argv = [*client.argv("-T", "-l", "submit"), "127.0.0.1"]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        proc.stdin.write(request[: len(request) // 2])
        proc.stdin.flush()
        started = time.monotonic()
        out = proc.stdout.read()  # the gateway answers and closes although stdin stays open
        elapsed = time.monotonic() - started
        proc.stdin.close()
        proc.wait(10)
    code, reason = reply_status(out)
    assert code == 408
    assert "no data from the client" in reason and "try again" in reason
    assert elapsed < 30  # bounded by the read timeout, not by the client
