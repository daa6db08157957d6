"""When the upstream is down, failing or untrustworthy, the user gets a clear reason and a non-zero
exit, and the event is recorded."""

from __future__ import annotations

from testbed import legacyrequests as lr
from testbed.tlsca import make_tls
from tests.helpers import recorded_events, register_account, reply_status


def _upload(gateway, ssh_client, user_key, upstream, project_name):
    register_account(gateway, "alice", user_key, token=upstream.token)
    content = lr.make_sdist(project_name, "1.0")
    return ssh_client(harness=gateway).run(data=lr.python3_upload(project_name, "1.0", content))


def test_upstream_down(start_gateway, make_settings, ssh_client, user_key, upstream, project_name):
    """Nothing listening upstream: 502 'cannot reach', exit 1, event upstream_error."""
    harness = start_gateway(make_settings(upstream_url="https://127.0.0.1:9/legacy/", upstream_retries=1))
    result = _upload(harness, ssh_client, user_key, upstream, project_name)
    code, reason = reply_status(result.stdout)
    assert code == 502 and "cannot reach the upload server" in reason and "nothing was published" in reason
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: not published (502): {reason}"
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "upstream_error" and "cannot reach" in event.error


def test_upstream_5xx_is_passed_on(gateway, ssh_client, user_key, upstream, project_name):
    """An upstream 500 after the whole upload reaches the user with its reason and "may have been
    published" with the page to check (the server had it all); the event records "unknown"."""
    upstream.set_fault(status=500, reason="Internal Server Error")
    result = _upload(gateway, ssh_client, user_key, upstream, project_name)
    code, reason = reply_status(result.stdout)
    assert code == 500 and reason.startswith("Internal Server Error (the upload server failed after receiving")
    assert f"look for {project_name.lower().replace('-', '_')}-1.0.tar.gz on {upstream.simple_url}" in reason
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == f"pypissh-gateway: may have been published (500): {reason}"
    assert b"not published" not in result.stderr
    (event,) = recorded_events(gateway.registry)
    assert event.outcome == "unknown" and event.upstream_status == 500


def test_transient_503_is_retried_from_the_spool(gateway, ssh_client, user_key, upstream, project_name):
    """One 503 then success: the gateway retries from its spool and the upload lands."""
    upstream.clear_recordings()
    upstream.set_fault(status=503, reason="Service Unavailable", count=1)
    result = _upload(gateway, ssh_client, user_key, upstream, project_name)
    assert reply_status(result.stdout)[0] == 200
    posts = [r for r in upstream.recordings() if r.method == "POST"]
    assert len(posts) == 2 and posts[0].body == posts[1].body


def test_untrusted_upstream_certificate(start_gateway, make_settings, ssh_client, user_key, upstream, project_name, tmp_path):
    """An upstream whose certificate the configured CA did not sign is refused, never trusted."""
    other_ca = make_tls(tmp_path / "otherca")
    harness = start_gateway(make_settings(upstream_ca_bundle=str(other_ca.ca_cert)))
    upstream.clear_recordings()
    result = _upload(harness, ssh_client, user_key, upstream, project_name)
    code, reason = reply_status(result.stdout)
    assert code == 502 and "certificate" in reason and "upstream_ca_bundle" in reason
    assert result.returncode == 1
    assert [r for r in upstream.recordings() if r.method == "POST"] == []
    (event,) = recorded_events(harness.registry)
    assert event.outcome == "upstream_error"
