"""The OpenSSH mode's shim and the replica's socket, without sshd: `pypissh-gateway stdio` (the
installed program, on its fast path) against a replica serving `shim_socket`, and the socket's
own rules (peer credentials, the protocol version, a stale or live socket file)."""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.ops.logformat import record_fields
from gateway.ssh import shimwire
from gateway.ssh.shimserver import bind_shim_socket
from testbed.legacyrequests import make_sdist, python3_upload
from testbed.scaleout import Replica
from tests.helpers import answers_a_stalled_request, recorded_events, register_account

PROGRAM = Path(sys.prefix) / "bin" / "pypissh-gateway"
LIST_CLASSIFIERS = b"GET /legacy/?:action=list_classifiers HTTP/1.0\r\nHost: gateway\r\n\r\n"
NOT_RUNNING = "the upload service on this machine is not running; nothing was published; try again in a minute"
ME = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def socket_dir():
    """A short directory for UNIX sockets (their paths are limited to 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="shim-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def replica(start_gateway, make_settings, socket_dir):
    """A replica serving the OpenSSH mode's socket for this test's own user."""
    return start_gateway(make_settings(openssh_mode=True, shim_socket=str(socket_dir / "shim.sock"), shim_user=ME,
                                       authorized_keys_file=str(socket_dir / "authorized_keys"),
                                       read_timeout=1.0))


def shim(replica_settings, fingerprint: str, *, stdin: bytes = b"", extra: tuple[str, ...] = (),
         **env: str) -> subprocess.CompletedProcess:
    """`pypissh-gateway stdio` as sshd runs it for a key of alice."""
    return subprocess.run(
        [str(PROGRAM), "--set", f"shim_socket={replica_settings.shim_socket}", *extra,
         "stdio", "--account", "alice", "--fingerprint", fingerprint],
        input=stdin, capture_output=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("PYPISSH_", "SSH_"))}, **env})


def test_shim_answers_one_request_through_the_replica(replica, user_key):
    """The request on the shim's stdin is answered by the replica, which records the client's
    address from SSH_CONNECTION."""
    register_account(replica, "alice", user_key)
    result = shim(replica.settings, user_key.fingerprint, stdin=LIST_CLASSIFIERS,
                  SSH_CONNECTION="192.0.2.44 50000 127.0.0.1 22")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.0 200 OK")
    assert b"account 'alice'" in result.stderr
    (event,) = recorded_events(replica.registry, account_name="alice")
    assert (event.outcome, event.client_addr, event.replica) == ("local", "192.0.2.44", replica.services.replica)


def test_a_shim_session_is_one_line_in_the_replicas_log(replica, user_key, caplog):
    """A session handed over by the shim is one 'session ended' line, with the client's address
    from SSH_CONNECTION, the key and the command; a key revoked meanwhile is a refused login."""
    register_account(replica, "alice", user_key)
    with caplog.at_level(logging.INFO, logger="gateway"):
        done = shim(replica.settings, user_key.fingerprint, SSH_ORIGINAL_COMMAND="whoami",
                    SSH_CONNECTION="192.0.2.44 50000 127.0.0.1 22")
        assert done.returncode == 0, done.stderr
        replica.registry.keys.revoke_key(user_key.fingerprint)
        replica.services.keys.refresh([user_key.fingerprint])
        assert shim(replica.settings, user_key.fingerprint, SSH_ORIGINAL_COMMAND="whoami").returncode == 1
    (line,) = [r for r in caplog.records if r.name == "gateway.sessions"]
    assert line.getMessage() == "session ended"
    logged = record_fields(line)
    assert (logged["client_addr"], logged["account_name"], logged["key_fingerprint"], logged["command"],
            logged["outcome"]) == ("192.0.2.44", "alice", user_key.fingerprint, "whoami", "command")
    (refused,) = [r for r in caplog.records if r.name == "gateway.logins"]
    assert refused.getMessage() == "login refused"
    assert (record_fields(refused)["username"], record_fields(refused)["reason"]) == (ME, "key_not_active")


def test_shim_carries_an_upload_of_many_frames_intact(replica, user_key, upstream, project_name):
    """A 3 MiB upload (dozens of stdin frames) reaches the upstream byte for byte."""
    register_account(replica, "alice", user_key, token=upstream.token)
    sdist = make_sdist(project_name, "1.0", pad=os.urandom(3 * 1024 * 1024))
    result = shim(replica.settings, user_key.fingerprint, stdin=python3_upload(project_name, "1.0", sdist))
    assert result.stdout.startswith(b"HTTP/1.0 200"), result.stdout[:200] + result.stderr[-300:]
    expected = f"{project_name.lower().replace('-', '_')}-1.0.tar.gz"
    assert upstream.files()[expected] == hashlib.sha256(sdist).hexdigest()


def test_shim_runs_the_command_in_ssh_original_command(replica, user_key):
    """SSH_ORIGINAL_COMMAND=whoami is answered by the replica like the asyncssh server's `whoami`."""
    register_account(replica, "alice", user_key, email="alice@example.org")
    result = shim(replica.settings, user_key.fingerprint, SSH_ORIGINAL_COMMAND="whoami")
    assert result.returncode == 0, result.stderr
    assert b"account:  alice\nemail:    alice@example.org\n" in result.stdout


