"""Shared fixtures: a real TLS pypiserver upstream, a real in-process gateway, real OpenSSH clients.

Every test gets its own registry (a SQLite file) and gateway; the upstream and the keys are made
once per session. Project names are unique per test so uploads never collide on the upstream.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.settings import Settings
from gateway.ssh import hostkeys
from gateway.sshkeys import parse_public_key
from gateway.tokens import create_key_file
from testbed import postgres
from testbed.harness import GatewayHarness
from testbed.legacyclients import (PYPISSH_REPOSITORY, install_pypissh, python27, run_real_pypissh,
                                   ssh_for_pypissh)
from testbed.sample import make_legacy_project, run_legacy, write_pypirc
from testbed.upstream import TlsPypiServer
from tests.helpers import register_account

# The time the `admin` fixture's commands run at (pinned through testbed/clock.py).
ADMIN_NOW = "2027-03-01 10:00"

SSH = shutil.which("ssh")


def pytest_collection_modifyitems(config, items):
    if SSH is None:  # `./dev test` installs openssh-client; this only guards a bare pytest run
        skip = pytest.mark.skip(reason="the OpenSSH client is not installed (./dev test installs it)")
        for item in items:
            if "ssh_client" in item.fixturenames:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _home(tmp_path_factory, monkeypatch) -> Path:
    """Every test's commands keep their state in a home of their own, never the real user's, and
    no PYPISSH_* variable of the machine running the suite leaks in."""
    for name in [name for name in os.environ if name.startswith("PYPISSH_")]:
        monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("PYPISSH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def upstream(tmp_path_factory) -> TlsPypiServer:
    server = TlsPypiServer(tmp_path_factory.mktemp("upstream"))
    server.start()
    yield server
    server.stop()


# Output the tests compare never depends on the terminal that runs them: every console (rich,
# click) in the tests and in the processes they start sees a pipe this wide, never a terminal,
# whatever FORCE_COLOR or the real terminal say.
FIXED_TERMINAL = {"COLUMNS": "100", "LINES": "40", "TTY_COMPATIBLE": "0"}
TERMINAL_OVERRIDES = ("FORCE_COLOR", "TTY_INTERACTIVE", "CLICOLOR_FORCE")


def pytest_configure(config):
    for name in TERMINAL_OVERRIDES:
        os.environ.pop(name, None)
    os.environ.update(FIXED_TERMINAL)


@pytest.fixture(autouse=True)
def _clean_upstream_faults(request):
    yield
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").clear_fault()


@pytest.fixture(scope="session")
def host_key_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostkeys")
    hostkeys.generate(folder)
    return folder


@dataclass(frozen=True)
class UserKey:
    path: Path
    public_line: str

    @property
    def fingerprint(self) -> str:
        return parse_public_key(self.public_line).fingerprint


def _make_user_key(folder: Path, name: str, kind: str = "ed25519", bits: int | None = None) -> UserKey:
    path = folder / name
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@test", "-f", str(path)]
    if bits:
        args += ["-b", str(bits)]
    subprocess.run(args, check=True)
    return UserKey(path, (folder / f"{name}.pub").read_text().strip())


@pytest.fixture(scope="session")
def user_keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("userkeys")
    return {name: _make_user_key(folder, name) for name in ("alice", "bob", "mallory")}


@pytest.fixture
def user_key(user_keys) -> UserKey:
    return user_keys["alice"]


@pytest.fixture
def make_settings(tmp_path, upstream, host_key_dir):
    """Settings for an in-process gateway; the secret key file is made as `keygen` makes it."""
    create_key_file(tmp_path / "secret.key")

    def _make(**changes) -> Settings:
        base = Settings(
            database_url=f"sqlite:///{tmp_path / 'registry.sqlite3'}",
            listen="127.0.0.1:0",
            upstream_url=upstream.url,
            upstream_ca_bundle=str(upstream.ca_file),
            index_url=upstream.simple_url,
            host_key_dir=str(host_key_dir),
            secret_key_file=str(tmp_path / "secret.key"),
            read_timeout=5.0,
            upstream_timeout=30.0,
            public_host="127.0.0.1",
            key_cache_seconds=0.5,
        )
        return base.replace(**changes)

    return _make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def start_gateway(make_settings):
    started: list[GatewayHarness] = []

    def _start(settings: Settings | None = None, **services) -> GatewayHarness:
        harness = GatewayHarness(settings or make_settings(), **services).start()
        started.append(harness)
        return harness

    yield _start
    for harness in started:
        harness.stop()


@pytest.fixture
def gateway(start_gateway, settings) -> GatewayHarness:
    return start_gateway(settings)


@pytest.fixture
def recorded_sleeps(start_gateway):
    """Start a gateway whose upstream client records its backoff sleeps instead of sleeping."""
    from gateway.upload.upstream import UpstreamClient

    def _start(settings: Settings) -> tuple[GatewayHarness, list[float]]:
        sleeps: list[float] = []
        harness = start_gateway(settings, upstream=UpstreamClient(settings, sleep=sleeps.append))
        return harness, sleeps

    return _start


@pytest.fixture
def registry(gateway) -> Registry:
    return gateway.registry


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request, tmp_path):
    """An empty registry at the head revision on each database the gateway supports: a SQLite
    file, and a PostgreSQL database made for this test and dropped after it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        upgrade(url)
        yield url
        return
    reason = postgres.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with postgres.temporary_database("pypissh_test") as url:
        upgrade(url)
        yield url


