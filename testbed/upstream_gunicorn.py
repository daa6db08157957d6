"""gunicorn settings module for the test upstream (`--config python:testbed.upstream_gunicorn`).

Only adds a watchdog: when the process that started the upstream (TESTBED_UPSTREAM_OWNER_PID)
is gone or is no longer its parent, the gunicorn master shuts itself down, so a crashed test run
leaves no server behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time

# Several upstreams may run at once; the shared default control socket would collide.
control_socket_disable = True


def _owner_alive(pid: int) -> bool:
    if os.getppid() != pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def when_ready(server) -> None:
    raw = os.environ.get("TESTBED_UPSTREAM_OWNER_PID", "")
    if not raw.isdigit():
        return
    owner = int(raw)
    master = os.getpid()

    def watch() -> None:
        while _owner_alive(owner):
            time.sleep(1.0)
        os.kill(master, signal.SIGINT)

    threading.Thread(target=watch, name="owner-watchdog", daemon=True).start()
