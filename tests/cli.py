"""The console scripts as an operator runs them: each in a process of its own, from this
interpreter's bin directory, with an environment free of the caller's PYPISSH_* settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Sequence

from gateway.registry import Registry

BIN = Path(sys.executable).parent


def program(name: str, *args: str) -> list[str]:
    """The argv that runs console script `name` with `args`."""
    return [str(BIN / name), *args]


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without PYPISSH_* settings, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYPISSH_")}
    return {**env, **variables}


def run_cli(*argv: str, env: dict[str, str], stdin: str = "", cwd: Path | None = None,
            prefix: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run console script argv[0] with the rest as its arguments; text output captured."""
    return subprocess.run([*prefix, *program(*argv)], env=env, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=60)


def prepare_home(home: Path, steps: Iterable[tuple[tuple[str, ...], str]],
                 env: dict[str, str] | None = None) -> Path:
    """Run each (argv, stdin) step against `home` as an operator would, each one succeeding."""
    env = env if env is not None else environment(PYPISSH_HOME=str(home))
    for argv, stdin in steps:
        done = run_cli(*argv, env=env, stdin=stdin)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return home


def copy_home(prepared: Path, tmp_path: Path) -> Path:
    """A test's own copy of a prepared home, file modes kept."""
    copy = tmp_path / "home"
    shutil.copytree(prepared, copy)
    return copy


def home_registry(home: Path) -> Registry:
    """The registry `init` created in `home`."""
    return Registry.from_url(f"sqlite:///{home}/pypissh.sqlite3")
