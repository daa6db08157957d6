"""What admins hand to `pypissh-migrate`, judged before it reaches the registry: private keys are
refused whole and never quoted, refused lines are named by number and reason only, email
addresses are checked for syntax, and a revoked key can be given back. Real console scripts, real
keys made by ssh-keygen, puttygen and cryptography."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa

from gateway.sshkeys import parse_public_key
from tests.cli import copy_home, environment, home_registry, prepare_home, run_cli

DATA = Path(__file__).parent / "data" / "legacy"


def run(home: Path, name: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return run_cli(name, *args, env=environment(PYPISSH_HOME=str(home)), stdin=stdin)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A gateway after `init`, with accounts alice and bob."""
    return prepare_home(tmp_path_factory.mktemp("admin") / "home",
                        [(("pypissh-gateway", "init"), ""), (("pypissh-migrate", "accounts", "add", "alice"), ""),
                         (("pypissh-migrate", "accounts", "add", "bob"), "")])


@pytest.fixture
def home(prepared, tmp_path) -> Path:
    """This test's copy of the prepared gateway."""
    return copy_home(prepared, tmp_path)


# -- private keys --------------------------------------------------------------------------------
def _ssh_keygen(*options: str):
    def make(path: Path) -> None:
        subprocess.run(["ssh-keygen", "-q", *options, "-f", str(path)], check=True)

    return make


def _dsa_pem(path: Path) -> None:
    key = dsa.generate_private_key(key_size=1024)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))


def _putty(path: Path) -> None:
    if shutil.which("puttygen") is None:
        pytest.skip("puttygen is not installed (./dev test installs putty-tools)")
    subprocess.run(["puttygen", "-t", "ed25519", "-o", str(path), "--new-passphrase", "/dev/null"], check=True,
                   capture_output=True)


