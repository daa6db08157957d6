"""One gate for the upstream's address: the upstream client refuses a plain-http URL when it is
built (gateway/upload/upstream.py), so no path that forwards (serve, workers, test
helpers) can send an API token in cleartext."""

from __future__ import annotations

import select
import socket

import pytest

from gateway.errors import ConfigError
from gateway.services import Services
from gateway.setting_texts import upstream_not_https
from gateway.upload.upstream import UpstreamClient

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
