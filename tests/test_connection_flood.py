"""One tenant cannot starve the rest of a replica's file descriptors: a thousand logins with one key
against a `pypissh-gateway serve` process whose file-descriptor limit is 512, while another account
logs in and uploads with the real ssh client and distutils. And when the process does run out of
descriptors, accept backs off and says so once per interval, not once per try."""

from __future__ import annotations

import re
import resource
import socket
import time

import pytest

from gateway.ssh.listener import ACCEPT_LOG_INTERVAL, AcceptBackoff
from testbed.gatewayprocess import GatewayProcess
from testbed.sshflood import LoginFlood
from tests.conftest import SshClient
from tests.helpers import serve_process, wait_until

FLOOD = 1000
SOURCES = [f"127.0.2.{index}" for index in range(1, 101)]  # past the per-address limits before login


def _file_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@pytest.fixture
def raised_own_limit():
    """This test process holds the flood's client sockets: give it room for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * FLOOD))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _gateway(tmp_path, upstream, host_key_dir, user_keys, *, file_limit: int, **changes) -> GatewayProcess:
    keys = {name: user_keys[name] for name in ("alice", "bob")}
    return serve_process(tmp_path, upstream, host_key_dir, keys, preexec=_file_limit(file_limit), **changes)


def _client(process: GatewayProcess, key, tmp_path) -> SshClient:
    known = tmp_path / "known_hosts"
    known.write_text(process.known_hosts_line())
    return SshClient(process, key, known)  # type: ignore[arg-type]


def test_a_thousand_logins_of_one_key_do_not_lock_out_another_account(
        tmp_path, upstream, host_key_dir, user_keys, legacy_project, legacy_home, project_name, raised_own_limit):
    """1,000 logins with alice's key, file-descriptor limit 512: alice holds at most her cap, each refusal
    names her account, bob logs in and uploads with the real ssh client, and the log has no flood of
    'Too many open files'."""
    # A login deadline far beyond any handshake on a busy machine: what is counted is the cap.
    process = _gateway(tmp_path, upstream, host_key_dir, user_keys, file_limit=512, login_timeout=120.0)
    flood = LoginFlood(process.port, user_keys["alice"].path, sources=SOURCES)
    try:
        started = time.monotonic()
        outcome = flood.open(FLOOD)
        cap = process.settings.max_connections_per_account
        assert outcome.held <= cap, outcome
        assert sum(outcome.refused.values()) + sum(outcome.failed.values()) == FLOOD - outcome.held
        reasons = [reason for reason in outcome.refused if "account 'alice' already has" in reason]
        assert reasons and sum(outcome.refused[r] for r in reasons) >= FLOOD - cap - sum(outcome.failed.values()), outcome
        assert f"account 'alice' already has {cap} connections logged in to this gateway" in reasons[0]

        result = _client(process, user_keys["bob"], tmp_path).legacy(legacy_project(), "sdist", "upload",
                                                                      home=legacy_home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Server response (200)" in result.stdout
        assert project_name.lower().replace("-", "_") + "-1.0.tar.gz" in upstream.files()
        assert flood.still_open() == outcome.held  # the flood is still held while bob uploads
        elapsed = time.monotonic() - started
    finally:
        flood.close()
        process.stop()
    emfile_lines = [line for line in process.log().splitlines() if "Too many open files" in line]
    assert len(emfile_lines) <= 1 + elapsed / ACCEPT_LOG_INTERVAL, emfile_lines


def test_out_of_descriptors_accept_backs_off_and_logs_once_per_interval(tmp_path, upstream, host_key_dir,
                                                                        user_keys):
    """With every descriptor taken by idle connections, failed accepts are logged once per interval with
    their count, and a login works again once the connections go."""
    process = _gateway(tmp_path, upstream, host_key_dir, user_keys, file_limit=64, max_startups=500,
                       max_startups_per_source=0, login_timeout=120.0)
    held: list[socket.socket] = []
    try:
        started = time.monotonic()
        for index in range(150):
            sock = socket.socket()
            sock.bind((f"127.0.3.{index % 200 + 1}", 0))
            sock.connect(("127.0.0.1", process.port))  # completes in the kernel's backlog
            held.append(sock)
        wait_until(lambda: "Too many open files" in process.log(), what="the gateway to run out of descriptors")
        lines = [line for line in process.log().splitlines() if "accept failed" in line]
        elapsed = time.monotonic() - started
        assert 1 <= len(lines) <= 1 + elapsed / ACCEPT_LOG_INTERVAL, lines
        assert re.search(r"\(\d+ failed accepts since the last such line\)", lines[0])
    finally:
        for sock in held:
            sock.close()
    try:
        result = _client(process, user_keys["bob"], tmp_path).run("whoami")
        assert result.returncode == 0, result.stderr
    finally:
        process.stop()


def test_accept_backoff_grows_and_logs_once_per_interval():
    """Failed accepts pause longer each time (to a bound) and are logged once per interval; success resets."""
    now = [0.0]
    backoff = AcceptBackoff(clock=lambda: now[0], interval=10.0)
    pauses, told = zip(*(backoff.failed() for _ in range(8)))
    assert list(pauses) == sorted(pauses) and pauses[-1] == 1.0 and pauses[0] < pauses[1]
    assert told == (True,) + (False,) * 7 and backoff.unlogged == 8
    backoff.logged()
    now[0] = 10.0
    assert backoff.failed()[1] is True and backoff.unlogged == 1
    backoff.succeeded()
    assert backoff.failed()[0] == pauses[0]
