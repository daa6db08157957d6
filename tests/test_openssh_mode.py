"""OpenSSH deployment mode: a real sshd in front of a running replica carries the legacy distutils
client's upload to the same upstream as the asyncssh server does. The replica keeps
`authorized_keys_file`, sshd's AuthorizedKeysCommand is `grep -F %k` on it, and each line's forced
command is the shim, run as a file by an isolated interpreter, which hands the session to the
replica over its UNIX socket. `pypissh-gateway authorized-keys-command` prints the same lines.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.settings import Settings
from gateway.registry.schema import accounts, ssh_keys
from gateway.ssh.keycommand import LINE_PREFIX, authorized_keys_line, lines_for_key
from gateway.ssh.keyfile import KeyFileWriter, shim_command
from gateway.sshkeys import parse_public_key
from gateway.tokens import TokenBox
from testbed import postgres
from testbed.sample import make_legacy_project, run_legacy
from testbed.scaleout import Replica, metric
from testbed.sshdutil import SSHD, Sshd, ensure_submit_user, session_program, session_python
from tests.helpers import recorded_events, register_account, wait_until

PROGRAM = Path(sys.prefix) / "bin" / "pypissh-gateway"
LIST_CLASSIFIERS = b"GET /legacy/?:action=list_classifiers HTTP/1.0\r\nHost: gateway\r\n\r\n"
SECRET = "a test secret for the OpenSSH mode and long enough to derive a key"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "sshd must run as root"
    if not os.path.exists(SSHD):
        return "openssh-server is not installed (./dev test installs it)"
    if postgres.unavailable_reason() is not None:
        return "PostgreSQL is not running (the registry of the deployment mode)"
    return None


SKIP = _skip_reason()


@pytest.fixture(scope="module")
def sshd(upstream, user_keys, host_key_dir):
    """sshd on a free port of 127.0.0.1 with its own config, a replica serving the OpenSSH mode's
    socket for user submit and keeping its key file, and a registry where alice has a key."""
    if SKIP:
        pytest.skip(SKIP)
    ensure_submit_user()
    try:
        session_python()
    except RuntimeError as exc:  # pyenv's 3.13 under root's private home, and Debian has no 3.13
        pytest.skip(f"no interpreter of this version that user submit can run: {exc}")
    # Readable by user `submit`, who runs the forced command (pytest's own temp dirs are root-only);
    # short, for the UNIX socket's path.
    folder = Path(tempfile.mkdtemp(prefix="pypissh-openssh-"))
    folder.chmod(0o755)
    try:
        yield from _run_sshd(folder, upstream, user_keys, host_key_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_sshd(folder: Path, upstream, user_keys, host_key_dir):
    with postgres.temporary_database("pypissh_test") as url:
        upgrade(url)
        registry = Registry.from_url(url)
        registry.accounts.add_account("alice", email="alice@example.org")
        registry.keys.add_key("alice", parse_public_key(user_keys["alice"].public_line))
        registry.accounts.set_token_ciphertext("alice", TokenBox.from_settings(Settings(secret_key=SECRET)).seal(upstream.token))
        # The key in a file of the replica's own: the configuration is readable by user submit,
        # so it holds no secret (SECURITY.md; serve refuses a readable one that does).
        secret_key_file = folder / "secret.key"
        secret_key_file.write_text(SECRET + "\n")
        secret_key_file.chmod(0o600)
        replica = Replica(folder, dict(
            database_url=url, upstream_url=upstream.url, index_url=upstream.simple_url,
            upstream_ca_bundle=str(upstream.ca_file), secret_key_file=str(secret_key_file),
            host_key_dir=str(host_key_dir), public_host="127.0.0.1",
            openssh_mode=True, shim_socket=str(folder / "shim.sock"), shim_user="submit", key_cache_seconds=1,
            authorized_keys_file=str(folder / "authorized_keys"), shim_python=str(session_python())),
            name="replica")
        replica.config.chmod(0o644)  # the shim, run as user submit, reads it
        key_command = f"/usr/bin/grep -F -- %k {folder / 'authorized_keys'}"
        sshd = Sshd(folder, (f"AuthorizedKeysFile none\nAuthorizedKeysCommand {key_command}\n"
                             "AuthorizedKeysCommandUser root\nLogLevel VERBOSE\n"))
        try:
            replica.start(timeout=60)
            wait_until(lambda: user_keys["alice"].public_line.split()[1] in _text(folder / "authorized_keys"),
                       what="alice's key in the replica's key file")
            sshd.start()
            yield {"port": sshd.port, "registry": registry, "known_hosts": sshd.known_hosts, "folder": folder,
                   "replica": replica}
        finally:
            sshd.stop()
            replica.stop()
            registry.engine.dispose()


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def ssh_command(sshd, key) -> list[str]:
    return ["ssh", "-p", str(sshd["port"]), "-i", str(key.path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={sshd['known_hosts']}",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]


def forwarded_form_names(upstream, before: int) -> list[str]:
    posts = [r for r in upstream.recordings()[before:] if r.method == "POST"]
    return [name for name, _value, _filename in posts[-1].form()]


def test_sshd_carries_the_legacy_upload(sshd, upstream, user_keys, tmp_path, alice, ssh_client, legacy_home):
    """sshd and the shim carry the legacy upload byte-identical to the replica, which forwards the
    same request as the asyncssh server."""
    name = "Openssh-Mode"
    project = make_legacy_project(tmp_path / "project", name=name, version="1.0")
    before = len(upstream.recordings())
    command = " ".join(ssh_command(sshd, user_keys["alice"]))
    result = run_legacy(project, ["sdist", "upload"], ssh_command=command, home=legacy_home,
                        env={"PYPISSH_HOST": "127.0.0.1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Server response (200): OK" in result.stdout
    assert "account 'alice'" in result.stderr
    assert "Could not chdir" not in result.stderr  # the documented user has a home sshd can enter
    (dist,) = (project / "dist").glob("*.tar.gz")
    stored = "openssh_mode-1.0.tar.gz"  # the index normalises the name
    assert upstream.files()[stored] == hashlib.sha256(dist.read_bytes()).hexdigest()
    via_sshd = forwarded_form_names(upstream, before)
    (event,) = recorded_events(sshd["registry"], account_name="alice")
    assert (event.outcome, event.client_addr, event.key_fingerprint) == (
        "forwarded", "127.0.0.1", user_keys["alice"].fingerprint)
    assert event.replica.endswith(f":{sshd['replica'].pid}")  # the shim handed it to the replica

    # The asyncssh server, same project at the next version: the same request goes upstream.
    (project / "setup.py").write_text((project / "setup.py").read_text().replace("'1.0'", "'1.1'"))
    before = len(upstream.recordings())
    assert ssh_client().legacy(project, "sdist", "upload", home=legacy_home).returncode == 0
    assert forwarded_form_names(upstream, before) == via_sshd


def test_user_commands_arrive_through_ssh_original_command(sshd, user_keys):
    """`ssh submit@host whoami` under sshd answers like the asyncssh server does."""
    result = subprocess.run([*ssh_command(sshd, user_keys["alice"]), "-T", "-l", "submit", "127.0.0.1", "whoami"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "account:  alice" in result.stdout
    assert user_keys["alice"].fingerprint in result.stdout


def test_replica_logs_one_line_per_shim_session(sshd, user_keys):
    """A session handed over by the shim is one 'session ended' line in the replica's log, with the
    client's address from sshd, the key and the command."""
    result = subprocess.run([*ssh_command(sshd, user_keys["alice"]), "-T", "-l", "submit", "127.0.0.1", "guide"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    log_file = sshd["replica"].log_file

    def guide_line() -> list[str]:
        return [line for line in log_file.read_text().splitlines()
                if "gateway.sessions: session ended" in line and "command=guide" in line]

    (line,) = wait_until(guide_line, what="the session's line in the replica's log")
    assert f"key_fingerprint={user_keys['alice'].fingerprint}" in line
    assert "client_addr=127.0.0.1 " in line and "account_name=alice " in line and "outcome=command " in line


def test_unknown_key_is_refused_by_sshd(sshd, user_keys):
    """A key the registry does not know gets no authorized_keys line: sshd refuses the login."""
    result = subprocess.run([*ssh_command(sshd, user_keys["mallory"]), "-T", "-l", "submit", "127.0.0.1", "whoami"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_a_planted_account_name_never_logs_in(sshd, user_keys, tmp_path):
    """An account row written straight into the database with a name that carries a newline and
    the attacker's key gets no usable authorized_keys line: the attacker's key is refused by sshd
    (it logged in with a shell before), while a good account planted alongside logs in."""
    from tests.conftest import _make_user_key
    from tests.test_account_names import plant

    attacker = _make_user_key(tmp_path, "attacker")
    witness = _make_user_key(tmp_path, "witness")
    blob = attacker.public_line.split()[1]
    registry = sshd["registry"]
    planted = plant(registry, f"inj\nssh-ed25519 {blob} x", attacker.public_line)
    witnessed = plant(registry, "witness", witness.public_line)
    try:
        def run(key) -> subprocess.CompletedProcess:
            return subprocess.run([*ssh_command(sshd, key), "-T", "-l", "submit", "127.0.0.1", "whoami"],
                                  capture_output=True, text=True, timeout=60)

        # Both rows are read together: once the witness logs in, the planted row has been seen.
        assert "account:  witness" in wait_until(
            lambda: (r := run(witness)).returncode == 0 and r.stdout, timeout=30, interval=0.5,
            what="the witness account to log in")
        refused = run(attacker)
        assert refused.returncode == 255, refused.stdout
        assert "Permission denied" in refused.stderr
        text = _text(sshd["folder"] / "authorized_keys")
        lines = [line for line in text.splitlines() if not line.startswith("#")]
        assert lines and all(line.startswith(LINE_PREFIX) for line in lines)
        assert blob not in text
    finally:
        for fingerprint in (planted, witnessed):
            account = registry.keys.find_key(fingerprint).account_name
            with registry.engine.begin() as conn:
                conn.execute(ssh_keys.delete().where(ssh_keys.c.fingerprint == fingerprint))
                conn.execute(accounts.delete().where(accounts.c.name == account))


def test_a_revocation_reaches_sshd_within_the_key_cache_time(sshd, user_keys):
    """A key added to the registry logs in; once revoked, sshd refuses it within key_cache_seconds
    (the key file's next rewrite), without a restart."""
    registry = sshd["registry"]
    registry.accounts.add_account("bob", email="bob@example.org")
    registry.keys.add_key("bob", parse_public_key(user_keys["bob"].public_line))

    def whoami() -> subprocess.CompletedProcess:
        return subprocess.run([*ssh_command(sshd, user_keys["bob"]), "-T", "-l", "submit", "127.0.0.1", "whoami"],
                              capture_output=True, text=True, timeout=60)

    assert "account:  bob" in wait_until(lambda: (r := whoami()).returncode == 0 and r.stdout, timeout=30,
                                         interval=0.5, what="bob's new key to log in")
    registry.keys.revoke_key(user_keys["bob"].fingerprint)
    refused = wait_until(lambda: (r := whoami()).returncode == 255 and r, timeout=30, interval=0.5,
                         what="sshd to refuse bob's revoked key")
    assert "Permission denied" in refused.stderr


def test_without_a_replica_the_legacy_client_is_told_and_nothing_is_published(
        sshd, upstream, user_keys, tmp_path, legacy_home):
    """With the replica stopped, sshd still admits the key (the key file stays) and the shim answers the legacy upload with 503 and one line on stderr; nothing goes upstream."""
    project = make_legacy_project(tmp_path / "project", name="Openssh-No-Replica", version="1.0")
    command = " ".join(ssh_command(sshd, user_keys["alice"]))
    before = len(upstream.recordings())
    sshd["replica"].stop()
    try:
        result = run_legacy(project, ["sdist", "upload"], ssh_command=command, home=legacy_home,
                            env={"PYPISSH_HOST": "127.0.0.1"})
    finally:
        sshd["replica"].start(timeout=60)
    reason = "the upload service on this machine is not running; nothing was published; try again in a minute"
    assert result.returncode != 0
    assert f"Upload failed (503): {reason}" in result.stdout + result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("pypissh-gateway:")] == [
        f"pypissh-gateway: not published (503): {reason}"]
    assert [r for r in upstream.recordings()[before:] if r.method == "POST"] == []


def test_socket_refuses_a_user_other_than_shim_user(sshd, user_keys):
    """The shim run as another user (nobody, with submit's group so the socket's file mode lets it
    connect; started with setpriv) is refused by the replica's SO_PEERCRED check: one line, exit 1."""
    submit_gid = pwd.getpwnam("submit").pw_gid
    nobody = pwd.getpwnam("nobody")
    program = session_program(sshd["folder"])
    replica = sshd["replica"]
    refused_before = metric(replica.metrics(), "pypissh_shim_refused_total")
    result = subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={submit_gid}", "--clear-groups", str(program),
         "--config", str(replica.config), "stdio", "--account", "alice", "--fingerprint", user_keys["alice"].fingerprint],
        env={"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": "whoami"}, capture_output=True, text=True,
        timeout=60, cwd="/")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"pypissh-gateway: this socket serves sessions of user 'submit' only, and this "
                             f"process runs as uid {nobody.pw_uid}; sshd runs the forced command as 'submit' "
                             "(setting shim_user)\n")
    assert metric(replica.metrics(), "pypissh_shim_refused_total") == refused_before + 1


