"""`pypissh-migrate import-legacy`: the old service's authorized_keys and CSV dumps into the registry.

The fixture files under tests/data/legacy hold real public keys (rsa 3072/2048/1024, dsa, ed25519,
ecdsa 256/384) in the old server's format, with comments, blank lines and broken lines.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from migrate.cli import cli
from migrate.legacy_import import (
    OptionsError,
    Rejected,
    Where,
    parse_authorized_keys_line,
    split_options,
    user_from_command,
)

DATA = Path(__file__).parent / "data" / "legacy"
SOURCES = ["--authorized-keys", str(DATA / "authorized_keys"), "--users", str(DATA / "users.csv"),
           "--keys", str(DATA / "keys.csv")]

# Each line the import must refuse, with a word of the reason it must give.
REJECTED = {
    "authorized_keys:6": "1024 bits",
    "authorized_keys:7": "DSA",
    "authorized_keys:12": "not a valid OpenSSH public key",
    "authorized_keys:13": "incomplete",
    "authorized_keys:14": "no command=",
    "authorized_keys:15": "no '-r <user>'",
    "authorized_keys:16": "not closed",
    "authorized_keys:17": "already listed for 'alice' at authorized_keys:4",
    "keys.csv:5": "not a valid OpenSSH public key",
    "keys.csv:6": "name is empty",
    "users.csv:8": "not an email address",
    "users.csv:9": "not a valid user name",
    "users.csv:10": "listed again with another email",
    "users.csv:11": "expected 2 columns",
}


@pytest.fixture
def database(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    return url


def migrate(url: str, *args: str, weak: bool = False):
    sets = ["--set", f"database_url={url}"] + (["--set", "allow_weak_keys=true"] if weak else [])
    return CliRunner().invoke(cli, [*sets, *args])


def snapshot(url: str) -> tuple:
    registry = Registry.from_url(url)
    try:
        accounts = tuple((a.name, a.email, a.disabled, a.exempt) for a in registry.accounts.list_accounts())
        keys = tuple((k.account_name, k.fingerprint, k.weak, k.source, k.revoked_at) for k in registry.keys.list_keys())
    finally:
        registry.engine.dispose()
    return accounts, keys


def test_options_keep_quoted_commas_and_escaped_quotes():
    """Quoted option values keep their commas and blanks; \\" is a quote; the key follows the first bare blank."""
    options, rest = split_options('command="run -r \\"o,k\\" x",from="10.0.0.0/8,1.2.3.4",no-pty ssh-ed25519 AAAA c')
    assert options == [("command", 'run -r "o,k" x'), ("from", "10.0.0.0/8,1.2.3.4"), ("no-pty", None)]
    assert rest == "ssh-ed25519 AAAA c"
    assert split_options("ssh-rsa AAAA comment") == ([], "ssh-rsa AAAA comment")
    with pytest.raises(OptionsError):
        split_options('command="unterminated,no-pty ssh-rsa AAAA')


def test_user_comes_from_the_handlers_r_option():
    """The user is the word after -r in the handler's command, however it is quoted."""
    assert user_from_command("/srv/handler.py -r alice") == "alice"
    assert user_from_command("cd /srv && exec python h.py -r 'Bob' --log x") == "Bob"
    assert user_from_command('h.py -r "carol"') == "carol"
    assert user_from_command("h.py -rdave") == "dave"
    assert user_from_command("h.py --verbose") is None


def test_line_without_user_is_rejected_with_its_line_number():
    """A line that names no user is refused, saying where and why."""
    result = parse_authorized_keys_line("no-pty ssh-ed25519 AAAAC3Nz x", Where("authorized_keys", 9))
    assert isinstance(result, Rejected) and str(result.where) == "authorized_keys:9"
    assert "names no user" in result.reason


