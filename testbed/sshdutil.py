"""What a test sshd needs from the machine: a command path sshd will agree to run.

sshd runs an AuthorizedKeysCommand only if the program and every directory above it are owned by
root and writable by nobody else; a checkout under /tmp or a home directory fails that test. A
small wrapper in a fresh root-owned directory under /run passes it, wherever the checkout is.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from testbed import SOURCE_ROOT


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
    if subprocess.run(["getent", "passwd", user], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--shell", "/bin/sh", "--password", "*", user], check=True)
    shadow = subprocess.run(["getent", "shadow", user], capture_output=True, text=True).stdout
    if shadow.split(":")[1:2] and shadow.split(":")[1].startswith("!"):
        subprocess.run(["usermod", "--password", "*", user], check=True)


def session_program(folder: Path, user: str = "submit") -> Path:
    """What sshd runs as `user` for a session: this virtualenv's pypissh-gateway, or, when that
    user cannot run this interpreter (it lives in a private home), a wrapper in `folder` running
    the same code with the system's Python of the same version. Raises if neither can work."""
    program = Path(sys.prefix) / "bin" / "pypissh-gateway"
    runnable = subprocess.run(["su", user, "-s", "/bin/sh", "-c", f"{sys.executable} -c pass"],
                              capture_output=True, cwd="/")
    if runnable.returncode == 0:
        return program
    system_python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system_python.exists():
        raise RuntimeError(f"user {user} cannot run {sys.executable} and there is no {system_python}")
    wrapper = folder / "pypissh-gateway"
    path = os.pathsep.join([sysconfig.get_paths()["purelib"], str(SOURCE_ROOT)])
    # What the installed console script runs, started as cheaply: -S, since everything comes from
    # PYTHONPATH and the system's site would only add its own .pth hooks to every start (on some
    # machines one that imports certifi, 35 ms), and no runpy.
    code = f"import sys; sys.argv[0] = {str(wrapper)!r}; from gateway.entry import main; main()"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(path)} exec {system_python} -S -c {shlex.quote(code)} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper
