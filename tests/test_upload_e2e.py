"""End to end: the stdlib distutils client, through the real OpenSSH client and the gateway, to a
real pypiserver behind TLS."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.sshkeys import parse_public_key
from tests import warehouse_rules
from tests.helpers import recorded_events, register_account


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _only_dist(project):
    (dist,) = list((project / "dist").glob("*.tar.gz"))
    return dist


def test_legacy_upload_arrives_byte_identical(alice, ssh_client, legacy_project, legacy_home, upstream, project_name):
    """`setup.py sdist upload` over ssh lands on the upstream under the PEP 625 name, bytes intact."""
    project = legacy_project()
    result = ssh_client().legacy(project, "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stderr
    assert "Server response (200): OK" in result.stdout
    dist = _only_dist(project)
    assert dist.name == f"{project_name}-1.0.tar.gz"  # what legacy distutils writes
    normalized = project_name.lower().replace("-", "_") + "-1.0.tar.gz"
    assert upstream.files()[normalized] == _sha256(dist)


def test_session_notice_names_account_and_key(alice, ssh_client, legacy_project, legacy_home, user_key):
    """The user sees, on stderr, which account and key the upload ran as and where the guide is."""
    result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stderr
    assert "account 'alice'" in result.stderr
    assert user_key.fingerprint in result.stderr
    assert "guide" in result.stderr


def test_register_sdist_upload_in_one_invocation(alice, ssh_client, legacy_project, legacy_home, upstream, project_name):
    """`setup.py register sdist upload` succeeds: register is answered locally, then the upload lands."""
    project = legacy_project()
    result = ssh_client().legacy(project, "register", "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Server response (200)") == 2
    normalized = project_name.lower().replace("-", "_") + "-1.0.tar.gz"
    assert normalized in upstream.files()


def test_reupload_shows_upstream_reason(alice, ssh_client, legacy_project, legacy_home):
    """A second upload of the same file shows the upstream's own refusal to the user."""
    project = legacy_project()
    client = ssh_client()
    assert client.legacy(project, "sdist", "upload", home=legacy_home).returncode == 0
    again = client.legacy(project, "sdist", "upload", home=legacy_home)
    assert again.returncode != 0
    assert "Upload failed (409)" in again.stdout + again.stderr
    assert "already exists" in again.stdout + again.stderr


