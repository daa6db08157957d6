"""Stored upstream tokens: never in plain text (database or command output), and `rotate-secret`."""

from __future__ import annotations

import hashlib

import pytest

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.tokens import TokenBox, create_key_file, new_key, parse_keys
from migrate.cli import cli
from tests.helpers import cli_runner, register_account

TOKENS = {
    "alice": "pypi-AgEIcHlwaS5vcmcCJGFsaWNlLXRva2VuLW5ldmVyLWluLXBsYWluLXRleHQtMDAx",
    "bob": "pypi-AgEIcHlwaS5vcmcCJGJvYi10b2tlbi1uZXZlci1pbi1wbGFpbi10ZXh0LTAwMDAy",
}


@pytest.fixture
def env(tmp_path):
    """A registry and key file, and a runner of the real CLI against them."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)  # what `db upgrade` and `keygen` make
    key_file = tmp_path / "secret.key"
    create_key_file(key_file)
    registry = Registry.from_url(url)

    yield cli_runner(cli, database_url=url, secret_key_file=key_file), registry, key_file, tmp_path
    registry.engine.dispose()


def _store_tokens(invoke) -> list:
    results = []
    for name, token in TOKENS.items():
        results.append(invoke("accounts", "add", name, "--email", f"{name}@example.org"))
        results.append(invoke("accounts", "set-token", name, "--token-file", "-", input=token + "\n"))
    assert all(r.exit_code == 0 for r in results), [r.output for r in results]
    return results


def _opened(registry: Registry, box: TokenBox) -> dict[str, str]:
    names = {a.id: a.name for a in registry.accounts.list_accounts()}
    return {names[i]: box.open(c) for i, c in registry.accounts.token_ciphertexts()}


def test_tokens_never_in_plain_text_in_database_or_any_output(env):
    """After every command that touches tokens, no token appears in the SQLite files or in any output."""
    invoke, registry, _key_file, tmp_path = env
    results = _store_tokens(invoke)
    for args in (("accounts", "list"), ("accounts", "show", "alice"), ("keys", "list"), ("guide", "alice"),
                 ("guide", "alice", "--format", "json"), ("guide", "bob", "--format", "markdown"),
                 ("rotate-secret", "--new-key-file", str(tmp_path / "new.key"), "--dry-run"),
                 ("rotate-secret", "--new-key-file", str(tmp_path / "new.key")), ("rotate-secret", "--retire-old", "--yes")):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
        results.append(result)
    for result in results:
        for token in TOKENS.values():
            assert token not in result.output
    registry.engine.dispose()  # let SQLite fold its write-ahead log back into the file
    files = sorted(tmp_path.glob("registry.sqlite3*"))
    assert files
    for path in files:
        data = path.read_bytes()
        for token in TOKENS.values():
            assert token.encode() not in data, path.name
            assert token[5:25].encode() not in data, path.name  # not even a fragment


def test_rotate_secret_reencrypts_every_token_under_the_new_key(env):
    """After rotation the new key alone opens every token; the old key stays accepted until retired."""
    invoke, registry, key_file, tmp_path = env
    _store_tokens(invoke)
    old_key = key_file.read_text().strip()
    new_key_file = tmp_path / "new.key"
    result = invoke("rotate-secret", "--new-key-file", str(new_key_file))
    assert result.exit_code == 0, result.output
    assert "re-encrypted 2 stored token(s)" in result.output
    new = new_key_file.read_text().strip()
    assert oct(new_key_file.stat().st_mode & 0o777) == "0o600"
    assert key_file.read_text().split() == [new, old_key]  # new first, old still accepted
    assert _opened(registry, TokenBox(parse_keys(new))) == TOKENS
    with pytest.raises(Exception):
        _opened(registry, TokenBox(parse_keys(old_key)))
    retire = invoke("rotate-secret", "--retire-old", "--yes")
    assert retire.exit_code == 0, retire.output
    assert key_file.read_text().split() == [new]
    assert _opened(registry, TokenBox(parse_keys(key_file.read_text()))) == TOKENS


def test_staged_key_is_accepted_before_it_is_used(env):
    """--stage puts the new key last (replicas accept it; tokens still sealed with the old one)."""
    invoke, registry, key_file, tmp_path = env
    _store_tokens(invoke)
    old_key = key_file.read_text().strip()
    new_key_file = tmp_path / "new.key"
    new_key_file.write_text(new_key() + "\n")
    new = new_key_file.read_text().strip()
    staged = invoke("rotate-secret", "--new-key-file", str(new_key_file), "--stage")
    assert staged.exit_code == 0, staged.output
    assert key_file.read_text().split() == [old_key, new]
    assert _opened(registry, TokenBox(parse_keys(old_key))) == TOKENS
    assert invoke("rotate-secret", "--new-key-file", str(new_key_file)).exit_code == 0
    assert key_file.read_text().split() == [new, old_key]
    assert _opened(registry, TokenBox(parse_keys(new))) == TOKENS


def test_retire_reseals_tokens_set_with_the_old_key_meanwhile(env):
    """A token stored by a host still on the old key order is re-encrypted before the old key is dropped."""
    invoke, registry, key_file, tmp_path = env
    _store_tokens(invoke)
    old_key = key_file.read_text().strip()
    assert invoke("rotate-secret", "--new-key-file", str(tmp_path / "new.key")).exit_code == 0
    registry.accounts.set_token_ciphertext("alice", TokenBox(parse_keys(old_key)).seal(TOKENS["alice"]))
    retire = invoke("rotate-secret", "--retire-old", "--yes")
    assert retire.exit_code == 0, retire.output
    assert "re-encrypted 1 straggler token(s)" in retire.output
    new = (tmp_path / "new.key").read_text().strip()
    assert _opened(registry, TokenBox(parse_keys(new))) == TOKENS


def test_rotation_refuses_when_a_token_cannot_be_decrypted(env):
    """A token sealed with a key nobody configured stops the rotation before anything changes."""
    invoke, registry, key_file, tmp_path = env
    _store_tokens(invoke)
    stray = TokenBox(parse_keys(new_key())).seal(TOKENS["bob"])
    registry.accounts.set_token_ciphertext("bob", stray)
    before_keys, before_tokens = key_file.read_text(), registry.accounts.token_ciphertexts()
    result = invoke("rotate-secret", "--new-key-file", str(tmp_path / "new.key"))
    assert result.exit_code == 1
    assert "token(s) of bob cannot be decrypted" in result.output
    assert key_file.read_text() == before_keys
    assert registry.accounts.token_ciphertexts() == before_tokens


def test_upload_works_through_a_replica_started_after_rotation(gateway, user_key, upstream, start_gateway, ssh_client,
                                                               legacy_project, legacy_home, project_name):
    """A real upload succeeds with the rotated token, through a replica that holds only the new key."""
    register_account(gateway, "alice", user_key, token=upstream.token, email="alice@example.org")
    settings = gateway.settings
    key_file = settings.secret_key_file

    invoke = cli_runner(cli, database_url=settings.database_url, secret_key_file=key_file)

    new_key_file = f"{key_file}.new"
    assert invoke("rotate-secret", "--new-key-file", new_key_file).exit_code == 0
    assert invoke("rotate-secret", "--retire-old", "--yes").exit_code == 0
    with open(key_file) as handle, open(new_key_file) as new:
        assert handle.read().split() == new.read().split()  # only the new key is left
    replica = start_gateway(settings)
    project = legacy_project()
    result = ssh_client(harness=replica).legacy(project, "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stdout + result.stderr
    (dist,) = (project / "dist").glob("*.tar.gz")
    normalized = project_name.lower().replace("-", "_") + "-1.0.tar.gz"
    assert upstream.files()[normalized] == hashlib.sha256(dist.read_bytes()).hexdigest()


def test_a_token_that_no_longer_opens_is_one_log_line_and_a_clear_refusal(gateway, user_key, upstream, ssh_client,
                                                                          legacy_project, legacy_home, caplog):
    """A stored token sealed under a key the replica lacks: the log has one line naming the account
    and `accounts set-token`, without a traceback; the user is told the stored token cannot be
    used, not that the gateway failed, and nothing is published."""
    register_account(gateway, "alice", user_key, email="alice@example.org")
    stray = TokenBox(parse_keys(new_key())).seal(upstream.token)
    gateway.registry.accounts.set_token_ciphertext("alice", stray)
    before = dict(upstream.files())
    with caplog.at_level("ERROR", logger="gateway"):
        result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the API token stored for account 'alice' cannot be used by this gateway" in output
    assert "failed to handle" not in output
    named = [r for r in caplog.records if "pypissh-migrate accounts set-token alice" in r.getMessage()]
    assert len(named) == 1 and named[0].exc_info is None
    assert not any(r.exc_info for r in caplog.records)
    assert upstream.files() == before


def test_dry_run_alone_checks_the_current_keys(env):
    """`rotate-secret --dry-run` alone counts the tokens the configured keys open and changes nothing."""
    invoke, registry, key_file, _tmp_path = env
    _store_tokens(invoke)
    before = key_file.read_text(), registry.accounts.token_ciphertexts()
    result = invoke("rotate-secret", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output == "dry run: all 2 stored token(s) open with the 1 configured key(s); nothing changed\n"
    assert (key_file.read_text(), registry.accounts.token_ciphertexts()) == before


def test_dry_run_alone_names_the_tokens_that_do_not_open(env):
    """A token sealed under another key fails the dry run, naming its account."""
    invoke, registry, _key_file, _tmp_path = env
    _store_tokens(invoke)
    registry.accounts.set_token_ciphertext("bob", TokenBox(parse_keys(new_key())).seal(TOKENS["bob"]))
    result = invoke("rotate-secret", "--dry-run")
    assert result.exit_code == 1
    assert "the token(s) of bob cannot be decrypted with any configured key" in result.output


def test_a_running_replica_follows_the_whole_rotation_without_a_restart(gateway, user_key, upstream, ssh_client,
                                                                        legacy_project, legacy_home, project_name,
                                                                        caplog):
    """Rotate and retire the old key while a replica runs: its next upload opens the re-sealed
    token (it reads the key file again by itself) and is published."""
    register_account(gateway, "alice", user_key, token=upstream.token, email="alice@example.org")
    settings = gateway.settings

    invoke = cli_runner(cli, database_url=settings.database_url, secret_key_file=settings.secret_key_file)

    assert invoke("rotate-secret", "--new-key-file", f"{settings.secret_key_file}.new").exit_code == 0
    assert invoke("rotate-secret", "--retire-old", "--yes").exit_code == 0
    project = legacy_project()
    with caplog.at_level("INFO", logger="gateway.tokens"):
        result = ssh_client().legacy(project, "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stdout + result.stderr
    normalized = project_name.lower().replace("-", "_") + "-1.0.tar.gz"
    assert normalized in upstream.files()
    assert any("read the secret keys again" in record.getMessage() for record in caplog.records)
