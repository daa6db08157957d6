"""An upload server that drops connections, swallows answers or answers badly, through a real TLS
proxy (testbed.flakyproxy) in front of the real pypiserver: the gateway says what really happened,
retries what is safe to retry, and asks the index's simple API when only the index can tell."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest

from gateway.sshkeys import parse_public_key
from gateway.upload.upstream import UpstreamClient
from testbed import flakyproxy as fp
from testbed import legacyrequests as lr
from testbed.flakyproxy import FlakyProxy
from testbed.json_index import JsonIndex
from testbed.tlsca import make_tls
from tests.helpers import recorded_events, register_account, reply_status


@pytest.fixture
def proxied(start_gateway, make_settings, upstream, recorded_sleeps):
    """A gateway whose upstream_url is a FlakyProxy following `plan` (index_url stays the upstream's)."""
    proxies: list[FlakyProxy] = []

    def _start(plan, *, tls=None, **settings):
        proxy = FlakyProxy(upstream, plan, tls=tls).start()
        proxies.append(proxy)
        harness, sleeps = recorded_sleeps(make_settings(upstream_url=proxy.url, **settings))
        register_account(harness, "alice", None, token=upstream.token)
        return harness, proxy, sleeps

    yield _start
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def alice_key(user_key):
    """Register alice's key on a gateway started by `proxied`."""

    def _register(harness):
        harness.registry.keys.add_key("alice", parse_public_key(user_key.public_line))

    return _register


def _stored(upstream, project: str) -> dict[str, str]:
    prefix = re.sub(r"[-_.]+", "_", project).lower()
    return {name: sha for name, sha in upstream.files().items() if name.lower().startswith(prefix + "-")}


def _output(result) -> str:
    return result.stdout + result.stderr


def test_pooled_connection_dropped_by_the_server_is_retried_at_once_on_a_new_one(
        proxied, alice_key, ssh_client, legacy_project, legacy_home, upstream, project_name):
    """Every second request on a kept-alive connection is reset after its headers: every upload succeeds."""
    harness, proxy, sleeps = proxied(lambda seen: fp.RESET_AFTER_HEADERS if seen.on_connection == 2 else fp.FORWARD)
    alice_key(harness)
    client = ssh_client(harness=harness)
    results = [client.legacy(legacy_project(version=v), "sdist", "upload", home=legacy_home)
               for v in ("1.0", "1.1", "1.2")]
    for result in results:
        assert result.returncode == 0, _output(result)
        assert "Server response (200)" in _output(result)
        assert "certificate" not in _output(result).lower()
    assert proxy.actions().count(fp.RESET_AFTER_HEADERS) == 2  # the 2nd and 3rd uploads hit a reset
    assert sleeps == []  # retried at once, not after a backoff
    assert len(_stored(upstream, project_name)) == 3
    assert [event.outcome for event in recorded_events(harness.registry)] == ["forwarded"] * 3


def test_answer_lost_after_the_file_was_stored_is_confirmed_on_the_index(
        proxied, alice_key, ssh_client, legacy_project, legacy_home, upstream, project_name):
    """The upstream stores the upload, then resets without answering: confirmed through the simple API."""
    harness, proxy, sleeps = proxied(lambda seen: fp.STORE_THEN_RESET if seen.number == 1 else fp.FORWARD)
    alice_key(harness)
    result = ssh_client(harness=harness).legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    text = _output(result)
    assert result.returncode == 0, text
    assert "Server response (200): OK:" in text and "confirmed on the index after the connection dropped" in text
    assert proxy.actions() == [fp.STORE_THEN_RESET, fp.FORWARD]
    assert [h.upstream_status for h in proxy.handled] == [200, 409]  # the retry found it there
    assert sleeps == [0.5]
    ((filename, sha256),) = _stored(upstream, project_name).items()
    assert filename in text
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "forwarded" and event.upstream_status == 200 and event.sha256 == sha256
    assert "connection dropped" in event.error and upstream.simple_url in event.error
    simple_pages = [r for r in upstream.recordings() if r.method == "GET" and r.path.startswith("/simple/")]
    assert simple_pages, "the index's simple API was never read"


def test_lost_answer_with_another_file_on_the_index_passes_the_refusal_on(
        proxied, alice_key, start_gateway, make_settings, ssh_client, user_key, upstream, project_name, tmp_path):
    """The retry is refused as already existing and the index holds a different file: the refusal stands."""
    direct = start_gateway(make_settings(database_url=f"sqlite:///{tmp_path / 'direct.sqlite3'}"))
    register_account(direct, "alice", user_key, token=upstream.token)
    first = ssh_client(harness=direct).run(
        data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0", pad=b"# first\n")))
    assert reply_status(first.stdout)[0] == 200
    harness, proxy, _sleeps = proxied(lambda seen: fp.RESET_UNFORWARDED if seen.number == 1 else fp.FORWARD)
    alice_key(harness)
    other = lr.make_sdist(project_name, "1.0", pad=b"# second, different\n")
    result = ssh_client(harness=harness).run(data=lr.python3_upload(project_name, "1.0", other))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (409, 1)
    assert reason.startswith("Conflict") and "confirmed" not in reason
    assert proxy.actions() == [fp.RESET_UNFORWARDED, fp.FORWARD]
    (stored_sha,) = _stored(upstream, project_name).values()
    assert stored_sha != hashlib.sha256(other).hexdigest()
    # The index shows another file under the name: this upload is known not to be the one stored.
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: not published (409): {reason}"
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "refused_upstream" and event.upstream_status == 409


def test_untrusted_certificate_is_named_and_never_retried(proxied, alice_key, ssh_client, legacy_project,
                                                          legacy_home, upstream, tmp_path):
    """A certificate from another CA: the user is told it cannot be verified, after one connection attempt."""
    harness, proxy, sleeps = proxied(lambda seen: fp.FORWARD, tls=make_tls(tmp_path / "other-ca"),
                                     upstream_retries=3)
    alice_key(harness)
    result = ssh_client(harness=harness).legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    text = _output(result)
    assert result.returncode != 0
    assert "Upload failed (502)" in text and "presented a certificate the gateway cannot verify" in text
    assert "upstream_ca_bundle" in text
    assert proxy.connections == 1 and proxy.seen == [] and sleeps == []
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "upstream_error" and "certificate" in event.error


@pytest.mark.parametrize("action", [fp.HUGE_BODY, fp.BROKEN_CHUNKED])
def test_a_2xx_with_a_bad_body_is_still_published(proxied, alice_key, ssh_client, upstream, project_name, action):
    """A 200 whose body is 50 MB or broken chunked encoding: published, exit 0, event forwarded."""
    harness, proxy, sleeps = proxied(lambda seen: action)
    alice_key(harness)
    content = lr.make_sdist(project_name, "1.0")
    result = ssh_client(harness=harness).run(data=lr.python3_upload(project_name, "1.0", content))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (200, 0), reason
    assert [h.upstream_status for h in proxy.handled] == [200] and sleeps == []
    assert list(_stored(upstream, project_name).values()) == [hashlib.sha256(content).hexdigest()]
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "forwarded"
    if action == fp.HUGE_BODY:
        # The gateway read a bounded start of the body and hung up: what the proxy managed to
        # send is what the two sockets' buffers hold, far from the 50 MB.
        assert proxy.body_bytes_sent < 20 * 1024 * 1024


def test_an_answer_trickled_past_the_deadline_is_reported_as_unknown(
        proxied, alice_key, ssh_client, upstream, project_name):
    """The upstream stores the file and then trickles its status line forever: at upstream_deadline the
    client hears the outcome is unknown and where to look."""
    harness, proxy, _sleeps = proxied(lambda seen: fp.TRICKLE, upstream_deadline=3.0, upstream_timeout=2.0)
    alice_key(harness)
    content = lr.make_sdist(project_name, "1.0")
    result = ssh_client(harness=harness).run(data=lr.python3_upload(project_name, "1.0", content))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (504, 1)
    assert "no complete answer within 3 s (upstream_deadline)" in reason and "the outcome is unknown" in reason
    filename = next(iter(_stored(upstream, project_name)))
    assert f"look for {filename} on {upstream.simple_url}" in reason
    assert "nothing was published" not in reason
    assert len(proxy.seen) == 1
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (504): {reason}"
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown"


def test_lost_answer_with_an_unreadable_index_passes_the_refusal_on_and_says_why(
        proxied, alice_key, ssh_client, upstream, project_name):
    """The retry is refused as already existing and the index cannot be read: the refusal, with the reason."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    harness, proxy, _sleeps = proxied(lambda seen: fp.STORE_THEN_RESET if seen.number == 1 else fp.FORWARD,
                                      index_url=f"https://127.0.0.1:{port}/simple/")
    alice_key(harness)
    result = ssh_client(harness=harness).run(
        data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (409, 1)
    assert reason.startswith("Conflict") and "could not read the index" in reason
    assert "connection refused" in reason
    filename = next(iter(_stored(upstream, project_name)))
    assert f"may have been published: look for {filename} on https://127.0.0.1:{port}/simple/" in reason
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (409): {reason}"
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown" and event.upstream_status == 409


class _FailsAfterForwarding(UpstreamClient):
    """A stand-in for a fault in the gateway itself after the upload server has answered (no real
    one can be provoked): the real client forwards, then this raises."""

    def forward_upload(self, *args):
        super().forward_upload(*args)
        raise RuntimeError("a fault after forwarding")


def test_a_fault_after_forwarding_never_claims_nothing_was_published(
        start_gateway, settings, user_key, ssh_client, upstream, project_name):
    """A failure of the gateway once the upload was handed on: 500 saying it may have been published."""
    gateway = start_gateway(settings, upstream=_FailsAfterForwarding(settings))
    register_account(gateway, "alice", user_key, token=upstream.token)
    result = ssh_client(harness=gateway).run(
        data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
    code, reason = reply_status(result.stdout)
    assert code == 500 and "nothing was published" not in reason
    ((filename, _sha),) = _stored(upstream, project_name).items()
    assert f"{filename} may have been published: look for it on {upstream.simple_url}" in reason
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (500): {reason}"
    (event,) = recorded_events(gateway.registry)
    assert event.outcome == "unknown" and event.error == "RuntimeError"


def test_an_error_after_a_lost_answer_says_the_file_may_be_published(
        proxied, alice_key, ssh_client, upstream, project_name):
    """The answer to a whole upload is lost, then every retry gets 503: the 503, saying where to look."""
    harness, proxy, sleeps = proxied(lambda seen: fp.RESET_UNFORWARDED if seen.number == 1 else fp.FORWARD)
    alice_key(harness)
    upstream.set_fault(status=503, reason="Service Unavailable")
    result = ssh_client(harness=harness).run(
        data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (503, 1)
    assert reason.startswith("Service Unavailable (but an earlier attempt sent the whole upload and got no answer")
    assert f"on {upstream.simple_url}" in reason and sleeps == [0.5, 1.0]
    assert proxy.actions() == [fp.RESET_UNFORWARDED, fp.FORWARD, fp.FORWARD]
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (503): {reason}"
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown" and event.upstream_status == 503


# -- what the user reads: "not published" only when nothing was stored ----------------------------
def test_every_attempt_stored_without_an_answer_may_have_been_published(
        proxied, alice_key, ssh_client, upstream, project_name):
    """The upload server stores the first attempt and no attempt is ever answered: the user reads
    "may have been published" with the page to check, never "not published"; the event is unknown."""
    harness, proxy, sleeps = proxied(lambda seen: fp.STORE_THEN_RESET, upstream_retries=2)
    alice_key(harness)
    result = ssh_client(harness=harness).run(
        data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (504, 1)
    assert proxy.actions() == [fp.STORE_THEN_RESET] * 3 and sleeps == [0.5, 1.0]
    ((filename, _sha),) = _stored(upstream, project_name).items()  # it was published
    assert f"it may have been published: look for {filename} on {upstream.simple_url}" in reason
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (504): {reason}"
    assert b"not published" not in result.stderr
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown"


def test_exists_after_a_lost_answer_with_no_page_yet_may_have_been_published(
        proxied, alice_key, ssh_client, upstream, project_name, tmp_path):
    """The first attempt is stored without an answer, the retry gets 409, and the index has no page
    for the project yet (a lagging index, a brand-new project): "may have been published", never a
    refusal; the event is unknown."""
    empty = tmp_path / "lagging-index"
    empty.mkdir()
    with JsonIndex(empty, upstream.tls) as lagging:
        harness, proxy, _sleeps = proxied(lambda seen: fp.STORE_THEN_RESET if seen.number == 1 else fp.FORWARD,
                                          index_url=lagging.url)
        alice_key(harness)
        result = ssh_client(harness=harness).run(
            data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
        assert lagging.requests == 1  # the page was asked for, and was missing
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (409, 1)
    assert [h.upstream_status for h in proxy.handled] == [200, 409]
    ((filename, _sha),) = _stored(upstream, project_name).items()
    assert reason.startswith("Conflict") and f"the index does not list {filename} yet" in reason
    assert f"look for it on {lagging.url}" in reason
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (409): {reason}"
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown" and event.upstream_status == 409


def test_a_refusal_of_the_first_attempt_is_not_published(start_gateway, settings, user_key, ssh_client, upstream,
                                                         project_name):
    """A definite 4xx to the first and only attempt (the file exists already, from an earlier
    upload): "not published", and the event is a refusal."""
    gateway = start_gateway(settings)
    register_account(gateway, "alice", user_key, token=upstream.token)
    request = lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0"))
    assert reply_status(ssh_client(harness=gateway).run(data=request).stdout)[0] == 200
    again = ssh_client(harness=gateway).run(data=request)
    code, reason = reply_status(again.stdout)
    assert (code, again.returncode) == (409, 1)
    assert again.stderr.decode().splitlines()[-1] == f"pypissh-gateway: not published (409): {reason}"
    assert "may have been" not in again.stderr.decode()
    assert [event.outcome for event in recorded_events(gateway.registry)] == ["forwarded", "refused_upstream"]


def test_exists_after_a_504_from_a_server_that_stored_it_may_have_been_published(
        proxied, alice_key, ssh_client, upstream, project_name, tmp_path):
    """A front end answers 504 although the server stored the upload, the retry gets 409, and the
    index lists nothing yet: "may have been published", never a refusal; the event is unknown."""
    empty = tmp_path / "lagging-index"
    empty.mkdir()
    with JsonIndex(empty, upstream.tls) as lagging:
        harness, proxy, sleeps = proxied(lambda seen: fp.STORE_THEN_504 if seen.number == 1 else fp.FORWARD,
                                         index_url=lagging.url)
        alice_key(harness)
        result = ssh_client(harness=harness).run(
            data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (409, 1)
    assert [h.upstream_status for h in proxy.handled] == [200, 409] and sleeps == [0.5]
    ((filename, _sha),) = _stored(upstream, project_name).items()
    assert f"the index does not list {filename} yet" in reason
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (409): {reason}"
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown"


def test_exists_after_a_504_is_confirmed_on_the_index(proxied, alice_key, ssh_client, upstream, project_name):
    """The same, with the index listing the file and its sha256: published, confirmed, exit 0."""
    harness, proxy, _sleeps = proxied(lambda seen: fp.STORE_THEN_504 if seen.number == 1 else fp.FORWARD)
    alice_key(harness)
    content = lr.make_sdist(project_name, "1.0")
    result = ssh_client(harness=harness).run(data=lr.python3_upload(project_name, "1.0", content))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (200, 0), reason
    assert "confirmed on the index" in reason
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "forwarded" and event.sha256 == hashlib.sha256(content).hexdigest()


def test_a_redirect_after_a_504_from_a_server_that_stored_it_may_have_been_published(
        proxied, alice_key, ssh_client, upstream, project_name):
    """A 504 although the server stored the upload, then a redirect for the retry: a redirect alone
    would mean "not published", but after the 504 the outcome is unknown."""
    harness, proxy, sleeps = proxied(lambda seen: fp.STORE_THEN_504 if seen.number == 1 else fp.REDIRECT_UNFORWARDED)
    alice_key(harness)
    result = ssh_client(harness=harness).run(
        data=lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
    code, reason = reply_status(result.stdout)
    assert (code, result.returncode) == (504, 1)
    assert proxy.actions() == [fp.STORE_THEN_504, fp.REDIRECT_UNFORWARDED] and sleeps == [0.5]
    ((filename, _sha),) = _stored(upstream, project_name).items()
    assert f"look for {filename} on {upstream.simple_url}" in reason and "nothing was published" not in reason
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (504): {reason}"
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "unknown"