def test_a_user_the_socket_denies_is_told_permission_denied(sshd, user_keys, legacy_home, tmp_path):
    """The shim run as a user outside shim_user's group (nobody, its own group) cannot open the
    socket: the user reads that permission was denied, not that the service is not running."""
    nobody = pwd.getpwnam("nobody")
    program = session_program(sshd["folder"])
    socket_path = sshd["folder"] / "shim.sock"
    base = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", str(program),
            "--config", str(sshd["replica"].config), "stdio", "--account", "alice",
            "--fingerprint", user_keys["alice"].fingerprint]
    reason = (f"permission denied on the upload service's socket {socket_path}: this local user may not use "
              "it; nothing was published; log in as the user sshd runs the sessions as (setting shim_user)")
    command = subprocess.run(base, env={"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": "whoami"},
                             capture_output=True, text=True, timeout=60, cwd="/")
    assert (command.returncode, command.stdout) == (1, "")
    assert command.stderr == f"pypissh-gateway: {reason}\n"
    upload = subprocess.run(base, env={"PATH": os.environ["PATH"]}, input=LIST_CLASSIFIERS, capture_output=True,
                            timeout=60, cwd="/")
    assert upload.returncode == 1
    assert upload.stdout.startswith(f"HTTP/1.0 503 {reason}\r\n".encode())
    assert upload.stderr.decode() == f"pypissh-gateway: not published (503): {reason}\n"
    assert b"not running" not in upload.stdout + upload.stderr


