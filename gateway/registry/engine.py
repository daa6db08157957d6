"""What every store of the registry shares: the engine, the clock and the error they raise.

The registry is synchronous (SQLAlchemy Core). The SSH server calls it from a worker thread so a
slow database never stalls the event loop.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path
from typing import Any, overload
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from sqlalchemy import CursorResult, Engine, create_engine, event

from gateway.loginsettings import sqlite_path


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AdminInputError(Exception):
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
    url = sqlalchemy_url(url)
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


def sqlalchemy_url(url: str) -> str:
    """A PostgreSQL URL as SQLAlchemy's psycopg dialect reads it.

    `postgresql://` gets the psycopg driver. libpq's multi-host form, `postgresql://h1:5432,h2:5432/db`
    (what operators copy from the PostgreSQL manual and HA managers print), is not a URL SQLAlchemy
    can parse (it reads "5432,h2:5432" as the port); the same hosts go into repeated `host=` query
    parameters, which the dialect hands to libpq in order, so `target_session_attrs` still chooses.
    """
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.partition("+")[0] != "postgresql":
        return url
    if scheme == "postgresql":
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    parts = urlsplit(url)
    login, at, hosts = parts.netloc.rpartition("@")
    if "," not in hosts:
        return url
    query = [("host", host) for host in hosts.split(",") if host] + parse_qsl(parts.query, keep_blank_values=True)
    # By hand, not urlunsplit: an empty authority must stay "//" or the path loses its meaning.
    return f"{parts.scheme}://{login}{at}{parts.path}?{urlencode(query, safe=':[]')}"


def database_hosts(url: str) -> list[str]:
    """The `host:port` entries of a PostgreSQL URL in the order libpq tries them (one for a plain URL)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(sqlalchemy_url(url))
    hosts = parsed.query.get("host")
    if hosts:
        return [hosts] if isinstance(hosts, str) else list(hosts)
    return [f"{parsed.host or 'localhost'}:{parsed.port or 5432}"]


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


@overload
def aware(value: dt.datetime | str) -> dt.datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: dt.datetime | str | None) -> dt.datetime | None:
    """Aggregates (max) bypass the column type on SQLite (which gives text): make them aware UTC again."""
    if value is None or (isinstance(value, dt.datetime) and value.tzinfo is not None):
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC)


def inserted_id(result: CursorResult[Any]) -> int:
    """The id of the row a single-row INSERT created."""
    key = result.inserted_primary_key
    assert key is not None, "not a single-row INSERT"
    return int(key[0])
