"""`serve --workers N`: worker processes sharing the port, restarted when they die, metrics added
up across them, and a SIGTERM that stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.settings import Settings
from gateway.sshkeys import parse_public_key
from gateway.tokens import TokenBox
from testbed import legacyrequests as lr
from testbed.knownhosts import known_hosts_lines
from testbed.scaleout import Replica, metric
from tests.helpers import wait_until

SECRET = "a test secret for the supervised workers of this machine"


def children(pid: int) -> set[int]:
    """The child processes of `pid`, from each of its threads' /proc entry."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except FileNotFoundError:  # the thread ended between the listing and the read
            continue
    return found


@pytest.fixture
def start_supervised(tmp_path, upstream, host_key_dir, user_keys):
    """Start `serve --workers 2` (with extra settings) for alice; return it and its known_hosts."""
    started = []

    def _start(**changes):
        url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        upgrade(url)
        registry = Registry.from_url(url)
        registry.accounts.add_account("alice")
        registry.keys.add_key("alice", parse_public_key(user_keys["alice"].public_line))
        registry.accounts.set_token_ciphertext("alice", TokenBox.from_settings(Settings(secret_key=SECRET)).seal(upstream.token))
        registry.engine.dispose()
        replica = Replica(tmp_path, dict(database_url=url, upstream_url=upstream.url,
                                         upstream_ca_bundle=str(upstream.ca_file), host_key_dir=str(host_key_dir),
                                         secret_key=SECRET, drain_seconds=10.0, **changes),
                          extra_args=["--workers", "2"]).start()
        started.append(replica)
        known = tmp_path / "known_hosts"
        known.write_text(known_hosts_lines(host_key_dir, replica.ssh_port))
        return replica, known

    yield _start
    for replica in started:
        replica.stop()


@pytest.fixture
def supervised(start_supervised):
    return start_supervised()


def whoami(replica: Replica, known: Path, key) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-p", str(replica.ssh_port), "-i", str(key.path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}", "-o", "LogLevel=ERROR",
         "-T", "-l", "submit", "127.0.0.1", "whoami"], capture_output=True, text=True, timeout=60)


def listening(replica: Replica) -> float:
    return metric(replica.metrics(), "pypissh_listening_processes")


def test_workers_share_the_port_and_are_restarted(supervised, user_keys):
    """Two workers serve one port; a SIGKILLed worker is replaced; metrics add up over workers."""
    replica, known = supervised
    wait_until(lambda: listening(replica) == 2, what="both workers to listen", timeout=30)
    workers = children(replica.pid)
    assert len(workers) == 2
    for _ in range(4):
        result = whoami(replica, known, user_keys["alice"])
        assert result.returncode == 0 and "account:  alice" in result.stdout, result.stderr
    assert 'pypissh_sessions_total{outcome="command"} 4.0' in replica.metrics()

    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(lambda: (children(replica.pid) - workers) or None, what="a replacement worker", timeout=30)
    assert victim not in children(replica.pid) and len(replaced) == 1
    wait_until(lambda: listening(replica) == 2, what="the replacement to listen", timeout=30)
    assert whoami(replica, known, user_keys["alice"]).returncode == 0
    # The dead worker's counts stay in the sum.
    assert 'pypissh_sessions_total{outcome="command"} 5.0' in replica.metrics()


def test_sigterm_stops_every_worker(supervised):
    """SIGTERM to the supervisor: readiness fails, every worker drains and exits, then it exits 0."""
    replica, _known = supervised
    wait_until(lambda: listening(replica) == 2, what="both workers to listen", timeout=30)
    workers = children(replica.pid)
    replica.signal(signal.SIGTERM)
    assert replica.wait(30) == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "workers outlived the supervisor"


def test_a_saturated_worker_fails_the_machines_readiness(start_supervised, user_keys, upstream, project_name):
    """A worker whose upload pool is full makes the supervisor's /readyz answer 503 naming the pool."""
    replica, known = start_supervised(upload_threads=1, upload_queue=0, read_timeout=60.0)
    upstream.set_fault(delay=8, count=1)  # the one upload thread waits on the upload server
    argv = ["ssh", "-p", str(replica.ssh_port), "-i", str(user_keys["alice"].path), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}", "-o", "LogLevel=ERROR",
            "-T", "-l", "submit", "127.0.0.1"]
    upload = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        upload.stdin.write(lr.python3_upload(project_name, "1.0", lr.make_sdist(project_name, "1.0")))
        upload.stdin.flush()
        status, reason = wait_until(lambda: (answer := replica.readiness()) and answer[0] == 503 and answer,
                                    what="the supervisor to report saturation", timeout=30)
        assert reason.strip() == "saturated: a worker's upload pool is saturated"
        out, _ = upload.communicate(timeout=60)
        assert out.startswith(b"HTTP/1.0 200 ")
        wait_until(replica.ready, what="readiness once the upload is done", timeout=30)
    finally:
        if upload.poll() is None:
            upload.kill()
            upload.wait()