def test_socket_file_is_the_replicas_and_shim_users_group_only(sshd):
    """shim_socket is a socket owned by the replica's user, of mode 0660, in the group of submit."""
    info = (sshd["folder"] / "shim.sock").stat()
    assert oct(info.st_mode & 0o777) == "0o660"
    assert (info.st_uid, grp.getgrgid(info.st_gid).gr_gid) == (os.geteuid(), pwd.getpwnam("submit").pw_gid)


# -- the command's output, directly -----------------------------------------------------------
@pytest.fixture
def key_file(settings, gateway, user_keys, tmp_path):
    """Settings of the OpenSSH mode whose key file the replica's writer has written for alice."""
    register_account(gateway, "alice", user_keys["alice"])
    keyed = settings.replace(openssh_mode=True, authorized_keys_file=str(tmp_path / "authorized_keys"),
                             shim_python="/opt/pypissh/bin/python")
    KeyFileWriter(keyed, gateway.registry).update()
    return keyed


def test_line_for_an_active_key(key_file, user_keys):
    """An active key of ssh_user gets the key file's line: restrict, and the shim as its account."""
    key = parse_public_key(user_keys["alice"].public_line)
    kind, blob = key.openssh.split()
    (line,) = lines_for_key(key_file.authorized_keys_file, "submit", "submit", blob, kind)
    assert line == authorized_keys_line(shim_command(key_file, "alice", key.fingerprint), key.openssh)
    assert line.startswith('restrict,command="/opt/pypissh/bin/python -I -S ')
    assert f"--account alice --fingerprint {key.fingerprint} " in line


