"""Gateway replicas as real processes, and the real HAProxy in front of them, for scale-out tests.

    replica = Replica(workdir, settings_toml).start()     # `pypissh-gateway serve` in a subprocess
    replica.ready()                                       # GET /readyz == 200
    balancer = Balancer(workdir, [replica, ...]).start()  # haproxy with deploy/haproxy.cfg's rules
    balancer.port

The balancer runs the project's own `deploy/haproxy.cfg`, rewritten only where a test must differ:
no daemon/chroot/user/syslog, listening on a free port of 127.0.0.1, and the replicas' ports in
place of the example addresses.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from testbed import SOURCE_ROOT, free_port, source_tree_environment, terminate

DEPLOY_HAPROXY = SOURCE_ROOT / "deploy" / "haproxy.cfg"
TEST_GLOBAL = "global\n    maxconn 2000\n"



def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    """The replica's TOML file, readable by its owner only (it may hold a password), as SECURITY.md
    asks of an operator's."""
    path.write_text("".join(f"{name} = {toml_value(value)}\n" for name, value in settings.items()))
    path.chmod(0o600)
    return path


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def metric(text: str, name: str) -> float:
    """One unlabelled sample from Prometheus text (0 when absent)."""
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


class Replica:
    """`pypissh-gateway serve` in its own process, on free SSH and health ports."""

    def __init__(self, workdir: Path, settings: Mapping[str, Any], *, name: str = "replica",
                 extra_args: Sequence[str] = ()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ssh_port = free_port()
        self.health_port = free_port()
        self.settings = dict(settings, listen=f"127.0.0.1:{self.ssh_port}",
                             health_listen=f"127.0.0.1:{self.health_port}")
        self.config = write_config(self.workdir / f"{name}.toml", self.settings)
        self.log_file = self.workdir / f"{name}.log"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "Replica":
        """Launch (again, on the same ports, if it ran before) and wait until it is ready."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> "Replica":
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config), "serve", *self.extra_args],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=source_tree_environment())
        return self

    def wait_ready(self, timeout: float = 30.0) -> "Replica":
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def readiness(self) -> tuple[int, str] | None:
        """(status, reason) of /readyz, or None when nothing answers."""
        try:
            return http_get(self.health_port, "/readyz", timeout=3)
        except OSError:
            return None

    def ready(self) -> bool:
        answer = self.readiness()
        return answer is not None and answer[0] == 200

    def metrics(self) -> str:
        return http_get(self.health_port, "/metrics")[1]

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        terminate(self.proc, grace=15)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def adapt_haproxy_config(text: str, bind: str, servers: Sequence[tuple[int, int]]) -> str:
    """deploy/haproxy.cfg for a test: the global section replaced (foreground, no chroot, user or
    syslog), `bind` in place of `:22`, and the example servers gwN pointed at (ssh_port, health_port);
    example servers beyond those given are left out."""
    sections = re.split(r"(?m)^(?=\S)", text)
    out = []
    for section in sections:
        if section.startswith("global"):
            out.append(TEST_GLOBAL)
            continue
        section = re.sub(r"(?m)^(\s+)log global\n", "", section)
        section = re.sub(r"(?m)^(\s+bind) \S+", rf"\1 {bind}", section)

        def server(match: re.Match) -> str:
            index = int(match.group(2)) - 1
            if index >= len(servers):
                return ""
            ssh_port, health_port = servers[index]
            return f"{match.group(1)}server gw{index + 1} 127.0.0.1:{ssh_port} port {health_port}\n"

        section = re.sub(r"(?m)^(\s+)server gw(\d+) \S+[^\n]*\n?", server, section)
        out.append(section)
    return "".join(out)


class Balancer:
    """HAProxy (foreground) with the deploy configuration, in front of the given replicas."""

    def __init__(self, workdir: Path, replicas: Sequence[Replica]):
        self.workdir = Path(workdir)
        self.port = free_port()
        config = adapt_haproxy_config(DEPLOY_HAPROXY.read_text(), f"127.0.0.1:{self.port}",
                                      [(r.ssh_port, r.health_port) for r in replicas])
        self.config = self.workdir / "haproxy.cfg"
        self.config.write_text(config)
        self.log_file = self.workdir / "haproxy.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "Balancer":
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejects the configuration:\n{check.stdout}{check.stderr}")
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"haproxy did not start:\n{self.log_file.read_text()}")
                time.sleep(0.05)

    def stop(self) -> None:
        terminate(self.proc)
