"""What every store of the registry shares: the engine, the clock and the error they raise.

The registry is synchronous (SQLAlchemy Core). The SSH server calls it from a worker thread so a
slow database never stalls the event loop.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, create_engine, event


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class RegistryError(Exception):
    """An admin action cannot be done; the message says why and what to do instead."""


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine with the pool settings a long-running replica needs."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False})

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


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """Aggregates (max) bypass the column type on SQLite: make them aware UTC again."""
    if value is None or isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc)
