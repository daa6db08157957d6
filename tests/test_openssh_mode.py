"""OpenSSH deployment mode: a real sshd whose AuthorizedKeysCommand is `pypissh-gateway
authorized-keys-command`, running `pypissh-gateway stdio` for each session, carries the legacy
distutils client's upload to the same upstream as the asyncssh server does."""

from __future__ import annotations

import hashlib
import os
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
from gateway.ssh.openssh import authorized_keys_line, forced_command, lines_for
from gateway.ssh.sshkeys import parse_public_key
from gateway.tokens import TokenBox
from testbed import postgres
from testbed.sample import make_legacy_project, run_legacy
from testbed.scaleout import free_port, toml_value
from testbed.sshdutil import ensure_submit_user, remove_wrapper, root_owned_wrapper, session_program
from tests.helpers import register_account, wait_until

SSHD = "/usr/sbin/sshd"
PROGRAM = Path(sys.prefix) / "bin" / "pypissh-gateway"
SECRET = "a test secret for the OpenSSH mode and long enough to derive a key"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "sshd must run as root"
    if not os.path.exists(SSHD):
        return "openssh-server is not installed (./dev test installs it)"
    if postgres.unavailable_reason() is not None:
        return "PostgreSQL is not running (the stdio sessions run as user submit and share it)"
    return None


SKIP = _skip_reason()


@pytest.fixture(scope="module")
def sshd(upstream, user_keys, host_key_dir):
    """sshd on a free port of 127.0.0.1 with its own config, and a registry where alice has a key."""
    if SKIP:
        pytest.skip(SKIP)
    ensure_submit_user()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    # Readable by user `submit`, who runs the forced command (pytest's own temp dirs are root-only).
    folder = Path(tempfile.mkdtemp(prefix="pypissh-openssh-"))
    folder.chmod(0o755)
    command = root_owned_wrapper(PROGRAM.resolve())
    try:
        yield from _run_sshd(folder, upstream, user_keys, host_key_dir, command)
    finally:
        remove_wrapper(command)
        shutil.rmtree(folder, ignore_errors=True)


def _run_sshd(folder: Path, upstream, user_keys, host_key_dir, command: Path):
    with postgres.temporary_database("pypissh_test") as url:
        upgrade(url)
        ca = folder / "upstream-ca.pem"
        shutil.copyfile(upstream.ca_file, ca)
        config = folder / "config.toml"
        config.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in dict(
            database_url=url, upstream_url=upstream.url, index_url=upstream.simple_url,
            upstream_ca_bundle=str(ca), secret_key=SECRET,
            host_key_dir=str(host_key_dir), public_host="127.0.0.1").items()))
        registry = Registry.from_url(url)
        registry.accounts.add_account("alice", email="alice@example.org")
        registry.accounts.add_key("alice", parse_public_key(user_keys["alice"].public_line))
        registry.accounts.set_token_ciphertext("alice", TokenBox.from_settings(Settings(secret_key=SECRET)).seal(upstream.token))
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")], check=True)
        port = free_port()
        sshd_config = folder / "sshd_config"
        sshd_config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
            "AuthorizedKeysFile none\n"
            f"AuthorizedKeysCommand {command} --config {config} authorized-keys-command "
            f"--command {session_program(folder)} %u %k %t\n"
            "AuthorizedKeysCommandUser root\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin no\nAllowUsers submit\nLogLevel VERBOSE\n")
        check = subprocess.run([SSHD, "-t", "-f", str(sshd_config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        log = open(folder / "sshd.log", "wb")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(sshd_config)], stdout=log, stderr=subprocess.STDOUT)
        known_hosts = folder / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} " + " ".join((folder / "host_key.pub").read_text().split()[:2]) + "\n")
        try:
            def listening() -> bool:
                assert proc.poll() is None, (folder / "sshd.log").read_text()
                return b"Server listening" in (folder / "sshd.log").read_bytes()

            wait_until(listening, what="sshd to listen")
            yield {"port": port, "registry": registry, "known_hosts": known_hosts, "folder": folder}
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
            registry.engine.dispose()