def test_no_line_for_other_users_unknown_revoked_or_disabled(key_file, gateway, user_keys):
    """Nothing for another user, an unknown key, a type mismatch, a disabled account or a revoked key."""
    key = parse_public_key(user_keys["alice"].public_line)
    kind, blob = key.openssh.split()
    path = key_file.authorized_keys_file

    def lines(user: str, key_blob: str, key_type: str) -> list[str]:
        KeyFileWriter(key_file, gateway.registry).update()
        return lines_for_key(path, user, "submit", key_blob, key_type)

    assert lines("root", blob, kind) == []
    mallory = parse_public_key(user_keys["mallory"].public_line).openssh.split()[1]
    assert lines("submit", mallory, kind) == []
    assert lines("submit", blob, "ssh-rsa") == []
    assert lines("submit", "not base64!", kind) == []
    gateway.registry.accounts.update_account("alice", disabled=True)
    assert lines("submit", blob, kind) == []
    gateway.registry.accounts.update_account("alice", disabled=False)
    assert len(lines("submit", blob, kind)) == 1
    gateway.registry.keys.revoke_key(key.fingerprint)
    assert lines("submit", blob, kind) == []


def test_forced_command_quoting(settings):
    """Paths with spaces are shell-quoted; a double quote cannot end the command= option."""
    quoted = settings.replace(shim_python='/opt/my "tools"/python', shim_socket="/run/a b/shim.sock")
    command = shim_command(quoted, "alice", "SHA256:abc")
    line = authorized_keys_line(command, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
    assert line.startswith('restrict,command="\'/opt/my \\"tools\\"/python\' -I -S ')
    assert "--socket '/run/a b/shim.sock' --account alice" in line


def test_cli_prints_the_line(key_file, user_keys):
    """`pypissh-gateway authorized-keys-command %u %k %t` prints the key file's line for the key."""
    key = parse_public_key(user_keys["alice"].public_line)
    kind, blob = key.openssh.split()
    runner = CliRunner()
    args = ["--set", "openssh_mode=true", "--set", f"authorized_keys_file={key_file.authorized_keys_file}",
            "authorized-keys-command"]
    result = runner.invoke(cli, [*args, "submit", blob, kind])
    assert result.exit_code == 0, result.output
    (line,) = lines_for_key(key_file.authorized_keys_file, "submit", "submit", blob, kind)
    assert result.output == line + "\n"
    other = runner.invoke(cli, [*args, "nobody", blob, kind])
    assert other.exit_code == 0 and other.output == ""


def test_installed_program_prints_what_the_cli_prints(key_file, user_keys):
    """The console script's fast path prints byte for byte what the click command prints."""
    kind, blob = parse_public_key(user_keys["alice"].public_line).openssh.split()
    args = ["--set", "openssh_mode=true", "--set", f"authorized_keys_file={key_file.authorized_keys_file}",
            "authorized-keys-command", "submit", blob, kind]
    fast = subprocess.run([str(PROGRAM), *args], capture_output=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PYPISSH_")})
    assert fast.returncode == 0, fast.stderr
    assert fast.stdout.decode() == CliRunner().invoke(cli, args).output
    assert fast.stdout.count(b"\n") == 1


def test_a_missing_key_file_refuses_the_key_in_one_line(user_keys, tmp_path):
    """No key file (the replica never wrote it): one line for sshd's log naming the cause, exit 1."""
    kind, blob = parse_public_key(user_keys["alice"].public_line).openssh.split()
    missing = tmp_path / "authorized_keys"
    result = subprocess.run(
        [str(PROGRAM), "--set", f"authorized_keys_file={missing}", "authorized-keys-command", "submit", blob, kind],
        capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"pypissh-gateway: cannot read authorized_keys_file {missing}: No such file or "
                             "directory; key refused\n")


# -- settings of the set-ups that were removed -------------------------------------------------

@pytest.mark.parametrize("where", ["file", "environment", "flag"])
def test_stdio_in_process_is_refused_with_what_to_do(tmp_path, where):
    """`stdio_in_process` no longer exists: `stdio` (the light settings reader) and `check` (the
    full one, as `serve`) refuse it in one line, wherever it is set, rather than ignore it."""
    config = tmp_path / "config.toml"
    config.write_text("stdio_in_process = true\n" if where == "file" else "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPISSH_")}
    if where == "environment":
        env["PYPISSH_STDIO_IN_PROCESS"] = "true"
    flag = ["--set", "stdio_in_process=true"] if where == "flag" else []
    for command in (["stdio", "--account", "alice"], ["check", "--show"]):
        done = subprocess.run([str(PROGRAM), "--config", str(config), *flag, *command], capture_output=True,
                              text=True, timeout=60, env=env, input="")
        assert done.returncode != 0 and done.stdout == "", (command, done.stdout)
        (line,) = done.stderr.splitlines()
        assert "setting 'stdio_in_process'" in line and "no longer exists" in line, line
        assert "authorized_keys_file" in line and "remove it" in line
