"""One gate for the upstream's address: the upstream client refuses a plain-http URL when it is
built (gateway/upload/upstream.py), so no path that forwards (serve, workers, stdio in process,
test helpers) can send an API token in cleartext."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys

import pytest

from gateway.errors import ConfigError
from gateway.messages import upstream_not_https
from gateway.services import Services
from gateway.upload.upstream import UpstreamClient
from testbed.legacyrequests import make_sdist, python3_upload
from tests.helpers import recorded_events, register_account

TOKEN = "pypi-gate-test-token-never-in-cleartext"


@pytest.fixture
def sink():
    """A plain TCP listener standing in for an http:// upstream; it never accepts, so anything that
    tried to reach it is still waiting in its backlog when the test looks."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener
    listener.close()


def _reached(listener: socket.socket) -> bool:
    """Whether any connection arrived (a pending connection makes the listener readable)."""
    return bool(select.select([listener], [], [], 0)[0])


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/legacy/", "HTTP://upload.example/legacy/"])
def test_the_client_refuses_a_plain_http_upstream_when_built(settings, url):
    """UpstreamClient(settings) raises ConfigError, naming the URL and what to use instead."""
    with pytest.raises(ConfigError) as info:
        UpstreamClient(settings.replace(upstream_url=url))
    assert str(info.value) == upstream_not_https(url)


def test_services_for_a_plain_http_upstream_cannot_be_built(settings):
    """Services.build, what serve, its workers and stdio in process all start from, refuses too."""
    with pytest.raises(ConfigError, match="is plain http"):
        Services.build(settings.replace(upstream_url="http://127.0.0.1:9/legacy/"))


def test_stdio_in_process_refuses_a_plain_http_upstream_and_sends_nothing(gateway, settings, user_key, sink):
    """`stdio` with stdio_in_process = true and an http:// upstream: a whole legacy upload on stdin,
    a refusal, exit 1, and no connection ever reaches the listener (so no token crossed it)."""
    register_account(gateway, "alice", user_key, token=TOKEN)
    url = f"http://127.0.0.1:{sink.getsockname()[1]}/legacy/"
    request = python3_upload("gatecheck", "1.0", make_sdist("gatecheck", "1.0"))
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--set", f"database_url={settings.database_url}",
         "--set", f"secret_key_file={settings.secret_key_file}", "--set", f"upstream_url={url}",
         "--set", "upstream_ca_bundle=", "--set", "stdio_in_process=true",
         # Short, so that without the gate the run ends (with the token sent) instead of hanging.
         "--set", "upstream_timeout=2", "--set", "upstream_deadline=4", "--set", "upstream_retries=0",
         "stdio", "--account", "alice", "--fingerprint", user_key.fingerprint],
        input=request, capture_output=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYPISSH_")})
    assert done.returncode == 1
    assert done.stderr.decode().splitlines()[-1] == (
        "pypissh-gateway: internal error; nothing was published; try again later")
    assert TOKEN.encode() not in done.stdout + done.stderr
    assert _reached(sink) is False
    assert recorded_events(gateway.registry, account_name="alice") == []
