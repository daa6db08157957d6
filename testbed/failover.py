"""Gateway replicas behind HAProxy on a primary/standby registry, driven through a failover with
real legacy uploads and logins. Shared by tests/test_failover.py (which asserts) and
bench/failover.py (which measures).

    with FailoverRig(workdir, upstream, host_key_dir, alice_key, replicas=2) as rig:
        rig.upload("Before-1")                  # `setup.py sdist upload` through pypissh and HAProxy
        rig.login()                             # `ssh ... whoami` through HAProxy
        rig.pair.primary.stop_hard()            # the registry's primary crashes
        rig.admin("accounts", "list")           # `pypissh-migrate --config <a replica's file> ...`
        rig.pair.standby.promote()

Every replica, and every command, uses the same configuration file with the multi-host URL
(`postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write`): nothing is reconfigured during
the failover.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.settings import Settings
from gateway.sshkeys import parse_public_key
from gateway.tokens import TokenBox
from testbed import source_tree_environment
from testbed.knownhosts import known_hosts_lines
from testbed.pgpair import StandbyPair, standby_pair
from testbed.sample import make_legacy_project, run_legacy, write_pypirc
from testbed.scaleout import Balancer, Replica

ACCOUNT = "alice"
SECRET = "a test secret shared by the failover replicas and their admin commands"
DATABASE = "pypissh"
SUCCESS = "Server response (200)"


@dataclass
class Attempt:
    """One client's try: an upload or a login, what it was told, and when."""

    kind: str  # "upload" or "login"
    name: str
    started: float
    ended: float
    returncode: int
    stdout: str
    stderr: str
    sha256: str | None = None  # of the sdist the client sent

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def upstream_name(self) -> str:
        return self.name.lower().replace("-", "_") + "-1.0.tar.gz"

    @property
    def told_success(self) -> bool:
        if self.kind == "upload":
            return self.returncode == 0 and SUCCESS in self.output
        return self.returncode == 0 and f"account:  {ACCOUNT}" in self.stdout

    def told(self) -> str:
        """The line the client showed about the outcome (for figures and failure messages)."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        for marker in ("Server response", "Upload failed", "Received disconnect", "pypissh-gateway:"):
            for line in lines:
                if marker in line:
                    return line
        return lines[-1] if lines else f"(nothing; exit status {self.returncode})"


class FailoverRig:
    def __init__(self, workdir: Path, upstream, host_key_dir: Path, key, *, replicas: int = 2,
                 key_cache_seconds: float = 1.0):
        self.workdir = Path(workdir)
        self.upstream = upstream
        self.host_key_dir = host_key_dir
        self.key = key
        self.replica_count = replicas
        self.key_cache_seconds = key_cache_seconds
        self.pair: StandbyPair | None = None
        self.url = ""
        self.replicas: list[Replica] = []
        self.balancer: Balancer | None = None
        self._stack = contextlib.ExitStack()

    # -- setting up and tearing down --------------------------------------------------------------
    def __enter__(self) -> "FailoverRig":
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _start(self) -> None:
        self.pair = self._stack.enter_context(standby_pair())
        self.pair.create_database(DATABASE)
        self.url = self.pair.url(DATABASE)
        upgrade(self.url)
        registry = self.registry()
        try:
            registry.accounts.add_account(ACCOUNT, email=f"{ACCOUNT}@example.org")
            registry.keys.add_key(ACCOUNT, parse_public_key(self.key.public_line))
            sealed = TokenBox.from_settings(Settings(secret_key=SECRET)).seal(self.upstream.token)
            registry.accounts.set_token_ciphertext(ACCOUNT, sealed)
        finally:
            registry.close()
        settings = dict(
            database_url=self.url, upstream_url=self.upstream.url, index_url=self.upstream.simple_url,
            upstream_ca_bundle=str(self.upstream.ca_file), host_key_dir=str(self.host_key_dir),
            secret_key=SECRET, key_cache_seconds=self.key_cache_seconds, proxy_protocol="use",
            proxy_allowed=["127.0.0.1/32"], drain_seconds=5.0, read_timeout=10.0, public_host="127.0.0.1")
        self.replicas = [Replica(self.workdir, settings, name=f"gw{i + 1}") for i in range(self.replica_count)]
        for replica in self.replicas:
            self._stack.callback(replica.stop)
            replica.launch()
        for replica in self.replicas:
            replica.wait_ready()
        self.balancer = Balancer(self.workdir, self.replicas).start()
        self._stack.callback(self.balancer.stop)
        self.known_hosts = self.workdir / "known_hosts"
        self.known_hosts.write_text(known_hosts_lines(self.host_key_dir, self.balancer.port))
        self.home = self.workdir / "home"
        write_pypirc(self.home, username=ACCOUNT, password="old-password")

    @property
    def config(self) -> Path:
        """The configuration file every replica and admin command uses."""
        return self.replicas[0].config

    def registry(self) -> Registry:
        """The registry on the same multi-host URL (whichever server is the primary now)."""
        return Registry.from_url(self.url)

    # -- what users do ----------------------------------------------------------------------------
    def ssh_command(self) -> list[str]:
        assert self.balancer is not None
        return ["ssh", "-p", str(self.balancer.port), "-i", str(self.key.path), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]

    def upload(self, name: str) -> Attempt:
        """`setup.py sdist upload` of a new project `name` through the legacy pypissh client."""
        project = make_legacy_project(self.workdir / "projects" / name, name=name)
        started = time.monotonic()
        done = run_legacy(project, ["sdist", "upload"], ssh_command=" ".join(self.ssh_command()), home=self.home,
                          env={"PYPISSH_HOST": "127.0.0.1"}, timeout=60)
        ended = time.monotonic()
        (dist,) = (project / "dist").glob("*.tar.gz")
        return Attempt("upload", name, started, ended, done.returncode, done.stdout, done.stderr,
                       hashlib.sha256(dist.read_bytes()).hexdigest())

    def login(self, name: str = "login") -> Attempt:
        """`ssh ... whoami`: a login, and the account the gateway says the key belongs to."""
        started = time.monotonic()
        done = subprocess.run([*self.ssh_command(), "-T", "-l", "submit", "127.0.0.1", "whoami"],
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        return Attempt("login", name, started, time.monotonic(), done.returncode, done.stdout, done.stderr)

    # -- what operators do ------------------------------------------------------------------------
    def command(self, module: str, *args: str) -> subprocess.CompletedProcess:
        """`python -m <module> --config <the replicas' file> <args>`, as an operator runs it."""
        return subprocess.run([sys.executable, "-m", module, "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              env=source_tree_environment(), cwd=self.workdir)

    def admin(self, *args: str) -> subprocess.CompletedProcess:
        return self.command("migrate", *args)

    def check(self) -> subprocess.CompletedProcess:
        return self.command("gateway", "check")

    def readiness(self) -> list[tuple[int, str] | None]:
        return [replica.readiness() for replica in self.replicas]

    def all_ready(self, ready: bool) -> bool:
        """True once every replica's /readyz says `ready` (200) or not (503)."""
        answers = self.readiness()
        return all(answer is not None and (answer[0] == 200) == ready for answer in answers)


def database_lines(check_output: str) -> list[str]:
    """The lines of `check` about the database hosts."""
    return [line for line in check_output.splitlines() if "database host" in line]
