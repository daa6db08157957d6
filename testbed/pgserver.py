"""Stopping and restarting the machine's PostgreSQL, for tests of how the gateway survives it.

    with outage():        # the server is down inside the block, and always up again after it
        ...
    restart()

Other tests use the same server (see `testbed.postgres` for throwaway databases), so outages are
kept short, always end in a `finally`, and the tests that cause them are marked `serial`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

from testbed.postgres import unavailable_reason

READY_TIMEOUT = 30.0


def installed() -> bool:
    return shutil.which("pg_ctlcluster") is not None and Path("/etc/postgresql").is_dir()


def _ctl(action: str) -> None:
    tool = shutil.which("pg_ctlcluster")
    if tool is None:
        raise RuntimeError("pg_ctlcluster is not installed; these tests need Debian's PostgreSQL")
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run([tool, "--skip-systemctl-redirect", version, "main", action], check=True,
                   capture_output=True, timeout=60)


def wait_ready(timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while unavailable_reason() is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not accept connections within {timeout:.0f} s")
        time.sleep(0.1)


def ensure_running() -> None:
    if unavailable_reason() is not None:
        try:
            _ctl("start")
        except subprocess.CalledProcessError:
            pass  # it was already starting
        wait_ready()


def restart() -> None:
    try:
        _ctl("restart")
    finally:
        ensure_running()


@contextlib.contextmanager
def outage() -> Iterator[None]:
    """PostgreSQL is stopped inside the block and running again after it, whatever happens."""
    _ctl("stop")
    try:
        yield
    finally:
        ensure_running()