def test_a_shim_naming_no_key_runs_as_the_accounts_active_key(replica, user_key):
    """`stdio --account NAME` without --fingerprint (a forced command written by hand) runs as the
    account's active key; an account without one is refused in one line."""
    register_account(replica, "alice", user_key)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYPISSH_", "SSH_"))}

    def run(account: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(PROGRAM), "--set", f"shim_socket={replica.settings.shim_socket}", "stdio",
                               "--account", account], capture_output=True, timeout=60,
                              env={**env, "SSH_ORIGINAL_COMMAND": "whoami"})

    known = run("alice")
    assert known.returncode == 0, known.stderr
    assert b"account:  alice" in known.stdout and user_key.fingerprint.encode() in known.stdout
    unknown = run("nobody")
    assert (unknown.returncode, unknown.stdout) == (1, b"")
    assert b"is no longer active for account 'nobody'" in unknown.stderr


def test_shim_exits_when_the_replica_gives_up_on_a_silent_client(replica, user_key):
    """A client that stops mid-request gets the replica's 408 and the shim exits, stdin still open."""
    register_account(replica, "alice", user_key)
    proc = subprocess.Popen(
        [str(PROGRAM), "--set", f"shim_socket={replica.settings.shim_socket}", "stdio", "--account", "alice",
         "--fingerprint", user_key.fingerprint], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    status, out = answers_a_stalled_request(proc)
    assert status == 1
    assert out.startswith(b"HTTP/1.0 408")


def test_replica_refuses_a_key_revoked_since_sshd_admitted_it(replica, user_key):
    """The replica looks the key up again: a revoked key gets one sentence naming the account, exit 1."""
    register_account(replica, "alice", user_key)
    replica.registry.keys.revoke_key(user_key.fingerprint)
    result = shim(replica.settings, user_key.fingerprint, SSH_ORIGINAL_COMMAND="whoami")
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.decode() == (f"pypissh-gateway: key {user_key.fingerprint} is no longer active for account "
                                      "'alice' (revoked, or the account is disabled); nothing was published; ask "
                                      "the index admins\n")


def test_no_replica_answers_a_legacy_request_with_503(socket_dir, user_key):
    """No replica: the request is taken in and answered 503, with one line on stderr, exit 1."""
    result = subprocess.run(
        [str(PROGRAM), "--set", f"shim_socket={socket_dir / 'none.sock'}", "stdio", "--account", "alice",
         "--fingerprint", user_key.fingerprint], input=python3_upload("pkg", "1.0", b"x" * 200_000),
        capture_output=True, timeout=60)
    assert result.returncode == 1
    body = (NOT_RUNNING + "\n").encode()
    assert result.stdout == (f"HTTP/1.0 503 {NOT_RUNNING}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    assert result.stderr.decode() == f"pypissh-gateway: not published (503): {NOT_RUNNING}\n"


def test_no_replica_gives_a_command_one_line(socket_dir, user_key):
    """No replica and a command (whoami): one line on stderr, nothing on stdout, exit 1."""
    result = subprocess.run(
        [str(PROGRAM), "--set", f"shim_socket={socket_dir / 'none.sock'}", "stdio", "--account", "alice",
         "--fingerprint", user_key.fingerprint], capture_output=True, timeout=60,
        env={**os.environ, "SSH_ORIGINAL_COMMAND": "whoami"})
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.decode() == f"pypissh-gateway: {NOT_RUNNING}\n"


def _exchange(path: str, first_frame: bytes) -> list[tuple[bytes, bytes]]:
    """Send one frame to the socket at `path` and read every frame until it closes."""
    frames = shimwire.FrameBuffer()
    out: list[tuple[bytes, bytes]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(first_frame)
        while data := sock.recv(65536):
            out += frames.feed(data)
    return out


def test_socket_refuses_a_session_from_a_user_other_than_shim_user(start_gateway, make_settings, socket_dir):
    """With shim_user = submit, a session from this process (another uid, by SO_PEERCRED) gets one
    line and exit status 1, and the replica never runs it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a user submit must exist, and this process must not be it")
    from testbed.sshdutil import ensure_submit_user

    ensure_submit_user()
    harness = start_gateway(make_settings(openssh_mode=True, shim_socket=str(socket_dir / "shim.sock"),
                                          shim_user="submit", authorized_keys_file=str(socket_dir / "keys")))
    header = shimwire.SessionHeader("alice", "", "whoami", "").encode()
    frames = _exchange(harness.settings.shim_socket, shimwire.frame(shimwire.SESSION, header))
    assert frames == [(shimwire.STDERR, (
        "pypissh-gateway: this socket serves sessions of user 'submit' only, and this process runs as uid 0; "
        "sshd runs the forced command as 'submit' (setting shim_user)\n").encode()), (shimwire.EXIT, b"1")]


def test_socket_refuses_a_shim_of_another_protocol_version(replica):
    """A shim speaking another version of the wire (an upgrade in progress) is told so, exit 1."""
    frames = _exchange(replica.settings.shim_socket, shimwire.frame(shimwire.SESSION, b"0\0alice\0\0whoami\0"))
    assert frames == [(shimwire.STDERR, b"pypissh-gateway: the upload service on this machine is being upgraded; "
                                        b"nothing was published; try again in a minute\n"), (shimwire.EXIT, b"1")]


def test_a_stale_socket_file_is_replaced_and_a_live_one_is_not(make_settings, socket_dir):
    """A socket file left by a killed replica is taken over; one a running replica serves is refused."""
    settings = make_settings(shim_socket=str(socket_dir / "shim.sock"), shim_user=ME)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(settings.shim_socket)
    stale.close()  # the file stays, nobody listens
    live = bind_shim_socket(settings)
    try:
        assert oct(os.stat(settings.shim_socket).st_mode & 0o777) == "0o600"
        with pytest.raises(ConfigError, match="another replica already serves shim_socket"):
            bind_shim_socket(settings)
    finally:
        live.close()


def test_workers_share_the_supervisors_socket_and_it_goes_with_it(socket_dir, upstream, host_key_dir, user_key,
                                                                  tmp_path):
    """`serve --workers 2` in the OpenSSH mode: the workers serve the socket the supervisor bound,
    and SIGTERM removes the socket file."""
    from gateway.registry import Registry
    from gateway.registry.migrate_db import upgrade
    from gateway.tokens import create_key_file

    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    registry = Registry.from_url(url)
    registry.accounts.add_account("alice")
    from gateway.sshkeys import parse_public_key

    registry.keys.add_key("alice", parse_public_key(user_key.public_line))
    registry.close()
    create_key_file(tmp_path / "secret.key")
    path = socket_dir / "shim.sock"
    replica = Replica(tmp_path / "replica", dict(
        database_url=url, upstream_url=upstream.url, upstream_ca_bundle=str(upstream.ca_file),
        host_key_dir=str(host_key_dir), secret_key_file=str(tmp_path / "secret.key"),
        openssh_mode=True, shim_socket=str(path), shim_user=ME,
        authorized_keys_file=str(tmp_path / "authorized_keys")), extra_args=["--workers", "2"])
    replica.start(timeout=60)
    try:
        answers = [subprocess.run(
            [str(PROGRAM), "--set", f"shim_socket={path}", "stdio", "--account", "alice",
             "--fingerprint", user_key.fingerprint], capture_output=True, timeout=60,
            env={**os.environ, "SSH_ORIGINAL_COMMAND": "whoami"}) for _ in range(4)]
        assert [a.returncode for a in answers] == [0, 0, 0, 0], answers[0].stderr
        assert all(b"account:  alice" in a.stdout for a in answers)
    finally:
        replica.signal(signal.SIGTERM)
        replica.wait(60)
    assert not path.exists()
