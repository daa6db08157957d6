"""`pypissh-migrate accounts` and `keys`: administering who may log in, run through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.sshkeys import parse_public_key
from gateway.tokens import create_key_file
from migrate import output
from migrate.cli import cli
from migrate.legacy_import import OptionsError, split_options
from tests.helpers import cli_runner

DATA = Path(__file__).parent / "data" / "legacy"
TOKEN = "pypi-AgEIcHlwaS5vcmcCJGFkbWluLXRlc3QtdG9rZW4tdGhhdC1tdXN0LW5vdC1sZWFr"


def _public_keys() -> dict[str, str]:
    """Real public keys of the legacy fixture, by comment user: alice rsa-3072, bob ed25519,
    carol rsa-1024, dave dsa, erin ecdsa-256, frank ecdsa-384."""
    keys = {}
    for line in (DATA / "authorized_keys").read_text().splitlines():
        try:
            rest = split_options(line)[1] if line.startswith("command=") else ""
        except OptionsError:
            continue  # the fixture's deliberately broken line
        if len(rest.split()) == 3:
            keys.setdefault(rest.split()[2].split("@")[0], rest)
    return keys


KEYS = _public_keys()


@pytest.fixture
def db(tmp_path):
    """Run the CLI against a fresh registry; returns (invoke, registry)."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)  # what `db upgrade` and `keygen` make
    create_key_file(tmp_path / "secret.key")
    registry = Registry.from_url(url)

    yield cli_runner(cli, database_url=url, secret_key_file=tmp_path / "secret.key"), registry
    registry.engine.dispose()


def test_add_account_with_email_and_exemption(db):
    """`accounts add` records the email and the exemption; `list` and `show` display them."""
    invoke, registry = db
    result = invoke("accounts", "add", "alice", "--email", "alice@example.org", "--exempt")
    assert result.exit_code == 0, result.output
    account = registry.accounts.get_account("alice")
    assert (account.email, account.exempt, account.disabled) == ("alice@example.org", True, False)
    assert "alice@example.org" in invoke("accounts", "list").output
    show = invoke("accounts", "show", "alice").output
    assert "exempt from brownouts and sunset" in show and "token: none stored" in show


def test_add_account_reads_token_from_stdin_and_stores_it_sealed(db):
    """`accounts add --token-file -` takes the token on stdin; the registry holds only ciphertext."""
    invoke, registry = db
    result = invoke("accounts", "add", "alice", "--token-file", "-", input=TOKEN + "\n")
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    (_id, ciphertext), = registry.accounts.token_ciphertexts()
    assert TOKEN not in ciphertext and registry.accounts.get_account("alice").has_token


def test_token_on_the_command_line_is_refused_without_echo(db):
    """`--token VALUE` is refused (shell history, ps) and the value is not repeated; nothing is created."""
    invoke, registry = db
    for args in (("accounts", "add", "alice", "--token", TOKEN), ("accounts", "set-token", "alice", "--token", TOKEN)):
        result = invoke(*args)
        assert result.exit_code == 2
        assert "never given on the command line" in result.output
        assert TOKEN not in result.output
    assert registry.accounts.find_account("alice") is None


def test_set_token_from_file_and_bad_token_shape(db, tmp_path):
    """`set-token --token-file` stores a token; a text that is no API token is refused without being shown."""
    invoke, registry = db
    invoke("accounts", "add", "alice")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert invoke("accounts", "set-token", "alice", "--token-file", str(token_file)).exit_code == 0
    assert registry.accounts.get_account("alice").has_token
    bad = invoke("accounts", "set-token", "alice", input="hunter2-old-password\n")
    assert bad.exit_code == 1 and "not an API token" in bad.output and "hunter2" not in bad.output


def test_disable_and_enable_account(db):
    """A disabled account's keys stop authenticating; enabling restores them."""
    invoke, registry = db
    invoke("accounts", "add", "bob")
    assert invoke("keys", "add", "bob", "-", input=KEYS["bob"] + "\n").exit_code == 0
    fingerprint = parse_public_key(KEYS["bob"]).fingerprint
    assert invoke("accounts", "disable", "bob").exit_code == 0
    assert registry.keys.identity_for_key(fingerprint) is None
    assert invoke("accounts", "enable", "bob").exit_code == 0
    assert registry.keys.identity_for_key(fingerprint).account_name == "bob"


def test_update_account_email_and_exemption(db):
    """`accounts update` changes the email and clears the exemption."""
    invoke, registry = db
    invoke("accounts", "add", "carol", "--exempt")
    result = invoke("accounts", "update", "carol", "--email", "carol@example.org", "--no-exempt")
    assert result.exit_code == 0, result.output
    account = registry.accounts.get_account("carol")
    assert (account.email, account.exempt) == ("carol@example.org", False)


