"""Account names follow one grammar (gateway/registry/names.py), checked where accounts are made;
every writer of authorized_keys lines refuses a line that a name outside it would bend. The runs
under a real sshd are in tests/test_openssh_mode.py (test_a_planted_account_name_never_logs_in)."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import insert

from gateway.logincommands import authorized_keys_command
from gateway.registry import AdminInputError, Registry, names, utcnow
from gateway.registry.schema import accounts, ssh_keys
from gateway.ssh import keycommand
from gateway.ssh.keyfile import KeyFileWriter, file_text
from gateway.sshkeys import parse_public_key
from tests.cli import environment, prepare_home, run_cli
from tests.helpers import register_account

# Each name would bend an authorized_keys line or a command line; the attack that found the hole
# used the first one, the attacker's own key after a newline.
BAD_NAMES = {
    "newline": "inj\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x",
    "quote": 'ali"ce',
    "single-quote": "ali'ce",
    "comma": "alice,bob",
    "space": "alice smith",
    "command": 'command="id"',
    "too-long": "a" * 150,
    "leading-dash": "-alice",
    "trailing-dot": "alice.",
    "non-ascii": "alicé",
}
NUL_NAME = "ali\0ce"
GOOD_NAMES = ["a", "Alice", "alice.smith", "alice_smith-2", "A1", "x" * 64]


def _one_line_refusal(name: str) -> str:
    return f"Error: {names.refusal(name)}"


def _env(home: Path, **variables: str) -> dict[str, str]:
    # cryptography 51 warns about DSA when asyncssh is imported: the machine's noise, not ours.
    return environment(PYPISSH_HOME=str(home), **variables)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A gateway home made by `pypissh-gateway init`."""
    return prepare_home(tmp_path_factory.mktemp("names") / "home", [(("pypissh-gateway", "init"), "")])


def _listed(home: Path) -> list[str]:
    done = run_cli("pypissh-migrate", "accounts", "list", "--format", "json", env=_env(home))
    assert done.returncode == 0, done.stderr
    return [row["account"] for row in json.loads(done.stdout)]


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_accounts_add_refuses_a_name_outside_the_grammar(case, home):
    """`pypissh-migrate accounts add NAME` refuses the name in one line naming it and the rule, and
    adds nothing."""
    name = BAD_NAMES[case]
    done = run_cli("pypissh-migrate", "accounts", "add", "--", name, env=_env(home))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [_one_line_refusal(name)]
    assert "\n" not in names.refusal(name).strip()
    assert _listed(home) == [] or name not in _listed(home)


def test_accounts_add_accepts_names_of_the_grammar(tmp_path):
    """Letters, digits, '.', '_' and '-' inside, alphanumeric ends, 1 to 64 characters."""
    home = prepare_home(tmp_path / "home", [(("pypissh-gateway", "init"), "")])
    env = _env(home)
    for name in GOOD_NAMES:
        done = run_cli("pypissh-migrate", "accounts", "add", name, env=env)
        assert done.returncode == 0, done.stderr
    assert sorted(_listed(home)) == sorted(GOOD_NAMES)


def test_import_legacy_refuses_the_same_names_nul_included(home, tmp_path):
    """import-legacy refuses each bad name (a NUL too, which no argv can carry) on its own line,
    imports the good one, and the run goes on."""
    rows = ["name,email", "goodname,good@example.org"]
    rows += [json.dumps(name) + "," for name in [*BAD_NAMES.values(), NUL_NAME] if "\n" not in name]
    users = tmp_path / "users.csv"
    users.write_text("\n".join(rows) + "\n")
    done = run_cli("pypissh-migrate", "import-legacy", "--users", str(users),
                   env=_env(home, COLUMNS="400"))
    assert done.returncode == 0, done.stderr
    refused = [line for line in (done.stdout + done.stderr).splitlines() if "is not a valid user name" in line]
    assert len(refused) == len(rows) - 2
    assert all(names.RULE in line for line in refused)
    assert "goodname" in _listed(home)
    assert set(_listed(home)) <= {"goodname"}


@pytest.mark.parametrize("name", [*BAD_NAMES.values(), NUL_NAME])
def test_the_store_refuses_every_bad_name(gateway, name):
    """AccountStore.add_account is the gate every path goes through: a NUL, a newline, a quote..."""
    with pytest.raises(AdminInputError) as info:
        gateway.registry.accounts.add_account(name)
    assert str(info.value) == names.refusal(name)
    assert "\n" not in str(info.value) and "\0" not in str(info.value)
    assert gateway.registry.accounts.list_accounts() == []


