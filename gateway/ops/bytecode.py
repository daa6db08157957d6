"""`pypissh-gateway bytecode`: bytecode for the modules the commands import, and no more.

pip compiles every module of every package it installs (a third of the core virtualenv: database
dialects, test helpers and syntax highlighters nothing here imports), or none with
`--no-compile`, and then every process compiles what it imports each time it starts when it may
not write the virtualenv, as under the systemd unit (about 1 s per start). This imports every
module of `gateway` and `migrate`, as their commands do, and writes the bytecode of each module
file so imported that lies inside the virtualenv (`sys.prefix`) and has none up to date: the
standard library is the system's and keeps its own.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import py_compile
import sys
from dataclasses import dataclass, field

PACKAGES = ("gateway", "migrate")
# Modules that are programs: importing one runs it.
SCRIPTS = (".__main__", ".shimexec")


@dataclass
class Compiled:
    written: int = 0  # module files whose bytecode was written now
    current: int = 0  # module files whose bytecode was already up to date
    skipped: list[str] = field(default_factory=list)  # modules that need a missing extra


def import_everything(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Import every module of `packages` (not the SCRIPTS, which run when imported); the names
    of those that need an extra that is not installed."""
    skipped = []
    for name in packages:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            if info.name.endswith(SCRIPTS):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError:
                skipped.append(info.name)  # e.g. migrate.report.chart without matplotlib
    return skipped


def compile_imported(prefix: str = sys.prefix) -> Compiled:
    """Import everything, then write the bytecode of every imported module file under `prefix`."""
    done = Compiled(skipped=import_everything())
    root = os.path.realpath(prefix) + os.sep
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py") or not os.path.realpath(source).startswith(root):
            continue
        cached = importlib.util.cache_from_source(source)
        if _current(source, cached):
            done.current += 1
            continue
        # Timestamp-checked, as the import system writes it (py_compile would switch to hashes
        # when SOURCE_DATE_EPOCH is set, and _current would not know them).
        py_compile.compile(source, cfile=cached, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
        done.written += 1
    return done


def _current(source: str, cached: str) -> bool:
    """The bytecode file exists and was written for this source (its timestamp and size)."""
    try:
        with open(cached, "rb") as handle:
            header = handle.read(16)
        stat = os.stat(source)
    except OSError:
        return False
    return (len(header) == 16 and header[:4] == importlib.util.MAGIC_NUMBER and header[4:8] == b"\0\0\0\0"
            and int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF)