def test_import_creates_accounts_and_keys_and_reports_each_rejected_line(database):
    """A realistic import: accounts with emails, valid keys added, every bad line listed with its reason."""
    result = migrate(database, "import-legacy", *SOURCES)
    assert result.exit_code == 0, result.output
    assert "accounts: 9 created, 0 already present" in result.output
    assert "keys:     7 added, 2 already present, 14 line(s) skipped" in result.output
    skipped = {line.strip().split(": ", 1)[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert set(skipped) == set(REJECTED)
    for where, reason in REJECTED.items():
        assert reason in skipped[where], skipped[where]
    accounts, keys = snapshot(database)
    emails = {name: email for name, email, _d, _e in accounts}
    assert emails["alice"] == "alice@example.org" and emails["judy"] == "judy@example.org"
    assert emails["erin"] is None and "Oscar" in emails  # only in authorized_keys
    owners = {account for account, *_ in keys}
    assert owners == {"alice", "bob", "erin", "frank", "grace", "heidi", "Oscar"}
    assert all(source == "legacy" and not weak for _a, _f, weak, source, _r in keys)
    assert "erin, frank, Oscar" in result.output  # accounts that will miss email notices


def test_second_import_changes_nothing(database):
    """Running the same import again adds nothing and reports everything as already present."""
    assert migrate(database, "import-legacy", *SOURCES).exit_code == 0
    before = snapshot(database)
    again = migrate(database, "import-legacy", *SOURCES)
    assert again.exit_code == 0, again.output
    assert "accounts: 0 created, 9 already present" in again.output
    assert "keys:     0 added, 9 already present" in again.output
    assert snapshot(database) == before


def test_dry_run_writes_nothing(database):
    """--dry-run shows what would be imported and leaves the registry untouched."""
    before = snapshot(database)
    result = migrate(database, "import-legacy", "--dry-run", *SOURCES)
    assert result.exit_code == 0, result.output
    assert "accounts: 9 to create" in result.output and "keys:     7 to add" in result.output
    assert "dry run: nothing was written" in result.output
    assert snapshot(database) == before


def test_weak_keys_are_imported_only_when_allowed_and_then_flagged(database):
    """With allow_weak_keys the DSA and RSA-1024 keys are imported, flagged weak in the registry and `keys list`."""
    result = migrate(database, "import-legacy", *SOURCES, weak=True)
    assert result.exit_code == 0, result.output
    assert "keys:     9 added" in result.output
    assert "weak keys accepted" in result.output
    _accounts, keys = snapshot(database)
    weak = {account for account, _f, is_weak, _s, _r in keys if is_weak}
    assert weak == {"carol", "dave"}
    listing = migrate(database, "keys", "list", "carol")
    assert "weak" in listing.output


def test_revoked_key_is_not_restored(database):
    """A key an admin revoked stays revoked when the import runs again, and the line says so."""
    assert migrate(database, "import-legacy", "--authorized-keys", str(DATA / "authorized_keys")).exit_code == 0
    _accounts, keys = snapshot(database)
    alice_key = next(fp for account, fp, *_ in keys if account == "alice")
    assert migrate(database, "keys", "revoke", alice_key).exit_code == 0
    again = migrate(database, "import-legacy", "--authorized-keys", str(DATA / "authorized_keys"))
    assert "authorized_keys:4: user 'alice': key" in again.output and "revoked" in again.output
    assert next(r for account, fp, _w, _s, r in snapshot(database)[1] if fp == alice_key) is not None


def test_imported_key_logs_in_over_ssh(gateway, user_keys, ssh_client, tmp_path):
    """A key imported from the old authorized_keys authenticates a real OpenSSH login as its user."""
    authorized = tmp_path / "authorized_keys"
    shutil.copy(DATA / "authorized_keys", authorized)
    with authorized.open("a") as handle:
        handle.write(f'command="/srv/pypi/handler.py -r bob",no-pty,no-port-forwarding {user_keys["bob"].public_line}\n')
    result = migrate(gateway.settings.database_url, "import-legacy", "--authorized-keys", str(authorized),
                     "--users", str(DATA / "users.csv"))
    assert result.exit_code == 0, result.output
    whoami = ssh_client(user_keys["bob"]).run("whoami")
    assert whoami.returncode == 0, whoami.stderr
    assert b"account:  bob" in whoami.stdout
    assert b"bob@example.org" in whoami.stdout


def test_import_into_a_pipe_draws_no_progress_bar(database, tmp_path):
    """Run by the real script with stdout a pipe, the import prints its summary and no progress bar."""
    from tests.cli import environment, run_cli
    from tests.helpers import BOX_DRAWING

    done = run_cli("pypissh-migrate", "--set", f"database_url={database}", "import-legacy", *SOURCES,
                   env=environment(PYPISSH_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert "accounts: 9 created, 0 already present" in done.stdout
    assert "importing" not in done.stdout + done.stderr
    assert not (BOX_DRAWING | {"━", "╸", "╺"}) & set(done.stdout + done.stderr)
    assert "\x1b[" not in done.stdout + done.stderr