def ssh_command(sshd, key) -> list[str]:
    return ["ssh", "-p", str(sshd["port"]), "-i", str(key.path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={sshd['known_hosts']}",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]


def forwarded_form_names(upstream, before: int) -> list[str]:
    posts = [r for r in upstream.recordings()[before:] if r.method == "POST"]
    return [name for name, _value, _filename in posts[-1].form()]


def test_sshd_carries_the_legacy_upload(sshd, upstream, user_keys, tmp_path, alice, ssh_client, legacy_home):
    """sshd carries the legacy upload byte-identical, forwarding the same request as the asyncssh server."""
    project = make_legacy_project(tmp_path / "project", name="Openssh-Mode-Pkg", version="1.0")
    before = len(upstream.recordings())
    command = " ".join(ssh_command(sshd, user_keys["alice"]))
    result = run_legacy(project, ["sdist", "upload"], ssh_command=command, home=legacy_home,
                        env={"PYPISSH_HOST": "127.0.0.1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Server response (200): OK" in result.stdout
    assert "account 'alice'" in result.stderr
    (dist,) = (project / "dist").glob("*.tar.gz")
    assert upstream.files()["openssh_mode_pkg-1.0.tar.gz"] == hashlib.sha256(dist.read_bytes()).hexdigest()
    via_sshd = forwarded_form_names(upstream, before)
    (event,) = sshd["registry"].events.recorded(account_name="alice")
    assert (event.outcome, event.client_addr, event.key_fingerprint) == (
        "forwarded", "127.0.0.1", user_keys["alice"].fingerprint)

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


def test_unknown_key_is_refused_by_sshd(sshd, user_keys):
    """A key the registry does not know gets no authorized_keys line: sshd refuses the login."""
    result = subprocess.run([*ssh_command(sshd, user_keys["mallory"]), "-T", "-l", "submit", "127.0.0.1", "whoami"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


# -- the command's output, directly -----------------------------------------------------------
@pytest.fixture
def key_registry(gateway, user_keys):
    register_account(gateway, "alice", user_keys["alice"])
    return gateway.registry


def test_line_for_an_active_key(key_registry, user_keys):
    """An active key of ssh_user gets one restrict,command= line running stdio as its account."""
    key = parse_public_key(user_keys["alice"].public_line)
    kind, blob = key.openssh.split()
    (line,) = lines_for(key_registry, "submit", "submit", blob, kind, "/opt/pypissh/bin/pypissh-gateway",
                        ["--config", "/etc/pypissh/config.toml"])
    assert line == (
        'restrict,command="/opt/pypissh/bin/pypissh-gateway --config /etc/pypissh/config.toml stdio '
        f'--account alice --fingerprint {key.fingerprint}" {key.openssh}')


def test_no_line_for_other_users_unknown_revoked_or_disabled(key_registry, user_keys):
    """Nothing for another user, an unknown key, a type mismatch, a disabled account or a revoked key."""
    key = parse_public_key(user_keys["alice"].public_line)
    kind, blob = key.openssh.split()
    args = ("/bin/pypissh-gateway", [])
    assert lines_for(key_registry, "submit", "root", blob, kind, *args) == []
    mallory = parse_public_key(user_keys["mallory"].public_line).openssh.split()[1]
    assert lines_for(key_registry, "submit", "submit", mallory, kind, *args) == []
    assert lines_for(key_registry, "submit", "submit", blob, "ssh-rsa", *args) == []
    assert lines_for(key_registry, "submit", "submit", "not base64!", kind, *args) == []
    key_registry.accounts.update_account("alice", disabled=True)
    assert lines_for(key_registry, "submit", "submit", blob, kind, *args) == []
    key_registry.accounts.update_account("alice", disabled=False)
    key_registry.accounts.revoke_key(key.fingerprint)
    assert lines_for(key_registry, "submit", "submit", blob, kind, *args) == []


def test_forced_command_quoting():
    """Paths with spaces are shell-quoted; a double quote cannot end the command= option."""
    from gateway.registry import Identity

    identity = Identity(1, "alice", None, False, "SHA256:abc", None, None, None)
    command = forced_command('/opt/my "tools"/pypissh-gateway', ["--config", "/etc/a b.toml"], identity)
    line = authorized_keys_line(command, parse_public_key(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"))
    assert line.startswith('restrict,command="\'/opt/my \\"tools\\"/pypissh-gateway\' --config \'/etc/a b.toml\' stdio')


def test_cli_prints_the_line(settings, key_registry, user_keys):
    """`pypissh-gateway authorized-keys-command %u %k %t` prints the line, naming the config file."""
    key = parse_public_key(user_keys["alice"].public_line)
    kind, blob = key.openssh.split()
    runner = CliRunner()
    result = runner.invoke(cli, ["--set", f"database_url={settings.database_url}", "authorized-keys-command",
                                 "--command", "/usr/bin/pypissh-gateway", "submit", blob, kind])
    assert result.exit_code == 0, result.output
    assert result.output.startswith('restrict,command="/usr/bin/pypissh-gateway --set database_url=')
    assert f"stdio --account alice --fingerprint {key.fingerprint}\" {key.openssh}\n" in result.output
    other = runner.invoke(cli, ["--set", f"database_url={settings.database_url}", "authorized-keys-command",
                                "nobody", blob, kind])
    assert other.exit_code == 0 and other.output == ""


# -- stdio on its own -------------------------------------------------------------------------
LIST_CLASSIFIERS = b"GET /legacy/?:action=list_classifiers HTTP/1.0\r\nHost: gateway\r\n\r\n"


def stdio_process(settings, fingerprint: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "--set", f"database_url={settings.database_url}",
         "--set", f"secret_key_file={settings.secret_key_file}", "--set", "read_timeout=1",
         "stdio", "--account", "alice", "--fingerprint", fingerprint],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={k: v for k, v in {**os.environ, **env}.items() if not k.startswith("PYPISSH_")})


def test_stdio_answers_one_request_and_records_the_client(settings, key_registry, user_keys):
    """`stdio` answers the request on stdin and records the address from SSH_CONNECTION."""
    proc = stdio_process(settings, user_keys["alice"].fingerprint, SSH_CONNECTION="192.0.2.44 50000 127.0.0.1 22")
    out, err = proc.communicate(LIST_CLASSIFIERS, timeout=60)
    assert proc.returncode == 0, err
    assert out.startswith(b"HTTP/1.0 200 OK")
    (event,) = key_registry.events.recorded(account_name="alice")
    assert (event.outcome, event.client_addr) == ("local", "192.0.2.44")


def test_stdio_gives_up_on_a_silent_client_and_exits(settings, key_registry, user_keys):
    """A client that stops mid-request gets the timeout answer and the process exits, stdin still open."""
    proc = stdio_process(settings, user_keys["alice"].fingerprint)
    proc.stdin.write(b"POST /legacy/ HTTP/1.1\r\nHost: gateway\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
                     b"Content-Length: 100\r\n\r\n--xyz\r\n")
    proc.stdin.flush()
    try:
        status = proc.wait(timeout=30)
        out = proc.stdout.read()
    finally:
        proc.stdin.close()
        proc.kill()
    assert status == 1
    assert out.startswith(b"HTTP/1.0 408")


def test_stdio_refuses_a_revoked_key(settings, key_registry, user_keys):
    """A key revoked after sshd let it in is refused by stdio with a sentence naming the account."""
    key_registry.accounts.revoke_key(user_keys["alice"].fingerprint)
    proc = stdio_process(settings, user_keys["alice"].fingerprint, SSH_ORIGINAL_COMMAND="whoami")
    out, err = proc.communicate(b"", timeout=60)
    assert proc.returncode == 1 and out == b""
    assert b"no longer active for account 'alice'" in err
