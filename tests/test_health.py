"""Health endpoints (liveness, readiness, metrics) and the metrics a real session moves; the key
lookup cache's bound."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from gateway.runtime.health import DatabaseProbe, HealthServer, ReplicaState, readiness_check
from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.keycache import KeyCache
from gateway.sshkeys import parse_public_key
from testbed import postgres
from testbed.scaleout import http_get
from tests.helpers import wait_until


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


def serve_and_get(probe: DatabaseProbe, state: ReplicaState, *paths: str) -> list[tuple[int, str]]:
    """Start a health server on a free port, GET each path in turn, stop it."""

    async def scenario():
        server = await HealthServer("127.0.0.1", 0, readiness_check(state, probe)).start()
        loop = asyncio.get_running_loop()
        try:
            return [await loop.run_in_executor(None, http_get, server.port, path) for path in paths]
        finally:
            server.close()
            await server.wait_closed()
            probe.close()

    return asyncio.run(scenario())


@pytest.fixture
def sqlite_registry(tmp_path) -> Registry:
    url = f"sqlite:///{tmp_path / 'health.sqlite3'}"
    upgrade(url)
    registry = Registry.from_url(url)
    yield registry
    registry.engine.dispose()


def test_liveness_readiness_metrics(sqlite_registry):
    """/healthz and /readyz answer 200 with a database; /metrics is Prometheus text; others 404."""
    answers = serve_and_get(DatabaseProbe(sqlite_registry.ping), ReplicaState(),
                            "/healthz", "/readyz", "/metrics", "/nothing")
    assert answers[0] == (200, "ok\n")
    assert answers[1] == (200, "ready\n")
    assert answers[2][0] == 200 and "# TYPE pypissh_connections_in_flight gauge" in answers[2][1]
    assert "pypissh_upstream_latency_seconds_bucket" in answers[2][1]
    assert answers[3][0] == 404


def test_draining_fails_readiness_but_not_liveness(sqlite_registry):
    """A draining replica is alive (200) and not ready (503), saying why."""
    answers = serve_and_get(DatabaseProbe(sqlite_registry.ping), ReplicaState(draining=True), "/healthz", "/readyz")
    assert answers[0][0] == 200
    assert answers[1][0] == 503 and "draining" in answers[1][1]


def test_unreachable_database_fails_readiness():
    """A database that refuses connections makes /readyz 503, naming the cause."""
    registry = Registry.from_url("postgresql://postgres@127.0.0.1:1/nothing")
    (answer,) = serve_and_get(DatabaseProbe(registry.ping), ReplicaState(), "/readyz")
    registry.engine.dispose()
    assert answer[0] == 503 and "database unreachable (OperationalError)" in answer[1]


@pytest.mark.skipif(postgres.unavailable_reason() is not None, reason="PostgreSQL is not running")
def test_slow_database_fails_readiness_within_the_probe_timeout():
    """A database slower than the probe's timeout is reported not ready instead of hanging the check."""
    with postgres.temporary_database("pypissh_test") as url:
        registry = Registry.from_url(url)

        def slow_ping():
            with registry.engine.connect() as conn:
                conn.execute(text("SELECT pg_sleep(1)"))

        (answer,) = serve_and_get(DatabaseProbe(slow_ping, timeout=0.2), ReplicaState(), "/readyz")
        registry.engine.dispose()
    assert answer[0] == 503 and "did not answer within" in answer[1]


def test_a_session_moves_the_metrics(alice, ssh_client, legacy_project, legacy_home, user_keys):
    """An upload, a command and a refused key show in sessions, bytes, durations, latency, auth failures."""
    forwarded = sample("pypissh_sessions_total", outcome="forwarded")
    commands = sample("pypissh_sessions_total", outcome="command")
    uploaded = sample("pypissh_upload_bytes_total")
    durations = sample("pypissh_session_duration_seconds_count")
    upstream_calls = sample("pypissh_upstream_latency_seconds_count")
    connections = sample("pypissh_connections_total")
    in_flight = sample("pypissh_connections_in_flight")
    failures = sample("pypissh_auth_failures_total")
    unknown = sample("pypissh_unknown_keys_total")

    project = legacy_project()
    assert ssh_client().legacy(project, "sdist", "upload", home=legacy_home).returncode == 0
    (dist,) = (project / "dist").glob("*.tar.gz")
    assert ssh_client().run("whoami").returncode == 0
    assert ssh_client(user_keys["mallory"]).run("whoami").returncode == 255

    assert sample("pypissh_sessions_total", outcome="forwarded") == forwarded + 1
    assert sample("pypissh_sessions_total", outcome="command") == commands + 1
    assert sample("pypissh_upload_bytes_total") == uploaded + dist.stat().st_size
    assert sample("pypissh_session_duration_seconds_count") == durations + 1
    assert sample("pypissh_upstream_latency_seconds_count") == upstream_calls + 1
    assert sample("pypissh_connections_total") == connections + 3
    assert sample("pypissh_unknown_keys_total") >= unknown + 1
    # The client may exit before the server has seen its connections close.
    wait_until(lambda: sample("pypissh_auth_failures_total") == failures + 1, what="the failed login to be counted")
    wait_until(lambda: sample("pypissh_connections_in_flight") == in_flight, what="the connections to close")


def test_key_cache_serves_at_most_key_cache_seconds(sqlite_registry, user_keys):
    """A revoked key stays cached no longer than the TTL; unknown keys are cached the same way."""
    now = [100.0]
    lookup = KeyCache(sqlite_registry.keys.identity_for_key, ttl=5.0, clock=lambda: now[0])
    key = parse_public_key(user_keys["bob"].public_line)
    assert lookup.identity(key.fingerprint) is None  # unknown, and cached as such
    sqlite_registry.accounts.add_account("bob")
    sqlite_registry.keys.add_key("bob", key)
    now[0] += 4.9
    assert lookup.identity(key.fingerprint) is None
    now[0] += 0.2
    assert lookup.identity(key.fingerprint).account_name == "bob"
    sqlite_registry.keys.revoke_key(key.fingerprint)
    now[0] += 4.9
    assert lookup.identity(key.fingerprint) is not None  # still inside the bound
    now[0] += 0.2
    assert lookup.identity(key.fingerprint) is None  # never longer than the bound