# -- a row planted in the database by hand -------------------------------------------------------
def plant(registry: Registry, name: str, public_line: str) -> str:
    """An account named `name` with the key `public_line`, written straight into the tables as
    someone with database access could; returns the key's fingerprint."""
    key = parse_public_key(public_line)
    with registry.engine.begin() as conn:
        account_id = conn.execute(insert(accounts).values(
            name=name, disabled=False, exempt=False, created_at=utcnow())).inserted_primary_key[0]
        conn.execute(insert(ssh_keys).values(
            account_id=account_id, fingerprint=key.fingerprint, algorithm=key.algorithm, bits=key.bits,
            public_key=key.openssh, weak=False, source="admin", created_at=utcnow()))
    return key.fingerprint


@pytest.fixture
def keyfile_settings(make_settings):
    folder = Path(tempfile.mkdtemp(prefix="names-"))
    yield make_settings(openssh_mode=True, shim_socket=str(folder / "shim.sock"),
                        shim_user=pwd.getpwuid(os.geteuid()).pw_name,
                        authorized_keys_file=str(folder / "authorized_keys"), key_cache_seconds=0.2)
    shutil.rmtree(folder, ignore_errors=True)


def test_key_file_leaves_out_a_planted_row_with_a_warning(start_gateway, keyfile_settings, user_keys, caplog):
    """The key file writer skips the planted row with one warning and keeps the good ones; every
    line it writes starts with the fixed prefix."""
    harness = start_gateway(keyfile_settings)
    register_account(harness, "alice", user_keys["alice"])
    planted = plant(harness.registry, BAD_NAMES["newline"], user_keys["mallory"].public_line)
    with caplog.at_level(logging.WARNING, logger="gateway.ssh.keyfile"):
        assert KeyFileWriter(keyfile_settings, harness.registry).update() is True
    lines = [line for line in Path(keyfile_settings.authorized_keys_file).read_text().splitlines()
             if not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith(keycommand.LINE_PREFIX)
    assert user_keys["mallory"].public_line.split()[1] not in Path(keyfile_settings.authorized_keys_file).read_text()
    warnings = [r.getMessage() for r in caplog.records if r.name == "gateway.ssh.keyfile"]
    assert len(warnings) == 1 and planted in warnings[0] and names.RULE in warnings[0]
    assert "\n" not in warnings[0]


@pytest.mark.parametrize("case", ["newline", "quote", "comma", "space", "command"])
def test_key_command_prints_no_line_for_a_planted_row(start_gateway, keyfile_settings, user_keys, case, capsys):
    """authorized-keys-command, reading the key file the replica wrote, prints nothing for the
    planted row's key."""
    harness = start_gateway(keyfile_settings)
    plant(harness.registry, BAD_NAMES[case], user_keys["mallory"].public_line)
    KeyFileWriter(keyfile_settings, harness.registry).update()
    kind, blob = parse_public_key(user_keys["mallory"].public_line).openssh.split()
    status = authorized_keys_command(keyfile_settings, "submit", blob, kind)
    out, _err = capsys.readouterr()
    assert (status, out) == (0, "")


@pytest.mark.parametrize("parts", [
    ("cmd\nssh-ed25519 AAAA", "ssh-ed25519 AAAAC3Nz"),
    ("cmd\0", "ssh-ed25519 AAAAC3Nz"),
    ("cmd", "ssh-ed25519 AAAAC3Nz comment"),
    ("cmd", 'command="id" ssh-ed25519 AAAAC3Nz'),
    ("cmd", "ssh-ed25519 AAAA\nssh-ed25519 BBBB"),
])
def test_the_line_builder_refuses_a_part_that_would_bend_the_line(parts):
    """authorized_keys_line raises rather than return a line with a break or extra words."""
    with pytest.raises(keycommand.UnsafeLine):
        keycommand.authorized_keys_line(*parts)


def test_file_text_builds_lines_only_from_checked_parts(settings):
    """Rows with a bad name, fingerprint or key text are left out; a good row is kept."""
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    fingerprint = "SHA256:" + "A" * 43
    text = file_text(settings, [("alice", fingerprint, key), ("a b", fingerprint, key),
                                ("alice", "SHA256:x\ny", key), ("alice", fingerprint, key + " note")])
    lines = text.splitlines()[2:]
    assert len(lines) == 1 and lines[0].startswith(keycommand.LINE_PREFIX) and "--account alice" in lines[0]
