"""No impersonation: the SSH key alone decides the account; whatever the client's Authorization
header names, an upload runs as, and with the credential of, the key's account. A key restricted to
projects (`pypissh-migrate keys add --project`) uploads those projects only."""

from __future__ import annotations

import subprocess
import sys

from testbed import legacyrequests as lr
from tests.helpers import recorded_events, register_account, reply_status


def _upload(client, project: str, authorization: str):
    return client.run(data=lr.python3_upload(project, "1.0", lr.make_sdist(project, "1.0"),
                                             authorization=authorization))


def test_header_naming_another_account_does_not_change_the_account(gateway, ssh_client, user_keys, upstream,
                                                                    project_name):
    """Alice's key with a header naming Bob's token: the upload runs as alice, with alice's token."""
    register_account(gateway, "alice", user_keys["alice"], token=upstream.token)
    register_account(gateway, "bob", user_keys["bob"])
    upstream.clear_recordings()
    result = _upload(ssh_client(user_keys["alice"]), project_name, lr.basic("__token__", "pypi-bobs-own-token"))
    assert reply_status(result.stdout)[0] == 200, result.stdout + result.stderr
    (record,) = [r for r in upstream.recordings() if r.method == "POST"]
    assert record.basic_auth() == ("__token__", upstream.token)
    (event,) = recorded_events(gateway.registry)
    assert (event.account_name, event.key_fingerprint) == ("alice", user_keys["alice"].fingerprint)


def test_header_naming_a_user_with_a_password_is_never_forwarded(gateway, ssh_client, user_keys, upstream,
                                                                  project_name):
    """Bob's key with 'alice:password' in the header: refused for bob, nothing forwarded upstream."""
    register_account(gateway, "alice", user_keys["alice"], token=upstream.token)
    register_account(gateway, "bob", user_keys["bob"])
    upstream.clear_recordings()
    result = _upload(ssh_client(user_keys["bob"]), project_name, lr.basic("alice", "alices-old-password"))
    code, reason = reply_status(result.stdout)
    assert code == 403 and "account 'bob'" in reason and "alice" not in reason
    assert upstream.recordings() == []
    (event,) = recorded_events(gateway.registry)
    assert (event.account_name, event.outcome) == ("bob", "no_credential")


def _keys_add(settings, account: str, public_line: str, *projects: str) -> subprocess.CompletedProcess:
    """The real admin command, in its own process, against the gateway's registry."""
    argv = [sys.executable, "-m", "migrate", "--set", f"database_url={settings.database_url}",
            "--set", f"secret_key_file={settings.secret_key_file}", "keys", "add", account, "-"]
    for project in projects:
        argv += ["--project", project]
    return subprocess.run(argv, input=public_line + "\n", capture_output=True, text=True, timeout=60)


def test_key_restricted_to_projects_uploads_only_those(gateway, ssh_client, user_keys, upstream, project_name):
    """A key added with --project uploads that project only; others are refused naming key and projects."""
    register_account(gateway, "carol", None, token=upstream.token)  # the key comes from the command
    allowed = project_name + "-allowed"
    added = _keys_add(gateway.settings, "carol", user_keys["mallory"].public_line, allowed)
    assert added.returncode == 0, added.stdout + added.stderr
    client = ssh_client(user_keys["mallory"])

    upstream.clear_recordings()
    other = project_name + "-other"
    code, reason = reply_status(_upload(client, other, "Og==").stdout)
    assert code == 403
    assert user_keys["mallory"].fingerprint in reason and allowed.lower() in reason and other.lower() in reason
    assert upstream.recordings() == []

    code, reason = reply_status(_upload(client, allowed, "Og==").stdout)
    assert code == 200, reason
    outcomes = [(event.project, event.outcome) for event in recorded_events(gateway.registry)]
    assert outcomes == [(other.lower(), "refused_policy"), (allowed.lower(), "forwarded")]
