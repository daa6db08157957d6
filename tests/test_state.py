"""State lives in one place and only explicit commands create it: the registry (`db upgrade`,
`init`), the host keys and the secret key (`keygen`, `init`). Run through the real console scripts,
from directories that are not the deployment's."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.ssh import hostkeys
from testbed import postgres
from tests.cli import environment, run_cli

TOKEN = "pypi-AgEIcHlwaS5vcmcCJHN0YXRlLXRlc3QtdG9rZW4"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working directory that is not the deployment's: it must stay empty."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


@pytest.fixture
def gateway_home(tmp_path) -> Path:
    """A home set up with `init`, account alice and her token."""
    home = tmp_path / "home"
    env = environment(PYPISSH_HOME=str(home))
    assert run_cli("pypissh-gateway", "init", env=env).returncode == 0
    assert run_cli("pypissh-migrate", "accounts", "add", "alice", env=env).returncode == 0
    stored = run_cli("pypissh-migrate", "accounts", "set-token", "alice", env=env, stdin=TOKEN + "\n")
    assert stored.returncode == 0, stored.stderr
    return home


def test_report_from_another_directory_creates_nothing_and_judges_nothing(tmp_path, elsewhere):
    """The slip of the issue: `report` run away from the deployment. With no registry at the
    resolved place it exits 1 naming it; no ./var, no registry, no home appear."""
    user = tmp_path / "user"
    user.mkdir()
    done = run_cli("pypissh-migrate", "report", env=environment(HOME=str(user)), cwd=elsewhere)
    expected = f"sqlite:///{user}/.local/share/pypissh-gateway/pypissh.sqlite3"
    assert done.returncode == 1 and "Safe to switch off" not in done.stdout
    assert done.stderr.startswith(f"Error: no registry at {expected}; create it with `pypissh-gateway init`")
    assert list(elsewhere.iterdir()) == [] and list(user.iterdir()) == []


def test_relative_paths_of_a_config_file_give_the_same_state_from_any_directory(tmp_path):
    """A config file with relative paths: `init` from one directory, `accounts add` from another and
    `accounts list` from a third all use the files beside the config file."""
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    config.write_text('database_url = "sqlite:///state/registry.sqlite3"\nhost_key_dir = "state/keys"\n'
                      'secret_key_file = "state/secret.key"\n')
    config.chmod(0o600)
    env = environment(PYPISSH_CONFIG=str(config), PYPISSH_HOME=str(tmp_path / "unused-home"))
    folders = [tmp_path / name for name in ("a", "b", "c")]
    for folder in folders:
        folder.mkdir()
    assert run_cli("pypissh-gateway", "init", env=env, cwd=folders[0]).returncode == 0
    assert run_cli("pypissh-migrate", "accounts", "add", "alice", env=env, cwd=folders[1]).returncode == 0
    listed = run_cli("pypissh-migrate", "accounts", "list", env=env, cwd=folders[2])
    assert listed.returncode == 0 and "alice" in listed.stdout
    assert (etc / "state" / "registry.sqlite3").is_file() and (etc / "state" / "secret.key").is_file()
    assert hostkeys.existing(etc / "state" / "keys")
    assert all(list(folder.iterdir()) == [] for folder in folders)


def test_init_makes_private_state_and_is_idempotent(tmp_path):
    """`init` makes home and key folders 0700, keys, secret and registry 0600; a second run keeps
    every file as it was and says so."""
    home = tmp_path / "home"
    env = environment(PYPISSH_HOME=str(home))
    first = run_cli("pypissh-gateway", "init", env=env)
    assert first.returncode == 0, first.stderr
    assert (mode(home), mode(home / "keys")) == (0o700, 0o700)
    for name in ("pypissh.sqlite3", "secret.key", "keys/ssh_host_ed25519_key", "keys/ssh_host_rsa_key"):
        assert mode(home / name) == 0o600, name
    before = digests(home)
    second = run_cli("pypissh-gateway", "init", env=env)
    assert second.returncode == 0, second.stderr
    assert "host keys already exist" in second.stdout and f"kept {home}/secret.key" in second.stdout
    assert digests(home) == before


def test_sqlite_registry_and_its_journal_files_are_private(tmp_path):
    """The registry file is created 0600, and SQLite gives its -wal and -shm files the same mode,
    whatever the umask lets through."""
    url = f"sqlite:///{tmp_path / 'db' / 'registry.sqlite3'}"
    previous = os.umask(0o022)
    try:
        upgrade(url)
        registry = Registry.from_url(url)
        registry.accounts.add_account("alice")
        files = sorted((tmp_path / "db").iterdir())
        assert [f.name for f in files] == ["registry.sqlite3", "registry.sqlite3-shm", "registry.sqlite3-wal"]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(tmp_path / "db") == 0o700
        registry.close()
    finally:
        os.umask(previous)


def test_opening_a_registry_never_creates_one(tmp_path):
    """The engine opens SQLite read-write only: a mistyped path fails, no empty file appears."""
    registry = Registry.from_url(f"sqlite:///{tmp_path / 'typo.sqlite3'}")
    with pytest.raises(Exception, match="unable to open database file"):
        registry.ping()
    assert list(tmp_path.iterdir()) == []


def test_set_token_with_another_key_file_refuses_and_creates_none(gateway_home, elsewhere):
    """The slip of the issue: set-token where the secret key file is not found. It names the file
    it looked for and creates no key; the stored token stays as it was."""
    env = environment(PYPISSH_HOME=str(gateway_home))
    registry = Registry.from_url(f"sqlite:///{gateway_home}/pypissh.sqlite3")
    before = registry.accounts.token_ciphertexts()
    done = run_cli("pypissh-migrate", "--set", "secret_key_file=var/secret.key", "accounts", "set-token", "alice",
               env=env, cwd=elsewhere, stdin=TOKEN + "\n")
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: no secret key file at {gateway_home}/var/secret.key, so API tokens")
    assert not (gateway_home / "var").exists() and list(elsewhere.iterdir()) == []
    assert registry.accounts.token_ciphertexts() == before
    registry.close()


def test_keygen_refuses_a_new_secret_key_while_tokens_are_stored(gateway_home):
    """With the key file gone and a token in the registry, keygen writes nothing (no secret key,
    no host keys) and says which key the tokens need."""
    (gateway_home / "secret.key").unlink()
    for key in (gateway_home / "keys").iterdir():
        key.unlink()
    done = run_cli("pypissh-gateway", "keygen", env=environment(PYPISSH_HOME=str(gateway_home)))
    assert done.returncode == 1
    assert done.stderr == (f"Error: refusing to create a secret key at {gateway_home}/secret.key: the registry at "
                           f"sqlite:///{gateway_home}/pypissh.sqlite3 holds 1 token(s) sealed under another key, "
                           "which a new key could never open; restore that key file there, or set secret_key_file "
                           "(or secret_key) to it\n")
    assert not (gateway_home / "secret.key").exists() and list((gateway_home / "keys").iterdir()) == []


def test_a_registry_from_a_newer_version_is_named_not_used(gateway_home):
    """A schema revision this version does not know stops every command with the fix."""
    registry = Registry.from_url(f"sqlite:///{gateway_home}/pypissh.sqlite3")
    with registry.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    registry.close()
    done = run_cli("pypissh-migrate", "accounts", "list", env=environment(PYPISSH_HOME=str(gateway_home)))
    assert done.returncode == 1
    assert "is at schema revision 9999, which this version does not know" in done.stderr


def test_missing_postgresql_registry_is_named_with_its_password_masked():
    """A PostgreSQL database without the registry's schema: one line naming it (password masked) and
    `db upgrade`; nothing is created in it."""
    reason = postgres.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with postgres.temporary_database("state_test") as url:
        secret_url = url.replace("postgres@", "postgres:s3cret-password@")
        done = run_cli("pypissh-migrate", "--set", f"database_url={secret_url}", "accounts", "list",
                   env=environment(PYPISSH_HOME="/nonexistent"))
        masked = url.replace("postgres@", "postgres:***@")
        assert done.returncode == 1
        assert done.stderr == (f"Error: no registry at {masked}; create it with `pypissh-gateway init` (or "
                               "`pypissh-gateway db upgrade`), or point database_url (or home) at the existing one\n")
        assert "s3cret-password" not in done.stdout + done.stderr
        registry = Registry.from_url(url)
        with registry.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM information_schema.tables "
                                     "WHERE table_schema = 'public'")).scalar_one() == 0
        registry.close()


def test_misspelt_variable_gets_a_warning_naming_the_setting(gateway_home):
    """PYPISSH_DATABSE_URL: the command runs on the resolved registry, with one warning first."""
    env = environment(PYPISSH_HOME=str(gateway_home), PYPISSH_DATABSE_URL="sqlite:////elsewhere.sqlite3",
                      PYPISSH_HOST="legacy-client-setting")
    done = run_cli("pypissh-migrate", "accounts", "list", env=env)
    assert done.returncode == 0 and "alice" in done.stdout
    assert done.stderr == ("warning: PYPISSH_DATABSE_URL is not a setting and is ignored; did you mean "
                           "PYPISSH_DATABASE_URL (setting database_url)?\n")


def test_openssh_mode_shim_needs_no_secret_key_and_makes_none(gateway_home):
    """`stdio` (sshd's forced command) with the secret key gone and no replica running: the user
    reads one line, nothing was published; the shim never reads the key, and none is made."""
    (gateway_home / "secret.key").unlink()
    done = run_cli("pypissh-gateway", "stdio", "--account", "alice",
                   env=environment(PYPISSH_HOME=str(gateway_home), SSH_ORIGINAL_COMMAND="whoami"))
    assert done.returncode == 1
    assert done.stderr == ("pypissh-gateway: the upload service on this machine is not running; nothing was "
                           "published; try again in a minute\n")
    assert not (gateway_home / "secret.key").exists()


def test_relative_home_flag_is_taken_from_where_it_is_typed(tmp_path):
    """`--home state` typed in a folder means that folder's state/, for every path that follows."""
    folder = tmp_path / "ops"
    folder.mkdir()
    done = run_cli("pypissh-gateway", "--home", "state", "init", env=environment(), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "state" / "pypissh.sqlite3").is_file() and (folder / "state" / "secret.key").is_file()
    listed = run_cli("pypissh-migrate", "--home", str(folder / "state"), "accounts", "list", env=environment(), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