PRIVATE_KEYS = {
    "openssh": (_ssh_keygen("-t", "ed25519", "-N", ""), "-----BEGIN OPENSSH PRIVATE KEY-----"),
    "pem-rsa": (_ssh_keygen("-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""), "-----BEGIN RSA PRIVATE KEY-----"),
    "pem-ec": (_ssh_keygen("-t", "ecdsa", "-m", "PEM", "-N", ""), "-----BEGIN EC PRIVATE KEY-----"),
    "pem-dsa": (_dsa_pem, "-----BEGIN DSA PRIVATE KEY-----"),
    "pkcs8": (_ssh_keygen("-t", "rsa", "-b", "2048", "-m", "PKCS8", "-N", ""), "-----BEGIN PRIVATE KEY-----"),
    "pkcs8-encrypted": (_ssh_keygen("-t", "ecdsa", "-m", "PKCS8", "-N", "a passphrase"),
                        "-----BEGIN ENCRYPTED PRIVATE KEY-----"),
    "putty": (_putty, "PuTTY-User-Key-File-3: ssh-ed25519"),
}


@pytest.mark.parametrize("kind", list(PRIVATE_KEYS))
def test_private_key_is_refused_in_one_line_that_never_quotes_it(kind, home, tmp_path):
    """`keys add` given a private key (any format) says so in one line and how to get the .pub;
    no piece of the file appears in the output and nothing is added."""
    make, first_line = PRIVATE_KEYS[kind]
    path = tmp_path / f"id_{kind}"
    make(path)
    content = path.read_text()
    assert content.splitlines()[0] == first_line  # the format this case is about
    done = run(home, "pypissh-migrate", "keys", "add", "alice", str(path))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"Error: {path} is a private key; give the .pub file (ssh-keygen -y -f {path} > {path}.pub)\n"
    pieces = {piece for line in content.splitlines()[1:] for piece in (line[:12], line[-12:]) if len(line) > 20}
    assert pieces and not any(piece in done.stderr for piece in pieces)
    registry = home_registry(home)
    assert registry.keys.list_keys() == []
    registry.close()


def test_import_legacy_refuses_a_private_key_file(home, tmp_path):
    """A private key handed to import-legacy as authorized_keys is refused whole, without quoting it."""
    path = tmp_path / "id_ed25519"
    _ssh_keygen("-t", "ed25519", "-N", "")(path)
    done = run(home, "pypissh-migrate", "import-legacy", "--authorized-keys", str(path))
    assert done.returncode == 1
    assert done.stderr == f"Error: {path} is a private key; give the .pub file (ssh-keygen -y -f {path} > {path}.pub)\n"


def test_refused_lines_are_named_by_number_and_reason_only(home, tmp_path):
    """Broken lines are reported as FILE:LINE: refused: REASON; their text is never repeated."""
    good = tmp_path / "good"
    _ssh_keygen("-t", "ed25519", "-N", "", "-C", "alice@laptop")(good)
    blob = base64.b64encode(os.urandom(48)).decode()
    lines = [f"ssh-ed25519 {blob}", f"{blob[:20]}+{blob[20:]}", f'from="{blob}",no-pty {blob}',
             "-----BEGIN SOMETHING-----", (tmp_path / "good.pub").read_text().strip()]
    key_file = tmp_path / "keys.pub"
    key_file.write_text("\n".join(lines) + "\n")
    done = run(home, "pypissh-migrate", "keys", "add", "alice", str(key_file))
    assert done.returncode == 1
    refused = done.stderr.splitlines()[:-1]
    assert [line.split(": refused: ")[0] for line in refused] == [f"{key_file}:{n}" for n in (1, 2, 3, 4)]
    for line in refused:
        assert blob[:10] not in line and blob[20:30] not in line and "SOMETHING" not in line
    assert done.stderr.splitlines()[-1] == "Error: 1 key(s) added to 'alice', 4 refused (see above)"


# -- a revoked key is not lost ---------------------------------------------------------------------
@pytest.fixture
def revoked(home, tmp_path) -> tuple[Path, str]:
    """Alice's key, added and then revoked."""
    key = tmp_path / "alice"
    _ssh_keygen("-t", "ed25519", "-N", "")(key)
    assert run(home, "pypissh-migrate", "keys", "add", "alice", f"{key}.pub").returncode == 0
    fingerprint = parse_public_key((tmp_path / "alice.pub").read_text()).fingerprint
    done = run(home, "pypissh-migrate", "keys", "revoke", fingerprint)
    assert done.returncode == 0 and f"`pypissh-migrate keys restore {fingerprint}` undoes it" in done.stdout
    return key, fingerprint


def _owner(home: Path, fingerprint: str) -> str | None:
    registry = home_registry(home)
    try:
        identity = registry.keys.identity_for_key(fingerprint)
        return identity.account_name if identity else None
    finally:
        registry.close()


def test_keys_restore_gives_a_revoked_key_back(home, revoked):
    """`keys restore FP` makes the key log in as its account again; restoring twice says so."""
    _key, fingerprint = revoked
    assert _owner(home, fingerprint) is None
    done = run(home, "pypissh-migrate", "keys", "restore", fingerprint)
    assert done.returncode == 0
    assert done.stdout == f"restored {fingerprint} of 'alice'; every replica accepts it again within 5 s\n"
    assert _owner(home, fingerprint) == "alice"
    again = run(home, "pypissh-migrate", "keys", "restore", fingerprint)
    assert again.returncode == 1 and f"key {fingerprint} of 'alice' is not revoked" in again.stderr


def test_adding_a_revoked_key_to_its_account_restores_it(home, revoked):
    """`keys add` of the same public key to the same account restores it and says so."""
    key, fingerprint = revoked
    done = run(home, "pypissh-migrate", "keys", "add", "alice", f"{key}.pub")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"restored revoked ssh-ed25519 key {fingerprint} of 'alice'\n"
    assert _owner(home, fingerprint) == "alice"


def test_a_revoked_key_cannot_move_to_another_account(home, revoked):
    """Adding alice's revoked key to bob is refused, naming alice and the restore command."""
    key, fingerprint = revoked
    done = run(home, "pypissh-migrate", "keys", "add", "bob", f"{key}.pub")
    assert done.returncode == 1
    assert (f"refused: key {fingerprint} is a revoked key of account 'alice'; a key belongs to one account: "
            f"`pypissh-migrate keys restore {fingerprint}` gives it back to 'alice'") in done.stderr
    assert _owner(home, fingerprint) is None


# -- email addresses -------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["not-an-email", "x@localhost", "two@@example.org", "a@b", "x@example.invalid"])
def test_accounts_add_refuses_what_is_not_an_email_address(home, address):
    """The syntax check (email-validator, no DNS) refuses it; the account is not created."""
    done = run(home, "pypissh-migrate", "accounts", "add", "kate", "--email", address)
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: '{address}' is not an email address (")
    assert done.stderr.endswith("; give one like alice@example.org\n")
    registry = home_registry(home)
    assert registry.accounts.find_account("kate") is None
    registry.close()


def test_accounts_update_checks_and_normalises_the_address(home):
    """update refuses a bad address and keeps the old one; a good one is stored in normal form."""
    assert run(home, "pypissh-migrate", "accounts", "update", "alice", "--email", "Alice@Example.ORG").returncode == 0
    refused = run(home, "pypissh-migrate", "accounts", "update", "alice", "--email", "alice at example.org")
    assert refused.returncode == 1 and "is not an email address" in refused.stderr
    registry = home_registry(home)
    assert registry.accounts.get_account("alice").email == "Alice@example.org"
    registry.close()


def test_import_legacy_skips_a_row_whose_email_is_not_an_address(home):
    """The fixture's `kate,not-an-email` row is skipped by line, without repeating the address."""
    done = run(home, "pypissh-migrate", "import-legacy", "--users", str(DATA / "users.csv"))
    assert done.returncode == 0, done.stderr
    assert "  users.csv:8: the email column is not an email address; fix it in the file, or leave it empty" \
        in done.stdout.splitlines()
    assert "not-an-email" not in done.stdout
    registry = home_registry(home)
    assert registry.accounts.find_account("kate") is None
    registry.close()
