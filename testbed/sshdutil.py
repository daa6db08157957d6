"""What a test sshd needs from the machine: a command path sshd will agree to run.

sshd runs an AuthorizedKeysCommand only if the program and every directory above it are owned by
root and writable by nobody else; a checkout under /tmp or a home directory fails that test. A
small wrapper in a fresh root-owned directory under /run passes it, wherever the checkout is.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from testbed import SOURCE_ROOT, free_port, terminate

SSHD = "/usr/sbin/sshd"


def privilege_separation_dir() -> None:
    """Make the directory every sshd invocation, `sshd -t` included, insists on. It lives on /run,
    so a fresh boot has none until something (a service unit, or this) makes it."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


def unsafe_for_sshd(path: Path) -> str | None:
    """Why sshd would refuse to run `path` as AuthorizedKeysCommand, or None."""
    for part in [path, *path.parents]:
        info = part.stat()
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"{part} is not owned by root or is writable by others"
    return None


def root_owned_wrapper(target: Path, name: str = "pypissh-gateway") -> Path:
    """A root-owned script that execs `target` with its arguments; remove with `remove_wrapper`."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path("/usr/local/lib")
    folder = Path(tempfile.mkdtemp(prefix="pypissh-sshd-", dir=base))
    folder.chmod(0o755)
    wrapper = folder / name
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(str(target))} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def remove_wrapper(wrapper: Path) -> None:
    shutil.rmtree(wrapper.parent, ignore_errors=True)


def ensure_submit_user(user: str = "submit") -> None:
    """The local account sshd logs users in as ('*': no password, not locked, so sshd without PAM
    accepts key logins)."""
    def exists() -> bool:
        return subprocess.run(["getent", "passwd", user], capture_output=True).returncode == 0

    if not exists():
        added = subprocess.run(["useradd", "--system", "--home-dir", "/", "--shell", "/bin/sh", "--password", "*",
                                user], capture_output=True, text=True)
        if added.returncode != 0 and not exists():  # not just another test process adding it first
            raise RuntimeError(f"cannot add user {user}: {added.stderr.strip()}")
    elif not Path(pwd.getpwnam(user).pw_dir).is_dir():  # made by an older set-up without a home
        subprocess.run(["usermod", "--home", "/", user], capture_output=True)
    shadow = subprocess.run(["getent", "shadow", user], capture_output=True, text=True).stdout
    if shadow.split(":")[1:2] and shadow.split(":")[1].startswith("!"):
        subprocess.run(["usermod", "--password", "*", user], check=True)


def session_python(user: str = "submit") -> Path:
    """An interpreter `user` can run: this virtualenv's, or, when it lives in a private home, the
    system's Python of the same version. Raises if neither can work."""
    runnable = subprocess.run(["su", user, "-s", "/bin/sh", "-c", f"{sys.executable} -c pass"],
                              capture_output=True, cwd="/")
    if runnable.returncode == 0:
        return Path(sys.executable)
    system_python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system_python.exists():
        raise RuntimeError(f"user {user} cannot run {sys.executable} and there is no {system_python}")
    return system_python


def session_program(folder: Path, user: str = "submit") -> Path:
    """What sshd runs as `user` for a session: this virtualenv's pypissh-gateway, or, when that
    user cannot run this interpreter (it lives in a private home), a wrapper in `folder` running
    the same code with the system's Python of the same version. Raises if neither can work."""
    program = Path(sys.prefix) / "bin" / "pypissh-gateway"
    system_python = session_python(user)
    if system_python == Path(sys.executable):
        return program
    wrapper = folder / "pypissh-gateway"
    path = os.pathsep.join([sysconfig.get_paths()["purelib"], str(SOURCE_ROOT)])
    # What the installed console script runs, started as cheaply: -S, since everything comes from
    # PYTHONPATH and the system's site would only add its own .pth hooks to every start (on some
    # machines one that imports certifi, 35 ms), and no runpy.
    code = f"import sys; sys.argv[0] = {str(wrapper)!r}; from gateway.entry import main; main()"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(path)} exec {system_python} -S -c {shlex.quote(code)} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


class Sshd:
    """A real sshd on a free port of 127.0.0.1, its configuration, host key, log and a
    known_hosts line for it in `folder`; `body` adds the lines that make each use differ
    (AuthorizedKeysFile or AuthorizedKeysCommand, LogLevel, algorithms)."""

    def __init__(self, folder: Path, body: str, name: str = "sshd", user: str = "submit"):
        self.folder = folder
        self.port = free_port()
        self.host_key = folder / f"{name}_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)
        # MaxStartups: the default (10:30:100) drops unauthenticated connections beyond 10, which
        # a benchmark at concurrency 32 from one address would trip.
        self.config = folder / f"{name}_sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {folder / (name + '.pid')}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nPermitRootLogin no\nMaxStartups 2000\nMaxSessions 10\n"
            f"AllowUsers {user}\n" + body)
        self.log = folder / f"{name}_sshd.log"
        self.known_hosts = folder / f"{name}_known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} "
                                    + " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2]) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "Sshd":
        privilege_separation_dir()  # before `sshd -t`, which also refuses to run without it
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd rejects {self.config}: {check.stderr}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while b"Server listening" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.log.read_text()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        terminate(self.proc)
