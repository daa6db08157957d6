"""Which account owns an active key: the login lookup, read with the bare database driver.

sshd runs `authorized-keys-command` twice per login. When no local replica answers it, the
command reads the registry itself, and must not pay SQLAlchemy's import for one query: this
module uses only the standard library's `sqlite3`, or `psycopg` for a PostgreSQL registry (the
one driver the database_url needs). The query is `AccountStore.identity_for_key`'s, reduced to
the account's name; tests/test_keyline.py checks that both agree, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os

_ACCOUNT_FOR_KEY = (
    "SELECT accounts.name FROM ssh_keys JOIN accounts ON accounts.id = ssh_keys.account_id"
    " WHERE ssh_keys.fingerprint = {param} AND ssh_keys.revoked_at IS NULL AND accounts.disabled = {false}"
)
SQLITE_QUERY = _ACCOUNT_FOR_KEY.format(param="?", false="0")
POSTGRES_QUERY = _ACCOUNT_FOR_KEY.format(param="%s", false="false")
_POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")


class KeylineError(Exception):
    """The registry cannot be read; the message names the cause for sshd's log."""


def account_for_key(database_url: str, fingerprint: str) -> str | None:
    """The name of the enabled account whose active key has `fingerprint`, or None."""
    scheme, _, rest = database_url.partition("://")
    if scheme == "sqlite":
        return _sqlite(rest, fingerprint)
    if scheme in _POSTGRES_SCHEMES:
        return _postgres("postgresql://" + rest, fingerprint)
    raise KeylineError(f"unsupported database_url scheme {scheme!r}")


def _sqlite(rest: str, fingerprint: str) -> str | None:
    # sqlite:///relative/path, sqlite:////absolute/path (SQLAlchemy's forms); no query options.
    path = rest[1:].partition("?")[0] if rest.startswith("/") else ""
    if not path or path == ":memory:":
        raise KeylineError("the registry is an in-memory database")
    if not os.path.exists(path):  # sqlite3 would create an empty one: never create state here
        raise KeylineError(f"no registry at {path}")
    import sqlite3

    conn = sqlite3.connect(path, timeout=30)
    try:
        row = conn.execute(SQLITE_QUERY, (fingerprint,)).fetchone()
    except sqlite3.Error as exc:
        raise KeylineError(type(exc).__name__) from None
    finally:
        conn.close()
    return row[0] if row else None


def _postgres(url: str, fingerprint: str) -> str | None:
    try:
        import psycopg
    except ImportError:
        raise KeylineError("psycopg is not installed (pip install 'pypissh-gateway[postgres]')") from None
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute(POSTGRES_QUERY, (fingerprint,)).fetchone()
    except psycopg.Error as exc:
        raise KeylineError(type(exc).__name__) from None
    return row[0] if row else None
