"""Logins never wait behind uploads: uploads and registry work (key lookups, event rows) run in pools
of their own; a full upload pool refuses new uploads with a reason, and /readyz says the replica is
saturated."""

from __future__ import annotations

import subprocess
import threading

import pytest

from gateway.runtime.health import DatabaseProbe, HealthServer, ReplicaState, readiness_check
from gateway.ops.pools import PoolFull, WorkerPool
from testbed import legacyrequests as lr
from testbed.scaleout import http_get
from tests.helpers import register_account, wait_until


# -- the pool itself ---------------------------------------------------------------------------------
@pytest.fixture
def blocked():
    """An event the pool's tasks wait on; set at the end so no thread is left waiting."""
    release = threading.Event()
    yield release
    release.set()


def test_pool_counts_refuses_when_full_and_says_why(blocked):
    """Two threads and a queue of one: the fourth task is refused, and the pool reports saturation."""
    pool = WorkerPool("upload", 2, queue_limit=1)
    try:
        futures = [pool.submit(blocked.wait) for _ in range(3)]
        wait_until(lambda: pool.running == 2 and pool.waiting == 1, what="two running, one waiting")
        assert pool.full
        assert pool.saturation() == "the upload pool is saturated: 2 of 2 threads busy, 1 tasks waiting"
        with pytest.raises(PoolFull):
            pool.submit(blocked.wait)
        blocked.set()
        for future in futures:
            future.result(10)
        wait_until(lambda: pool.running == 0, what="the tasks to finish")
        assert not pool.full and pool.saturation() is None
    finally:
        pool.shutdown()


def test_registry_pool_queues_without_refusing_and_reports_its_backlog(blocked):
    """Without a queue limit nothing is refused; past the saturation bound the pool says it is saturated."""
    pool = WorkerPool("registry", 1, saturation_bound=2)
    try:
        futures = [pool.submit(blocked.wait) for _ in range(2)]
        wait_until(lambda: pool.waiting == 1, what="one waiting")
        assert pool.saturation() is None
        futures.append(pool.submit(blocked.wait))
        assert pool.saturation() == "the registry pool is saturated: 1 of 1 threads busy, 2 tasks waiting"
        blocked.set()
        for future in futures:
            future.result(10)
    finally:
        pool.shutdown()


# -- through real ssh clients and a stalled upload server ---------------------------------------------
def test_a_login_does_not_wait_behind_stalled_uploads(start_gateway, make_settings, ssh_client, user_keys,
                                                      upstream, project_name):
    """With the upload server stalled and the upload pool full, a login with an uncached key completes
    while the uploads still wait, another upload is refused with a reason, and /readyz says saturated."""
    harness = start_gateway(make_settings(upload_threads=2, upload_queue=1, max_sessions_per_account=8,
                                          read_timeout=60.0))
    services = harness.services
    register_account(harness, "alice", user_keys["alice"], token=upstream.token)
    register_account(harness, "bob", user_keys["bob"], token=upstream.token)
    alice, bob = ssh_client(user_keys["alice"], harness=harness), ssh_client(user_keys["bob"], harness=harness)
    upstream.set_fault(delay=30, count=2)  # the first two uploads reach it and wait
    stalled = []
    health = None
    try:
        for index in range(3):
            name = f"{project_name}-{index}"
            process = subprocess.Popen([*alice.argv("-T", "-l", "submit"), "127.0.0.1"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            process.stdin.write(lr.python3_upload(name, "1.0", lr.make_sdist(name, "1.0")))
            process.stdin.flush()
            stalled.append(process)
        wait_until(lambda: services.executor.full, what="the upload pool to fill up", timeout=30)

        login = bob.run("whoami")  # bob's key was never looked up: the registry pool must answer
        assert login.returncode == 0 and login.stdout.startswith(b"account:  bob"), login.stderr
        assert all(process.poll() is None for process in stalled)  # ... before any stalled upload ended

        busy = bob.run(data=lr.python3_upload(project_name + "-busy", "1.0",
                                              lr.make_sdist(project_name + "-busy", "1.0")))
        assert busy.stdout.startswith(b"HTTP/1.0 503 ")
        assert b"this gateway is busy with other uploads right now; nothing was published" in busy.stderr

        readiness = readiness_check(ReplicaState(), DatabaseProbe(harness.registry.ping),
                                    saturation=services.saturation)
        health = harness.call(HealthServer("127.0.0.1", 0, readiness).start())
        status, body = http_get(health.port, "/readyz")
        assert status == 503 and body.startswith("saturated: the upload pool is saturated: 2 of 2 threads busy")
        assert all(process.poll() is None for process in stalled)
    finally:
        if health is not None:
            harness.call(_stop(health))
        for process in stalled:
            with process:  # its pipes closed and the client reaped
                process.kill()


async def _stop(server: HealthServer) -> None:
    server.close()
    await server.wait_closed()
