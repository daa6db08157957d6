"""Local stand-ins for the world around the gateway: a TLS pypiserver upstream, a test CA,
the legacy pypissh client and sample legacy projects. Used by the demo, the tests and bench/.

The testbed is not installed (the wheel holds the product only): it is imported from the source
tree, a checkout or the unpacked sdist. A subprocess that imports it gets that tree on its
PYTHONPATH through `source_tree_environment`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, TypeVar

T = TypeVar("T")

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def source_tree_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment) with the source tree first on PYTHONPATH, so a
    child Python finds `testbed`, and this tree's `gateway` and `migrate`, from any directory."""
    result = dict(os.environ if env is None else env)
    existing = result.get("PYTHONPATH")
    result["PYTHONPATH"] = str(SOURCE_ROOT) + (os.pathsep + existing if existing else "")
    return result


def terminate(proc: "subprocess.Popen | None", grace: float = 10.0) -> None:
    """Stop a child the way its service manager would: SIGTERM, then SIGKILL if it has not exited
    within `grace` seconds. Nothing happens to a child that has already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at `host` right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], T], *, timeout: float = 10.0, what: str = "the condition",
               interval: float = 0.05) -> T:
    """Poll `condition` until it returns something true, and return that. For what happens in
    another thread or process (a worker thread, a server starting); `timeout` only bounds a
    failure, it is never the expected outcome."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value
