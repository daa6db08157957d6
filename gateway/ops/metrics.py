"""Prometheus metrics of one replica, served on `health_listen` at `/metrics`.

With `serve --workers N` each worker process writes its values to a shared directory
(prometheus-client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, set by the supervisor before
the workers start) and the supervisor's `/metrics` adds them up; with one process they live in
memory. Either way there is one scrape target per machine.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONNECTIONS_IN_FLIGHT = Gauge(
    "pypissh_connections_in_flight", "TCP connections open on the SSH port.",
    multiprocess_mode="livesum")
LISTENING = Gauge(
    "pypissh_listening_processes", "Processes accepting on the SSH port (workers of this machine).",
    multiprocess_mode="livesum")
CONNECTIONS = Counter("pypissh_connections", "TCP connections accepted on the SSH port.")
PROXY_REFUSED = Counter(
    "pypissh_proxy_refused", "Connections closed for a missing, malformed or untrusted PROXY header.",
    ["reason"])
AUTH_FAILURES = Counter(
    "pypissh_auth_failures", "Connections that ended without a successful login.")
UNKNOWN_KEYS = Counter(
    "pypissh_unknown_keys", "Public keys offered that are unknown, revoked or of a disabled account.")
SESSIONS = Counter("pypissh_sessions", "Sessions by outcome (upload outcomes, or 'command').", ["outcome"])
UPLOAD_BYTES = Counter("pypissh_upload_bytes", "Bytes of files received in upload requests.")
SESSION_SECONDS = Histogram(
    "pypissh_session_duration_seconds", "Time from the start of a request to its answer.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
POOL_TASKS = Gauge(
    "pypissh_pool_tasks", "Blocking tasks running or waiting, per thread pool (upload, registry).",
    ["pool"], multiprocess_mode="livesum")
POOL_SATURATED = Gauge(
    "pypissh_pool_saturated", "1 while a thread pool's backlog is at its bound (what /readyz reports).",
    ["pool"], multiprocess_mode="livemax")
ACCEPT_ERRORS = Counter(
    "pypissh_accept_errors", "Failed accepts on the SSH port (mostly: out of file descriptors).")
CLOSED_BY_GATEWAY = Counter(
    "pypissh_closed_by_gateway",
    "Logged-in connections (revoked key or account, idle) and session channels (no request) the gateway closed.",
    ["reason"])
CHANNELS_REFUSED = Counter(
    "pypissh_channels_refused",
    "Session channel opens refused because their connection had max_sessions_per_connection open.")
SHIM_REFUSED = Counter(
    "pypissh_shim_refused",
    "Connections to shim_socket refused by peer credentials (not shim_user, root or the replica's user).")
UPSTREAM_SECONDS = Histogram(
    "pypissh_upstream_latency_seconds",
    "Time to forward one upload to the upstream upload API: every attempt, backoff pause and index check.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600))
UPSTREAM_ATTEMPTS = Counter(
    "pypissh_upstream_attempts",
    "Requests sent to the upstream upload API, by result: the status class (2xx ... 5xx) or no_answer.",
    ["result"])
BUILD_INFO = Gauge(
    "pypissh_build_info", "Always 1; the labels name the gateway's version, Python's and asyncssh's.",
    ["version", "python", "asyncssh"], multiprocess_mode="max")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def publish_build_info() -> None:
    """Set pypissh_build_info (each process that serves does, so the supervisor's sum has it)."""
    BUILD_INFO.labels(version=_version("pypissh-gateway"), python=platform.python_version(),
                      asyncssh=_version("asyncssh")).set(1)


def attempt_result(status: int | None) -> str:
    """The label of one upstream attempt: its status class, or no_answer."""
    return f"{status // 100}xx" if status else "no_answer"


def exchange_finished(outcome: str, size: int | None, seconds: float) -> None:
    SESSIONS.labels(outcome=outcome).inc()
    if size:
        UPLOAD_BYTES.inc(size)
    SESSION_SECONDS.observe(seconds)


def exposition(directory: str | None = None) -> tuple[bytes, str]:
    """This process's metrics, or with `directory` (a supervisor) all its workers' added up."""
    directory = directory or os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def saturated_pools(directory: str) -> list[str]:
    """The pools some live worker writing to `directory` reports saturated (for the supervisor)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return sorted(sample.labels["pool"] for family in registry.collect() if family.name == "pypissh_pool_saturated"
                  for sample in family.samples if sample.value >= 1)


def worker_exited(directory: str, pid: int) -> None:
    """Drop a dead worker's live gauges (its counters keep counting in the sum)."""
    multiprocess.mark_process_dead(pid, directory)


def listening_processes(directory: str) -> float:
    """How many workers writing to `directory` are accepting connections right now."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry.get_sample_value("pypissh_listening_processes") or 0.0
