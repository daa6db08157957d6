"""Secrets stay secret: with every logger of the gateway, asyncssh and urllib3 at DEBUG, a run of
uploads (old password in the client's header, a client token, a stored token, a refusal) leaves
no token, password or secret key in the logs or in the database file."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import asyncssh
import pytest

from testbed import legacyrequests as lr
from testbed.sample import write_pypirc
from tests.helpers import recorded_events, register_account

OLD_PASSWORD = "old-password"  # what legacy_home's .pypirc holds


@pytest.fixture
def debug_logs(caplog):
    """Everything at DEBUG, asyncssh's packet-level messages included (its debug level 2; level 3
    dumps raw packets and is for a developer's bench only, see SECURITY.md)."""
    asyncssh.set_debug_level(2)
    for name in ("gateway", "asyncssh", "urllib3", "migrate", ""):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog
    asyncssh.set_debug_level(1)


def _forms(secret: str) -> list[bytes]:
    """The ways a secret could leak: as is, and inside a Basic Authorization header."""
    raw = secret.encode()
    encoded = [base64.b64encode(f"{user}:{secret}".encode()) for user in ("alice", "__token__", "bob")]
    return [raw, *encoded]


def test_no_secret_in_debug_logs_or_database(gateway, user_keys, ssh_client, legacy_project, legacy_home,
                                             upstream, project_name, tmp_path, debug_logs):
    """Uploads logged at DEBUG leave no token, old password or secret key in the logs or the database."""
    client_token = upstream.token  # bob has no stored token and sends his own in the header
    register_account(gateway, "alice", user_keys["alice"], token=upstream.token)
    register_account(gateway, "bob", user_keys["bob"])
    alice, bob = ssh_client(user_keys["alice"]), ssh_client(user_keys["bob"])

    assert alice.legacy(legacy_project(), "sdist", "upload", home=legacy_home).returncode == 0
    token_home = tmp_path / "tokenhome"
    write_pypirc(token_home, "https://upload.pypi.org/legacy/", username="__token__", password=client_token)
    assert bob.legacy(legacy_project(name=project_name + "-bob"), "sdist", "upload", home=token_home).returncode == 0
    refused = bob.run(data=lr.python3_upload(project_name + "-refused", "1.0", lr.make_sdist(project_name + "-refused", "1.0"),
                                             authorization=lr.basic("bob", OLD_PASSWORD)))
    assert b" 403 " in refused.stdout.split(b"\r\n", 1)[0]
    assert len(recorded_events(gateway.registry)) == 3

    logs = "\n".join(debug_logs.messages + [debug_logs.text]).encode("utf-8", "replace")
    assert len(logs) > 10_000, "the DEBUG logs were not captured"
    database = b"".join(Path(gateway.settings.database_url.split("///", 1)[1] + suffix).read_bytes()
                        for suffix in ("", "-wal") if Path(gateway.settings.database_url.split("///", 1)[1] + suffix).exists())
    secret_key = Path(gateway.settings.secret_key_file).read_text().strip()
    for secret in (upstream.token, client_token, OLD_PASSWORD, secret_key):
        for form in _forms(secret):
            assert form not in logs, f"a secret ({secret[:6]}...) is in the logs"
            assert form not in database, f"a secret ({secret[:6]}...) is in the database file"
