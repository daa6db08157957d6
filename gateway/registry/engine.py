"""What every store of the registry shares: the engine, the clock and the error they raise.

The registry is synchronous (SQLAlchemy Core). The SSH server calls it from a worker thread so a
slow database never stalls the event loop.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event

from gateway.loginsettings import sqlite_path


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class RegistryError(Exception):
    """An admin action cannot be done; the message says why and what to do instead."""


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine with the pool settings a long-running replica needs."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        options: dict = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        if path is not None:
            # mode=rw: opening never creates the file. Only `db upgrade` creates a registry
            # (`create_sqlite_file`), so a mistyped path cannot become a new, empty registry.
            def _open_existing() -> sqlite3.Connection:
                return sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=30,
                                       check_same_thread=False)

            options = {"creator": _open_existing}
        engine = create_engine(url, echo=echo, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL lets readers and a writer work together
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # pre_ping: a restarted database heals without restarting replicas.
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def create_sqlite_file(path: Path) -> bool:
    """Create an empty SQLite registry file, readable by its owner only (SQLite gives its -wal and
    -shm files the same mode); its folder is made 0700 when missing. False when it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """Aggregates (max) bypass the column type on SQLite: make them aware UTC again."""
    if value is None or isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc)
