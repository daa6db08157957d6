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
import tempfile
from pathlib import Path


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
