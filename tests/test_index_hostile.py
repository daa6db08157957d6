"""Every read of the index is bounded and stays where it was sent (gateway/upload/index.py), against
a hostile TLS index (testbed/hostile_index.py): in `IndexClient` itself, in `evidence refresh`, and
in the gateway's check on the index after an upload's answer was lost."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway.registry import UploadEvent
from gateway.upload.index import IndexClient, IndexUnavailable
from migrate.cli import cli as migrate_cli
from testbed import flakyproxy as fp
from testbed import hostile_index as hi
from testbed import legacyrequests as lr
from testbed.clock import invoke_at
from testbed.flakyproxy import FlakyProxy
from testbed.hostile_index import HostileIndex
from testbed.tlsca import make_tls
from tests.helpers import recorded_events, register_account

UTC = dt.timezone.utc
NOW = dt.datetime(2027, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tls = make_tls(tmp_path_factory.mktemp("hostile-index"))
    with HostileIndex(tls) as index:
        yield index


@pytest.fixture
def client(make_settings, hostile):
    made: list[IndexClient] = []

    def _client(**options) -> IndexClient:
        max_bytes = options.pop("index_max_page_bytes", 20 * 1024 * 1024)
        made.append(IndexClient(make_settings(index_url=hostile.url, upstream_ca_bundle=str(hostile.tls.ca_cert),
                                              index_max_page_bytes=max_bytes), clock=lambda: NOW, **options))
        return made[-1]

    yield _client
    for each in made:
        each.close()


def _unreadable(client: IndexClient, project: str) -> str:
    with pytest.raises(IndexUnavailable) as info:
        client.page(project)
    assert "\n" not in info.value.reason
    return info.value.reason


def test_a_redirect_to_plain_http_is_not_followed(client, hostile):
    """The page redirects to http://: refused, naming the target, and nothing connects to it."""
    hostile.behave("to-http", hi.TO_HTTP)
    before = hostile.plain_connections
    reason = _unreadable(client(), "to-http")
    assert "it redirects to http://127.0.0.1:" in reason and "only https on 127.0.0.1 is followed" in reason
    assert hostile.plain_connections == before


def test_a_redirect_to_another_host_is_not_followed(client, hostile):
    """The page redirects to https on another host name: refused, and that host is never asked."""
    hostile.behave("to-other-host", hi.TO_OTHER_HOST)
    asked = len(hostile.asked)
    reason = _unreadable(client(), "to-other-host")
    assert "it redirects to https://localhost:" in reason
    assert hostile.asked[asked:] == ["to-other-host"]


def test_a_redirect_to_https_on_the_same_host_is_followed(client, hostile):
    """A move within the index (same scheme and host) is followed and its page read."""
    hostile.behave("to-same-host", hi.TO_SAME_HOST)
    page = client().page("to-same-host")
    assert [f.filename for f in page.files] == ["to_same_host-1.0.tar.gz"] and page.refused == []


def test_a_page_declaring_more_than_the_limit_is_not_read(client, hostile):
    """Content-Length past index_max_page_bytes: refused before the body is read."""
    hostile.behave("declared-huge", hi.DECLARED_HUGE)
    reason = _unreadable(client(), "declared-huge")
    assert "larger than index_max_page_bytes (20971520 bytes)" in reason


def test_an_endless_page_stops_at_the_limit(client, hostile):
    """A page without a length that never ends: read up to index_max_page_bytes, then refused."""
    hostile.behave("endless", hi.ENDLESS)
    reason = _unreadable(client(index_max_page_bytes=1024 * 1024), "endless")
    assert "larger than index_max_page_bytes (1048576 bytes)" in reason


def test_a_trickling_page_stops_at_the_page_deadline(client, hostile):
    """A page that sends a byte now and then, forever: refused once the page's time is up."""
    hostile.behave("trickle", hi.TRICKLE)
    reason = _unreadable(client(page_seconds=1.0), "trickle")
    assert "the page did not arrive within 1 s" in reason


def test_a_page_of_too_many_files_is_refused(client, hostile):
    """More files than a page may list: the page is refused, naming both counts."""
    hostile.behave("many", hi.MANY)
    hostile.set_many_files(50)
    reason = _unreadable(client(max_files=10), "many")
    assert "the page lists 50 files, more than the 10 a page may list" in reason


