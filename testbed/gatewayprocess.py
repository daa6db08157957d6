"""The real gateway as its own process (`pypissh-gateway serve`), for tests that must watch it from
outside: its memory (RSS), its log, what it leaves on disk, or a resource limit of its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from gateway.settings import Settings
from testbed import free_port, terminate
from testbed.knownhosts import known_hosts_lines



def environment(settings: Settings) -> dict[str, str]:
    """PYPISSH_* variables that reproduce `settings` in the child."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYPISSH_")}
    for name, value in vars(settings).items():
        if value is None or value == "":
            continue
        if isinstance(value, tuple):
            value = ",".join(value)
        env[f"PYPISSH_{name.upper()}"] = str(value)
    return env


class GatewayProcess:
    def __init__(self, settings: Settings, log_path: Path, *, preexec: Callable[[], None] | None = None):
        self.port = free_port()
        self.settings = settings.replace(listen=f"127.0.0.1:{self.port}",
                                         health_listen=f"127.0.0.1:{free_port()}", workers=1)
        self.log_path = log_path
        self._preexec = preexec
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "GatewayProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"], env=environment(self.settings),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=self._preexec)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.process.returncode}):\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-2.0-"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the gateway did not listen within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        terminate(self.process, grace=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _status_kib(self, field: str) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def rss_kib(self) -> int:
        """Resident memory now."""
        return self._status_kib("VmRSS")

    def peak_rss_kib(self) -> int:
        """The highest resident memory since the process started (the kernel's high-water mark)."""
        return self._status_kib("VmHWM")

    def reset_peak_rss(self) -> None:
        """Start a new high-water mark from the current RSS (Linux: write 5 to clear_refs)."""
        assert self.process is not None
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def known_hosts_line(self, host: str = "127.0.0.1") -> str:
        return known_hosts_lines(self.settings.host_key_dir, self.port, host)

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
