"""The legacy clients on interpreters of their own: the real pypissh 1.4 on Python 2.7, and the
stdlib distutils (testbed/pypissh.py) on Python 3.11.

The gateway may run on any supported Python (3.11 to 3.13), but the clients it serves are old:
distutils left the standard library in 3.12, and pypissh 1.4 is Python 2 only. So the suite never
runs a client on the gateway's interpreter. The interpreters are looked for among Debian's, under
the pyenv root and on PATH; LEGACY_PYTHON27 and LEGACY_PYTHON311 name others. (Not PYPISSH_*
variables: the gateway would warn that they are no setting of its own.)

The real client is fetched like any test dependency: `pip download` of the sdist pinned with its
hash in requirements/legacy-client.txt, kept in the virtualenv (so a fresh virtualenv fetches it
afresh), and installed per test run into a user site of its own (PYTHONUSERBASE), where its
`pypissh.pth` patches distutils at every start of that Python, as it did on users' machines.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Sequence

from testbed import SOURCE_ROOT

PYPISSH_REQUIREMENT = SOURCE_ROOT / "requirements" / "legacy-client.txt"
PYPISSH_SDIST = "pypissh-1.4.tar.gz"
# The host name pypissh 1.4 hard-codes; users point it elsewhere with their ssh configuration.
PYPISSH_HOST = "ssh.pypi.python.org"
PYPISSH_REPOSITORY = f"http://submit@{PYPISSH_HOST}/pypi"
CACHE = Path(sys.prefix) / "share" / "pypissh-gateway-tests"


class LegacyClientMissing(RuntimeError):
    """A legacy client's interpreter or package cannot be had on this machine."""


def _runs(python: str, code: str = "") -> bool:
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_interpreter(version: str, variable: str, *, check: str = "") -> str | None:
    """An interpreter of `version` ("2.7", "3.11") that runs `check`: $variable, then Debian's
    /usr/bin/python<version>, pyenv's, then python<version> on PATH; None if none does."""
    name = f"python{version}"
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [os.environ.get(variable), f"/usr/bin/{name}",
                  *sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/{name}"), reverse=True),
                  shutil.which(name)]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and _runs(candidate, check):
            return candidate
    return None


@functools.cache
def python311() -> str:
    """Python 3.11 with the stdlib distutils, for testbed/pypissh.py."""
    found = find_interpreter("3.11", "LEGACY_PYTHON311", check="import distutils")
    if found is None:
        raise LegacyClientMissing("no Python 3.11 with distutils for the legacy client: install Debian's "
                                  "python3.11 and python3-distutils, or pyenv's 3.11, or set LEGACY_PYTHON311")
    return found


@functools.cache
def python27() -> str | None:
    """Python 2.7 for the real pypissh, or None (Debian has had none since 11; pyenv builds one)."""
    return find_interpreter("2.7", "LEGACY_PYTHON27")


def pypissh_sdist() -> Path:
    """The pinned pypissh sdist, downloaded once per virtualenv and checked against its hash."""
    path = CACHE / PYPISSH_SDIST
    if path.is_file() and _hash_matches(path):
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                           "--require-hashes", "--disable-pip-version-check", "-r", str(PYPISSH_REQUIREMENT),
                           "--dest", str(CACHE)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not path.is_file():
        raise LegacyClientMissing(f"cannot download pypissh 1.4 from the package index: {done.stderr.strip()[-500:]}")
    return path


def _hash_matches(path: Path) -> bool:
    wanted = PYPISSH_REQUIREMENT.read_text().split("--hash=sha256:")[1].split()[0]
    return hashlib.sha256(path.read_bytes()).hexdigest() == wanted


def install_pypissh(python: str, userbase: Path) -> None:
    """Install the real pypissh into the user site under `userbase`, as `setup.py install --user`
    did on users' machines (the module and its .pth next to each other)."""
    with tempfile.TemporaryDirectory() as work:
        with tarfile.open(pypissh_sdist()) as archive:
            archive.extractall(work, filter="data")
        source = Path(work) / PYPISSH_SDIST.removesuffix(".tar.gz")
        done = subprocess.run([python, "setup.py", "-q", "install", "--user"], cwd=source, capture_output=True,
                              text=True, timeout=300, env={**_plain_environment(), "PYTHONUSERBASE": str(userbase)})
    if done.returncode != 0:
        raise LegacyClientMissing(f"pypissh 1.4 did not install on {python}: {done.stderr.strip()[-500:]}")


def _plain_environment() -> dict[str, str]:
    """This environment without the variables that would point Python 2.7 at our packages."""
    return {name: value for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONUSERBASE")}


def ssh_for_pypissh(folder: Path, *, port: int, identity: Path, known_hosts: Path) -> Path:
    """A folder to put first on PATH, holding an `ssh` that reads a configuration sending
    pypissh's hard-coded host to the gateway on 127.0.0.1:`port` with `identity`: what a user's
    ~/.ssh/config (or DNS) did. OpenSSH reads ~/.ssh from the passwd entry, not $HOME, hence -F."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "ssh_config"
    config.write_text(f"Host {PYPISSH_HOST}\n    HostName 127.0.0.1\n    Port {port}\n    IdentityFile {identity}\n"
                      f"    IdentitiesOnly yes\n    BatchMode yes\n    StrictHostKeyChecking yes\n"
                      f"    UserKnownHostsFile {known_hosts}\n    LogLevel ERROR\n")
    ssh = shutil.which("ssh") or "/usr/bin/ssh"
    wrapper = folder / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.join([ssh, "-F", str(config)])} "$@"\n')
    wrapper.chmod(0o755)
    return folder


def run_real_pypissh(project: Path, args: Sequence[str], *, python: str, userbase: Path, home: Path,
                     path_first: Path, text: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """`python2.7 setup.py <args>` in `project`, with pypissh (installed under `userbase`) active,
    HOME=`home` for its ~/.pypirc, and `path_first` (see `ssh_for_pypissh`) first on PATH. With
    `text=False` the output stays bytes: Python 2 prints a reason phrase's bytes as they came."""
    environment = _plain_environment()
    environment.update(HOME=str(home), PYTHONUSERBASE=str(userbase), PYTHONDONTWRITEBYTECODE="1",
                       PATH=f"{path_first}{os.pathsep}{environment.get('PATH', '/usr/bin:/bin')}")
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        environment.pop(name, None)
        environment.pop(name.upper(), None)
    return subprocess.run([python, "setup.py", *args], cwd=project, env=environment, capture_output=True,
                          text=text, timeout=timeout, input="" if text else b"")
