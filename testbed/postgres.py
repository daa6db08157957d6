"""Throwaway PostgreSQL databases on the machine's server (127.0.0.1:5432, user postgres, trust
authentication, as `./dev test` sets it up), for tests and benchmarks.

    reason = unavailable_reason()             # why PostgreSQL cannot be used; None when it can
    with temporary_database("report_bench") as url:
        ...                                   # postgresql://postgres@127.0.0.1:5432/report_bench_<random>
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Iterator

import psycopg

HOST = "127.0.0.1"
PORT = 5432
ADMIN_URL = f"postgresql://postgres@{HOST}:{PORT}/postgres"


def unavailable_reason() -> str | None:
    """None when PostgreSQL accepts connections, else the reason it cannot be used."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {HOST}:{PORT} is not usable ({str(exc).strip().splitlines()[0][:120]})"


@contextlib.contextmanager
def temporary_database(prefix: str = "pypissh_test") -> Iterator[str]:
    """An empty database for the block, dropped afterwards (connections still open are cut)."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@{HOST}:{PORT}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
