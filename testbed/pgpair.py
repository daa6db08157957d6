"""A PostgreSQL primary and its streaming standby of our own, for failover tests and benchmarks.

    with standby_pair() as pair:          # initdb, pg_basebackup -R, both started
        pair.url("pypissh")                      # postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2/pypissh?...
        pair.primary.stop_hard()                 # pg_ctl stop -m immediate: a crash, as far as clients know
        pair.standby.promote()                   # pg_ctl promote: the standby accepts writes

Both clusters live in one private temporary folder, on free ports, and are stopped and removed when the block ends,
whatever happens in it; the machine's own PostgreSQL is never touched. PostgreSQL refuses to run
as root, so under root the clusters belong to the `postgres` user.

Replication is synchronous (`synchronous_standby_names = '*'`): a commit returns only once the
standby has the WAL, so a hard stop of the primary loses no committed row, and a test can assert
that every published file has its event on the new primary without racing the WAL stream.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg

from testbed import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
START_TIMEOUT = 60


def binaries() -> Path | None:
    """Where initdb, pg_ctl and pg_basebackup are (Debian's layout first, then PATH)."""
    if (BIN / "pg_ctl").exists():
        return BIN
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def unavailable_reason() -> str | None:
    """None when this machine can run clusters of its own, else why not."""
    if binaries() is None:
        return "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root, and there is no '{OS_USER}' user to own the clusters"
    return None


def _as_owner():
    """preexec_fn dropping root to the postgres user (None when not root)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(OS_USER)

    def drop() -> None:
        os.setgid(entry.pw_gid)
        os.initgroups(OS_USER, entry.pw_gid)
        os.setuid(entry.pw_uid)

    return drop


def _run(*argv: str, timeout: float = START_TIMEOUT) -> None:
    tool = binaries()
    assert tool is not None
    done = subprocess.run([str(tool / argv[0]), *argv[1:]], preexec_fn=_as_owner(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.strip()}")


@dataclass
class Cluster:
    """One PostgreSQL server: its data directory, its port and its log."""

    name: str
    datadir: Path
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.datadir.parent / f"{self.name}.log"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _run("pg_ctl", "start", "-w", "-D", str(self.datadir), "-l", str(self.log_file),
             "-o", f"-p {self.port} -k {self.datadir.parent}")

    def stop_hard(self) -> None:
        """`pg_ctl stop -m immediate`: every backend dies at once, no checkpoint, as in a crash."""
        _run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.datadir))

    def promote(self) -> None:
        """`pg_ctl promote -w`: returns once the standby accepts writes."""
        _run("pg_ctl", "promote", "-w", "-D", str(self.datadir))

    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def query(self, sql: str, database: str = "postgres") -> list:
        """The rows of `sql`, run as the superuser (none for a statement that returns no rows)."""
        with psycopg.connect(self.admin_url(database), connect_timeout=3, autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description is not None else []

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class StandbyPair:
    primary: Cluster
    standby: Cluster

    def url(self, database: str, **params: str) -> str:
        """libpq's multi-host URL, primary first, asking for the server that accepts writes."""
        query = "&".join(f"{k}={v}" for k, v in {"target_session_attrs": "read-write", **params}.items())
        return f"postgresql://postgres@{self.primary.address},{self.standby.address}/{database}?{query}"

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.primary.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def wait_streaming(self, timeout: float = 30.0) -> None:
        """Until the primary sees its standby streaming (and synchronous commits can return)."""
        deadline = time.monotonic() + timeout
        while not self.primary.query("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby did not stream within {timeout:.0f} s:\n{self.standby.log_tail()}")
            time.sleep(0.05)


PRIMARY_SETTINGS = """
listen_addresses = '127.0.0.1'
unix_socket_permissions = 0700
max_connections = 100
wal_level = replica
max_wal_senders = 4
hot_standby = on
synchronous_standby_names = '*'
# A throwaway cluster: durability against an OS crash buys the test nothing.
fsync = off
full_page_writes = off
"""


# After a promotion the standby is a primary without a standby: were it to wait for one, every
# commit would hang. HA managers switch this off on promotion; this standby never turns it on.
STANDBY_SETTINGS = """
synchronous_standby_names = ''
"""


def _make_base() -> Path:
    """A private folder for both clusters, owned by the user that runs them."""
    path = Path(tempfile.mkdtemp(prefix="pypissh-pgpair-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


@contextlib.contextmanager
def standby_pair() -> Iterator[StandbyPair]:
    """A primary and a streaming standby on free ports, removed again when the block ends."""
    base = _make_base()
    primary = Cluster("primary", base / "primary", free_port())
    standby = Cluster("standby", base / "standby", free_port())
    try:
        _run("initdb", "-D", str(primary.datadir), "-U", "postgres", "--auth=trust", "--no-sync",
             "--no-instructions", "-E", "UTF8", "--locale=C")
        with open(primary.datadir / "postgresql.conf", "a") as conf:
            conf.write(PRIMARY_SETTINGS)
        primary.start()
        _run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D",
             str(standby.datadir), "-R", "-X", "stream", "--no-sync")
        with open(standby.datadir / "postgresql.conf", "a") as conf:
            conf.write(STANDBY_SETTINGS)
        standby.start()
        pair = StandbyPair(primary, standby)
        pair.wait_streaming()
        yield pair
    finally:
        for cluster in (standby, primary):
            if cluster.running():
                with contextlib.suppress(Exception):
                    cluster.stop_hard()
        shutil.rmtree(base, ignore_errors=True)