@pytest.fixture
def alice(gateway, user_key, upstream) -> str:
    """Account 'alice' with her ed25519 key and the upstream token stored."""
    register_account(gateway, "alice", user_key, token=upstream.token, email="alice@example.org")
    return "alice"


@pytest.fixture
def project_name(request) -> str:
    """A project name unique to this test (uploads on the shared upstream never collide)."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-").lower()
    return f"T-{base[:60].rstrip('-')}"


@dataclass
class SshClient:
    """The real OpenSSH client, pointed at one gateway with one identity."""

    gateway: GatewayHarness
    key: UserKey
    known_hosts: Path
    user: str = "submit"

    def argv(self, *extra: str, log_level: str = "ERROR") -> list[str]:
        return [
            SSH, "-p", str(self.gateway.port), "-i", str(self.key.path),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", f"LogLevel={log_level}", "-o", "ConnectTimeout=10", *extra,
        ]

    def command_line(self) -> str:
        """For PYPISSH_SSH: the legacy client adds `-T -l submit <host>` itself."""
        return shlex.join(self.argv())

    def run(self, *command: str, data: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
        """One session: `ssh -T submit@host [command]` with `data` on stdin (bytes in, bytes out)."""
        return subprocess.run(
            [*self.argv("-T", "-l", self.user), "127.0.0.1", *command],
            input=data, capture_output=True, timeout=timeout,
        )

    def legacy(self, project: Path, *args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `setup.py <args>` with the stdlib distutils through the pypissh client."""
        return run_legacy(project, list(args), ssh_command=self.command_line(), home=home,
                          env={"PYPISSH_HOST": "127.0.0.1", "PYPISSH_USER": self.user}, timeout=timeout)


@pytest.fixture
def ssh_client(gateway, user_key, tmp_path):
    def _client(key: UserKey | None = None, *, harness: GatewayHarness | None = None, user: str = "submit"):
        target = harness or gateway
        known = tmp_path / f"known_hosts_{target.port}"
        known.write_text(target.known_hosts_line())
        return SshClient(target, key or user_key, known, user)

    return _client


@pytest.fixture
def legacy_home(tmp_path) -> Path:
    """A HOME with the classic ~/.pypirc (the user's old password, as most legacy users had)."""
    home = tmp_path / "home"
    write_pypirc(home, "https://upload.pypi.org/legacy/", username="alice", password="old-password")
    return home


@pytest.fixture
def legacy_project(tmp_path, project_name):
    def _make(name: str | None = None, version: str = "1.0", **options) -> Path:
        folder = tmp_path / f"project-{name or project_name}-{version}"
        return make_legacy_project(folder, name=name or project_name, version=version, **options)

    return _make


@pytest.fixture
def admin(tmp_path, monkeypatch):
    """pypissh-migrate against a fresh registry, its clock pinned to ADMIN_NOW (or `now=`), not run
    by sudo; returns (invoke, registry). `invoke.sets` are its --set options, `invoke.tmp` its folder."""
    from gateway.registry.migrate_db import upgrade
    from migrate.cli import cli as migrate_cli
    from tests.helpers import cli_runner

    monkeypatch.delenv("SUDO_USER", raising=False)
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    create_key_file(tmp_path / "secret.key")
    registry = Registry.from_url(url)
    invoke = cli_runner(migrate_cli, now=ADMIN_NOW, database_url=url, secret_key_file=tmp_path / "secret.key",
                        host_key_dir=tmp_path / "keys")
    invoke.tmp = tmp_path
    yield invoke, registry
    registry.engine.dispose()


# -- the real pypissh 1.4 on Python 2.7 (testbed/legacyclients.py) ----------------------------
@pytest.fixture(scope="session")
def python2() -> str:
    found = python27()
    if found is None:
        pytest.skip("no Python 2.7 on this machine (Debian ships none since 11; pyenv builds 2.7.18)")
    return found


@pytest.fixture(scope="session")
def pypissh_site(python2, tmp_path_factory) -> Path:
    """A user site (PYTHONUSERBASE) with pypissh 1.4 installed, its .pth included."""
    userbase = tmp_path_factory.mktemp("pypissh-userbase")
    install_pypissh(python2, userbase)
    return userbase


@pytest.fixture
def real_pypissh(python2, pypissh_site, gateway, user_key, tmp_path):
    """Run `python2.7 setup.py <args>` in a project with the real pypissh active, its ssh sent to
    `gateway` (or `harness`) with `key` (default: alice's), its ~/.pypirc the classic one."""
    home = tmp_path / "pypissh-home"
    write_pypirc(home, PYPISSH_REPOSITORY, username="alice", password="old-password")

    def _run(project: Path, *args: str, key: UserKey | None = None, harness: GatewayHarness | None = None,
             text: bool = True) -> subprocess.CompletedProcess:
        target = harness or gateway
        identity = (key or user_key).path
        known_hosts = tmp_path / f"pypissh_known_hosts_{target.port}"
        known_hosts.write_text(target.known_hosts_line())
        path_first = ssh_for_pypissh(tmp_path / f"pypissh-ssh-{target.port}-{identity.name}", port=target.port,
                                     identity=identity, known_hosts=known_hosts)
        return run_real_pypissh(project, args, python=python2, userbase=pypissh_site, home=home,
                                path_first=path_first, text=text)

    return _run