def test_forwarded_request_is_what_the_modern_api_accepts(alice, ssh_client, legacy_project, legacy_home, upstream, project_name):
    """The forwarded form: token auth, metadata from PKG-INFO, fresh 32-byte BLAKE2, no None, content last."""
    project = legacy_project(classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: MIT License"])
    upstream.clear_recordings()
    assert ssh_client().legacy(project, "sdist", "upload", home=legacy_home).returncode == 0
    (record,) = [r for r in upstream.recordings() if r.method == "POST"]
    form = record.form()
    names = [name for name, _value, _filename in form]
    assert names[-1] == "content"
    values = {name: value for name, value, _filename in form}
    data = _only_dist(project).read_bytes()
    assert values["content"] == data
    assert values["sha256_digest"] == hashlib.sha256(data).hexdigest()
    assert values["blake2_256_digest"] == hashlib.blake2b(data, digest_size=32).hexdigest()
    assert len(values["blake2_256_digest"]) == 64
    assert values["metadata_version"] == "1.1"  # from PKG-INFO, not the client's hard-coded 1.0
    assert values["name"] == project_name and values["version"] == "1.0"
    assert [v for n, v, _ in form if n == "classifiers"] == [
        "Programming Language :: Python :: 3", "License :: OSI Approved :: MIT License"]
    assert not [n for n, v, _ in form if isinstance(v, str) and v.strip() in ("None", "UNKNOWN", "")]
    assert form[-1][2] == project_name.lower().replace("-", "_") + "-1.0.tar.gz"
    assert warehouse_rules.form_problems(form) == []
    headers = {k.lower(): v for k, v in record.headers.items()}
    import base64

    user, _, password = base64.b64decode(headers["authorization"].split()[1]).decode().partition(":")
    assert (user, password) == ("__token__", upstream.token)


def test_unregistered_key_is_refused(alice, ssh_client, user_keys, upstream):
    """A key that is not in the registry cannot log in; nothing reaches the upstream."""
    upstream.clear_recordings()
    result = ssh_client(user_keys["bob"]).run("whoami")
    assert result.returncode == 255
    assert b"Permission denied (publickey)" in result.stderr
    assert upstream.recordings() == []


def test_wrong_ssh_user_is_refused(alice, ssh_client):
    """Only the configured ssh_user may log in, even with a registered key."""
    result = ssh_client(user="root").run("whoami")
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr


def test_revoked_key_is_refused(alice, gateway, ssh_client, user_key):
    """After `keys revoke` the key is refused (within the cache bound)."""
    client = ssh_client()
    assert client.run("whoami").returncode == 0
    gateway.registry.keys.revoke_key(user_key.fingerprint)
    gateway.ticks.advance(gateway.settings.key_cache_seconds)
    result = client.run("whoami")
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr


def test_disabled_account_is_refused(alice, gateway, ssh_client):
    """Disabling an account refuses all its keys."""
    gateway.registry.accounts.update_account("alice", disabled=True)
    gateway.ticks.advance(gateway.settings.key_cache_seconds)
    assert ssh_client().run("whoami").returncode == 255


def test_client_token_is_used_when_none_is_stored(gateway, user_key, ssh_client, legacy_project, tmp_path, upstream, project_name):
    """With no stored token, a `__token__` credential in the client's .pypirc is forwarded."""
    from testbed.sample import write_pypirc

    register_account(gateway, "alice", user_key)
    home = tmp_path / "tokenhome"
    write_pypirc(home, "https://upload.pypi.org/legacy/", username="__token__", password=upstream.token)
    result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert project_name.lower().replace("-", "_") + "-1.0.tar.gz" in upstream.files()


def test_old_password_without_stored_token_is_refused_with_next_step(gateway, user_key, ssh_client, legacy_project, legacy_home, upstream):
    """An old password is never forwarded: the user is told how to get a token stored."""
    register_account(gateway, "alice", user_key)
    upstream.clear_recordings()
    result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Upload failed (403)" in out
    assert "pypissh-migrate accounts set-token alice" in out
    assert upstream.recordings() == []


def test_stored_token_wins_over_client_header(alice, ssh_client, legacy_project, tmp_path, upstream, project_name):
    """A client header naming other (token) credentials does not override the key's account token."""
    from testbed.sample import write_pypirc

    home = tmp_path / "otherhome"
    write_pypirc(home, "https://upload.pypi.org/legacy/", username="__token__", password="pypi-someone-elses-token")
    result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert project_name.lower().replace("-", "_") + "-1.0.tar.gz" in upstream.files()


def test_upload_event_is_recorded_without_secrets(alice, gateway, ssh_client, legacy_project, legacy_home, user_key, upstream, project_name):
    """Each session leaves one event row with who, what and how it ended, and no secret."""
    project = legacy_project()
    assert ssh_client().legacy(project, "sdist", "upload", home=legacy_home).returncode == 0
    (event,) = recorded_events(gateway.registry, account_name="alice")
    assert event.outcome == "forwarded"
    assert event.upstream_status == 200
    assert event.key_fingerprint == user_key.fingerprint
    assert event.client_addr == "127.0.0.1"
    assert event.ssh_client_version.startswith("SSH-2.0-OpenSSH")
    assert event.user_agent == "Python-urllib/3.11"
    assert event.action == "file_upload"
    assert event.project == project_name.lower()
    assert event.version == "1.0"
    assert event.sha256 == _sha256(_only_dist(project))
    assert event.size == _only_dist(project).stat().st_size
    assert event.duration_ms is not None
    db_bytes = Path(gateway.settings.database_url.split("///", 1)[1]).read_bytes()
    assert upstream.token.encode() not in db_bytes
    assert b"old-password" not in db_bytes


def test_list_classifiers_answers_from_trove_classifiers(alice, ssh_client, legacy_project, legacy_home):
    """`setup.py register --list-classifiers` gets the classifier list."""
    result = ssh_client().legacy(legacy_project(), "register", "--list-classifiers", home=legacy_home)
    assert result.returncode == 0, result.stderr
    assert "Programming Language :: Python :: 3" in result.stdout + result.stderr


def test_key_lookup_uses_sha256_fingerprint(gateway, user_key):
    """Keys are indexed by the SHA256 fingerprint OpenSSH prints."""
    import subprocess

    register_account(gateway, "alice", user_key)
    printed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(user_key.path) + ".pub"],
                             capture_output=True, text=True, check=True).stdout.split()[1]
    assert gateway.registry.keys.identity_for_key(printed).account_name == "alice"
    assert parse_public_key(user_key.public_line).fingerprint == printed