def test_keys_add_takes_several_keys_per_file(db, tmp_path):
    """A file with comments, blank lines and three key types adds each key to the account."""
    invoke, registry = db
    invoke("accounts", "add", "alice")
    key_file = tmp_path / "keys.pub"
    key_file.write_text(f"# laptop and CI\n{KEYS['alice']}\n\n{KEYS['erin']}\n{KEYS['frank']}\n")
    result = invoke("keys", "add", "alice", str(key_file))
    assert result.exit_code == 0, result.output
    types = sorted(k.algorithm for k in registry.keys.list_keys("alice"))
    assert types == ["ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa"]


def test_duplicate_key_is_refused_naming_its_owner(db):
    """A key belongs to one account: adding it to another is refused, naming the owner."""
    invoke, registry = db
    invoke("accounts", "add", "alice")
    invoke("accounts", "add", "bob")
    assert invoke("keys", "add", "alice", "-", input=KEYS["bob"] + "\n").exit_code == 0
    again = invoke("keys", "add", "bob", "-", input=KEYS["bob"] + "\n")
    assert again.exit_code == 1
    assert "<stdin>:1: refused" in again.output and "already registered to account 'alice'" in again.output
    assert registry.keys.list_keys("bob") == []


def test_weak_keys_refused_by_default(db):
    """DSA and RSA-1024 keys are refused with the reason and their line; the good key in the file is added."""
    invoke, registry = db
    invoke("accounts", "add", "carol")
    result = invoke("keys", "add", "carol", "-", input=f"{KEYS['carol']}\n{KEYS['dave']}\n{KEYS['bob']}\n")
    assert result.exit_code == 1
    assert "<stdin>:1: refused: RSA key of 1024 bits" in result.output
    assert "<stdin>:2: refused: DSA keys are obsolete" in result.output
    assert "1 key(s) added to 'carol', 2 refused" in result.output
    assert [k.algorithm for k in registry.keys.list_keys("carol")] == ["ssh-ed25519"]


def test_weak_keys_accepted_with_setting_are_flagged(db):
    """With allow_weak_keys the weak keys go in, marked weak in the registry and in `keys list`."""
    invoke, registry = db
    invoke("accounts", "add", "dave")
    result = invoke("--set", "allow_weak_keys=true", "keys", "add", "dave", "-",
                    input=f"{KEYS['dave']}\n{KEYS['carol']}\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("(weak: accepted because allow_weak_keys is set)") == 2
    assert all(k.weak for k in registry.keys.list_keys("dave"))
    assert invoke("keys", "list", "dave").output.count("weak") == 2


def test_malformed_key_refused_with_line_number(db):
    """A line that is no public key is refused with its file line; nothing else is touched."""
    invoke, _registry = db
    invoke("accounts", "add", "erin")
    result = invoke("keys", "add", "erin", "-", input="\nssh-ed25519 AAAA-not-base64 erin@x\n")
    assert result.exit_code == 1
    assert "<stdin>:2: refused: not a valid OpenSSH public key" in result.output


def test_keys_add_accepts_authorized_keys_lines(db):
    """A line copied from an authorized_keys file (with options) is accepted; the options are ignored."""
    invoke, registry = db
    invoke("accounts", "add", "frank")
    line = f'command="/srv/handler -r frank",no-pty {KEYS["frank"]}'
    assert invoke("keys", "add", "frank", "-", input=line + "\n").exit_code == 0
    assert registry.keys.list_keys("frank")[0].comment == "frank@legacy"


def test_revoke_key(db):
    """A revoked key no longer authenticates and shows as revoked."""
    invoke, registry = db
    invoke("accounts", "add", "bob")
    invoke("keys", "add", "bob", "-", input=KEYS["bob"] + "\n")
    fingerprint = parse_public_key(KEYS["bob"]).fingerprint
    result = invoke("keys", "revoke", fingerprint)
    assert result.exit_code == 0, result.output
    assert registry.keys.identity_for_key(fingerprint) is None
    assert "revoked" in invoke("keys", "list", "--all").output


def test_tables_never_cut_fingerprints(db, monkeypatch):
    """On a narrow terminal and in piped output, `keys list` and `accounts show` print whole fingerprints."""
    invoke, _registry = db
    invoke("accounts", "add", "alice", "--email", "alice.with.a.long.address@example.org")
    invoke("keys", "add", "alice", "-", input=f"{KEYS['alice']}\n{KEYS['erin']}\n")
    fingerprints = [parse_public_key(KEYS[n]).fingerprint for n in ("alice", "erin")]
    for width in (60, 80):
        monkeypatch.setattr(output.console, "width", width)
        for args in (("keys", "list"), ("accounts", "show", "alice")):
            text = invoke(*args).output
            for fingerprint in fingerprints:
                assert fingerprint in text, (width, args, text)
