"""Three replicas behind the real HAProxy, sharing host keys and one PostgreSQL database: uploads
through the balancer, the real client address in events, revocation within the cache bound, and
what users see when a replica is killed, drained, or the database restarts."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.settings import Settings
from gateway.sshkeys import parse_public_key
from gateway.tokens import TokenBox
from testbed import pgserver, postgres
from testbed.knownhosts import known_hosts_lines
from testbed.sample import make_legacy_project, run_legacy, write_pypirc
from testbed.scaleout import Balancer, Replica, metric
from tests.helpers import recorded_events, wait_until

pytestmark = [
    pytest.mark.skipif(postgres.unavailable_reason() is not None, reason="PostgreSQL is not running"),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (./dev test installs it)"),
    pytest.mark.timeout(180),
]

CLIENT_ADDR = "127.0.0.2"  # differs from HAProxy's own 127.0.0.1, so the PROXY header must carry it
KEY_CACHE_SECONDS = 1.0
SECRET = "a test secret shared by the scale-out replicas and this test"


@dataclass
class Cluster:
    replicas: list[Replica]
    balancer: Balancer
    registry: Registry
    known_hosts: Path
    home: Path
    workdir: Path

    def by_pid(self, pid: int) -> Replica:
        return next(r for r in self.replicas if r.pid == pid)

    def connections(self) -> float:
        """Connections accepted so far by the running replicas."""
        return sum(metric(r.metrics(), "pypissh_connections_total") for r in self.replicas if r.running)

    def in_flight(self) -> dict[int, float]:
        return {i: metric(r.metrics(), "pypissh_connections_in_flight")
                for i, r in enumerate(self.replicas) if r.running}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, upstream, host_key_dir, user_keys):
    workdir = tmp_path_factory.mktemp("scaleout")
    with postgres.temporary_database("pypissh_test") as url:
        upgrade(url)
        registry = Registry.from_url(url)
        registry.accounts.add_account("alice", email="alice@example.org")
        registry.keys.add_key("alice", parse_public_key(user_keys["alice"].public_line))
        registry.accounts.set_token_ciphertext("alice", TokenBox.from_settings(Settings(secret_key=SECRET)).seal(upstream.token))
        settings = dict(
            database_url=url, upstream_url=upstream.url, index_url=upstream.simple_url,
            upstream_ca_bundle=str(upstream.ca_file),
            host_key_dir=str(host_key_dir), secret_key=SECRET, key_cache_seconds=KEY_CACHE_SECONDS,
            proxy_protocol="use", proxy_allowed=["127.0.0.1/32"], drain_seconds=30.0, read_timeout=10.0,
            public_host="127.0.0.1")
        replicas = [Replica(workdir, settings, name=f"gw{i + 1}") for i in range(3)]
        for replica in replicas:
            replica.launch()
        balancer = None
        try:
            for replica in replicas:
                replica.wait_ready()
            balancer = Balancer(workdir, replicas).start()
            ports = [balancer.port] + [r.ssh_port for r in replicas]
            known_hosts = workdir / "known_hosts"
            known_hosts.write_text("".join(known_hosts_lines(host_key_dir, port) for port in ports))
            home = workdir / "home"
            write_pypirc(home, username="alice", password="old-password")
            yield Cluster(replicas, balancer, registry, known_hosts, home, workdir)
        finally:
            upstream.clear_fault()
            if balancer is not None:
                balancer.stop()
            for replica in replicas:
                replica.stop()
            registry.engine.dispose()


@pytest.fixture(autouse=True)
def _all_replicas_running(request):
    """Each test starts with three replicas: one stopped or killed by an earlier test is restarted."""
    if "cluster" in request.fixturenames:
        for replica in request.getfixturevalue("cluster").replicas:
            if not replica.running:
                replica.start()
    yield


def ssh_argv(cluster: Cluster, key, port: int, *, source: str | None = CLIENT_ADDR) -> list[str]:
    argv = ["ssh", "-p", str(port), "-i", str(key.path), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={cluster.known_hosts}",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]
    return argv + (["-b", source] if source else [])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Upload:
    name: str
    project: Path
    result: subprocess.CompletedProcess | None = None

    @property
    def dist(self) -> Path:
        (dist,) = (self.project / "dist").glob("*.tar.gz")
        return dist

    @property
    def upstream_name(self) -> str:
        return self.name.lower().replace("-", "_") + "-1.0.tar.gz"

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr if self.result else ""


def new_upload(cluster: Cluster, name: str, size: int = 0) -> Upload:
    """A legacy project; with `size`, carrying that many random (incompressible) bytes."""
    extra = {"MANIFEST.in": "include blob.bin\n", "blob.bin": os.urandom(size)} if size else None
    project = make_legacy_project(cluster.workdir / name, name=name, extra_files=extra)
    return Upload(name, project)


def run_upload(cluster: Cluster, upload: Upload, key, port: int | None = None) -> Upload:
    """`setup.py sdist upload` through the pypissh client, via the balancer unless `port` says otherwise."""
    shutil.rmtree(upload.project / "dist", ignore_errors=True)
    command = " ".join(ssh_argv(cluster, key, port or cluster.balancer.port))
    upload.result = run_legacy(upload.project, ["sdist", "upload"], ssh_command=command, home=cluster.home,
                               env={"PYPISSH_HOST": "127.0.0.1"}, timeout=120)
    return upload


def run_concurrently(cluster: Cluster, uploads: list[Upload], key) -> list[threading.Thread]:
    threads = [threading.Thread(target=run_upload, args=(cluster, u, key)) for u in uploads]
    for thread in threads:
        thread.start()
    return threads


def events_for(cluster: Cluster, project: str):
    return [e for e in recorded_events(cluster.registry, account_name="alice") if e.project and e.project == project.lower()]


def test_uploads_through_the_balancer_land_with_the_real_client_address(cluster, upstream, user_keys):
    """Concurrent uploads through HAProxy land intact on several replicas; events carry 127.0.0.2."""
    uploads = [new_upload(cluster, f"Spread-{i}") for i in range(3)]
    for thread in run_concurrently(cluster, uploads, user_keys["alice"]):
        thread.join()
    files = upstream.files()
    replicas = set()
    for upload in uploads:
        assert upload.result.returncode == 0, upload.output
        assert files[upload.upstream_name] == sha256(upload.dist)
        (event,) = events_for(cluster, upload.name)
        assert event.outcome == "forwarded"
        assert event.client_addr == CLIENT_ADDR
        replicas.add(event.replica)
    assert len(replicas) >= 2, "leastconn should spread concurrent uploads over the replicas"


def test_revoked_key_is_refused_by_every_replica_within_the_cache_bound(cluster, user_keys):
    """After `key_cache_seconds`, no replica accepts a revoked key, though each had it cached."""
    bob = user_keys["bob"]
    cluster.registry.accounts.add_account("bob")
    cluster.registry.keys.add_key("bob", parse_public_key(bob.public_line))
    for replica in cluster.replicas:  # each replica caches bob's identity
        warm = subprocess.run([*ssh_argv(cluster, bob, replica.ssh_port, source=None), "-T", "-l", "submit",
                               "127.0.0.1", "whoami"], capture_output=True, text=True, timeout=30)
        assert warm.returncode == 0 and "account:  bob" in warm.stdout, warm.stderr
    cluster.registry.keys.revoke_key(bob.fingerprint)
    revoked_at = time.monotonic()
    time.sleep(max(0.0, revoked_at + KEY_CACHE_SECONDS + 0.1 - time.monotonic()))
    for replica in cluster.replicas:
        refused = subprocess.run([*ssh_argv(cluster, bob, replica.ssh_port, source=None), "-T", "-l", "submit",
                                  "127.0.0.1", "whoami"], capture_output=True, text=True, timeout=30)
        assert refused.returncode == 255, f"{replica.name} still accepts the revoked key: {refused.stdout}"
        assert "Permission denied" in refused.stderr


def test_sigkill_during_concurrent_uploads_loses_nothing_half_done(cluster, upstream, user_keys):
    """SIGKILL of a busy replica: each upload landed whole or its client failed loudly; retries work."""
    key = user_keys["alice"]
    uploads = [new_upload(cluster, f"Killed-{i}", size=512 * 1024) for i in range(6)]
    upstream.clear_recordings()
    upstream.set_fault(delay=4.0)  # keep the uploads in flight long enough to be caught by the kill
    connected = cluster.connections()
    threads = run_concurrently(cluster, uploads, key)
    try:
        wait_until(lambda: cluster.connections() >= connected + len(uploads), what="all uploads to connect", timeout=20)
        busy = cluster.in_flight()
        victim = cluster.replicas[max(busy, key=busy.get)]
        assert busy[cluster.replicas.index(victim)] >= 1
        victim.signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        for thread in threads:
            thread.join()
        upstream.clear_fault()
    files = upstream.files()
    failed = []
    for upload in uploads:
        if upload.upstream_name in files:
            assert files[upload.upstream_name] == sha256(upload.dist), f"{upload.name} landed corrupted"
        if upload.result.returncode != 0:
            failed.append(upload)
            # A dead replica cannot explain itself: the client reports the broken connection.
            assert "error:" in upload.result.stderr, upload.output
        else:
            assert files.get(upload.upstream_name) == sha256(upload.dist), upload.output
    assert failed, "the killed replica had uploads in flight; their clients must have seen an error"
    for record in upstream.recordings():
        if record.method == "POST" and not record.body_complete:
            assert record.status != 200
    # The survivors serve; every failed upload succeeds on retry, or was already whole upstream.
    for thread in run_concurrently(cluster, failed, key):
        thread.join()
    for upload in failed:
        if files.get(upload.upstream_name):
            assert "Upload failed (409)" in upload.output, upload.output
        else:
            assert upload.result.returncode == 0, upload.output
            assert upstream.files()[upload.upstream_name] == sha256(upload.dist)


def test_sigterm_lets_the_upload_in_flight_finish_while_others_take_new_connections(cluster, upstream, user_keys):
    """SIGTERM: readiness fails at once, the upload in flight completes, new uploads go elsewhere."""
    key = user_keys["alice"]
    slow, later = new_upload(cluster, "Drained-Slow"), new_upload(cluster, "Drained-Later")
    upstream.set_fault(delay=4.0)
    (thread,) = run_concurrently(cluster, [slow], key)
    try:
        busy = wait_until(lambda: [i for i, n in cluster.in_flight().items() if n], what="the upload to connect", timeout=20)
        victim = cluster.replicas[busy[0]]
        victim.signal(signal.SIGTERM)
        status, reason = wait_until(victim.readiness, what="readiness", timeout=20)
        assert status == 503 and "draining" in reason
        # The upstream holds the upload in flight for seconds yet: the replica must still be there.
        assert victim.running, "the draining replica must wait for its upload in flight"
        run_upload(cluster, later, key)
        assert later.result.returncode == 0, later.output
    finally:
        thread.join()
        upstream.clear_fault()
    assert slow.result.returncode == 0, slow.output
    assert upstream.files()[slow.upstream_name] == sha256(slow.dist)
    assert victim.wait(30) == 0
    (event,) = events_for(cluster, later.name)
    assert cluster.by_pid(int(event.replica.rsplit(":", 1)[1])) is not victim


@pytest.mark.serial
@pytest.mark.skipif(not pgserver.installed(), reason="needs pg_ctlcluster to stop PostgreSQL")
def test_postgres_restart_fails_clearly_then_heals_without_restarting_replicas(cluster, upstream, user_keys):
    """While PostgreSQL is down uploads fail saying so; once it is back they succeed, same processes."""
    key = user_keys["alice"]
    pids = [r.pid for r in cluster.replicas]
    during, after = new_upload(cluster, "Outage-During"), new_upload(cluster, "Outage-After")
    with pgserver.outage():
        time.sleep(KEY_CACHE_SECONDS + 0.1)  # no replica may answer from its key cache
        run_upload(cluster, during, key)
    assert during.result.returncode != 0
    assert "cannot reach its account registry" in during.output
    assert during.upstream_name not in upstream.files()
    run_upload(cluster, after, key)
    assert after.result.returncode == 0, after.output
    assert upstream.files()[after.upstream_name] == sha256(after.dist)
    assert [r.pid for r in cluster.replicas] == pids and all(r.running for r in cluster.replicas)