def test_each_bad_file_is_refused_with_its_reason_and_the_good_one_kept(client, hostile):
    """A future upload time, none without a zone, a path, a NUL, 300 characters, another project's:
    each refused with a named reason; the good file is kept."""
    hostile.behave("mixed", hi.MIXED)
    page = client().page("mixed")
    assert [(f.filename, f.upload_time) for f in page.files] == [
        ("mixed-1.0.tar.gz", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))]
    reasons = [r.reason for r in page.refused]
    assert reasons == [
        "the upload time 2099-01-01T00:00:00+00:00 is in the future",
        "the upload time has no time zone",
        "the file name holds a path separator",
        "the file name holds a NUL or a control character",
        "the file name is longer than 255 characters",
        "the file is not one of mixed's",
    ]
    assert all("\0" not in r.filename and len(r.filename) <= 80 for r in page.refused)


def test_a_plain_http_index_url_is_refused_when_the_client_is_built(make_settings):
    """index_url over plain http: ConfigError naming it, before any page is asked for."""
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^index_url http://127\.0\.0\.1:9/simple/ is plain http"):
        IndexClient(make_settings(index_url="http://127.0.0.1:9/simple/"))


# -- evidence refresh ---------------------------------------------------------------------------
def test_evidence_refresh_obeys_the_same_bounds(gateway, hostile):
    """`evidence refresh` over the hostile index: the redirected page is a failure of its own (and
    nothing reaches plain http), the mixed page's bad files get a line each and are not recorded,
    its good file is, and the run goes on to the end."""
    registry = gateway.registry
    for project in ("mixed", "to-http"):
        registry.events.record(UploadEvent(at=NOW - dt.timedelta(days=30), outcome="forwarded", project=project,
                                           filename=f"{project}-0.1.tar.gz", sha256="cd" * 32))
    hostile.behave("mixed", hi.MIXED)
    hostile.behave("to-http", hi.TO_HTTP)
    before = hostile.plain_connections
    result = invoke_at(NOW, migrate_cli, [
        "--set", f"database_url={gateway.settings.database_url}", "--set", f"index_url={hostile.url}",
        "--set", f"upstream_ca_bundle={hostile.tls.ca_cert}", "evidence", "refresh", "--format", "json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["projects"], summary["projects_read"], summary["failed"]) == (2, 1, 1)
    (failure,) = summary["failures"]
    assert failure["project"] == "to-http" and "only https on 127.0.0.1" in failure["reason"]
    assert summary["files_recorded"] == 1
    assert hostile.plain_connections == before
    refused = [line for line in result.stderr.splitlines() if line.startswith("mixed: file ")]
    assert len(refused) == 6 and "is in the future" in refused[0] and "has no time zone" in refused[1]


# -- the gateway's check after a lost answer ----------------------------------------------------
def test_the_check_after_a_lost_answer_does_not_follow_a_redirect_to_http(
        make_settings, upstream, user_key, ssh_client, project_name, recorded_sleeps):
    """The upload is stored without an answer, the retry gets 409, and the index's page redirects to
    plain http: not followed (nothing reaches it), so nothing is confirmed: "may have been published"."""
    plan = lambda seen: fp.STORE_THEN_RESET if seen.number == 1 else fp.FORWARD  # noqa: E731
    with HostileIndex(upstream.tls) as index, FlakyProxy(upstream, plan) as proxy:
        index.behave(project_name.lower(), hi.TO_HTTP)
        harness, _sleeps = recorded_sleeps(make_settings(upstream_url=proxy.url, index_url=index.url))
        register_account(harness, "alice", user_key, token=upstream.token)
        result = ssh_client(harness=harness).run(
            data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
        assert index.asked == [project_name.lower()]
        assert index.plain_connections == 0
    stderr = result.stderr.decode()
    assert stderr.splitlines()[-1].startswith("pypissh-gateway: may have been published (409): Conflict")
    assert "it redirects to http://127.0.0.1:" in stderr and "only https on 127.0.0.1 is followed" in stderr
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown"


def test_evidence_refresh_refuses_a_plain_http_index_url(gateway, hostile):
    """`evidence refresh` with an http:// index_url: one line, exit 1, and nothing connects to it."""
    gateway.registry.events.record(UploadEvent(at=NOW - dt.timedelta(days=30), outcome="forwarded", project="demo",
                                               filename="demo-0.1.tar.gz", sha256="cd" * 32))
    plain = hostile.plain_url
    before = hostile.plain_connections
    result = invoke_at(NOW, migrate_cli, ["--set", f"database_url={gateway.settings.database_url}",
                                          "--set", f"index_url={plain}", "evidence", "refresh"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: index_url {plain} is plain http")
    assert hostile.plain_connections == before
