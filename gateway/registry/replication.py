"""What each server of a multi-host PostgreSQL registry is right now: primary, standby, or down.

    for host in host_states(settings.database_url):   # one per host of the URL, in libpq's order
        host.address, host.role, host.standbys, host.replay_bytes, ...

Read by `pypissh-gateway check`. The gateway itself never needs this: libpq finds the writable
server (`target_session_attrs=read-write`) on every new connection. Lag figures come from views an
ordinary role may see only in part (pg_stat_replication, pg_stat_wal_receiver need pg_monitor for
most columns): what cannot be read is None, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from gateway.registry.engine import database_hosts, sqlalchemy_url

PRIMARY = "primary"
STANDBY = "standby"
UNREACHABLE = "unreachable"
# What a role without pg_monitor sees instead of a WAL receiver's status.
HIDDEN = "hidden"

# A check, not a connection pool: a few seconds tell a dead server from a live one.
CONNECT_SECONDS = 3


@dataclass(frozen=True)
class StandbyLag:
    """One standby as its primary sees it (pg_stat_replication)."""

    client: str
    state: str | None
    sync_state: str | None
    replay_bytes: int | None  # WAL the primary wrote that the standby has not replayed yet
    replay_seconds: float | None  # PostgreSQL's replay_lag; None once the primary has been idle


@dataclass
class HostState:
    address: str
    role: str
    error: str | None = None
    # On a primary: its standbys.
    standbys: list[StandbyLag] = field(default_factory=list)
    # On a standby: its WAL receiver, WAL received but not replayed, and the age of the last
    # replayed commit (which also grows while the primary has nothing to commit).
    receiving: str | None = None
    replay_bytes: int | None = None
    last_replay_age: float | None = None


def is_multi_host(url: str) -> bool:
    """A PostgreSQL URL naming more than one host (False for one it cannot parse: the registry's
    own finding already says what is wrong with it)."""
    if url.partition("://")[0].partition("+")[0] != "postgresql":
        return False
    try:
        return len(database_hosts(url)) > 1
    except (ValueError, ArgumentError):
        return False


def single_host_url(url: str, address: str) -> URL:
    """`url` aimed at `address` alone, without target_session_attrs (any role may answer)."""
    parsed = make_url(sqlalchemy_url(url)).difference_update_query(["host", "target_session_attrs"])
    return parsed.update_query_dict({"host": address})


def host_states(url: str) -> list[HostState]:
    return [host_state(url, address) for address in database_hosts(url)]


def host_state(url: str, address: str) -> HostState:
    engine = create_engine(single_host_url(url, address), poolclass=NullPool,
                           connect_args={"connect_timeout": CONNECT_SECONDS})
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT pg_is_in_recovery()")).scalar():
                return _standby(conn, address)
            return _primary(conn, address)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return HostState(address, UNREACHABLE, error=(detail[0] if detail else type(exc).__name__)[:200])
    finally:
        engine.dispose()


def _primary(conn: Connection, address: str) -> HostState:
    rows = conn.execute(text(
        "SELECT coalesce(application_name, ''), host(client_addr), state, sync_state,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
        " extract(epoch FROM replay_lag)::float8"
        " FROM pg_stat_replication ORDER BY client_addr, application_name")).all()
    standbys = [StandbyLag(client=addr or name or "?", state=state, sync_state=sync, replay_bytes=behind,
                           replay_seconds=seconds)
                for name, addr, state, sync, behind, seconds in rows]
    return HostState(address, PRIMARY, standbys=standbys)


def _standby(conn: Connection, address: str) -> HostState:
    behind, age = conn.execute(text(
        "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,"
        " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8")).one()
    # No row: no WAL receiver runs. A row without a status: one runs, but this role may not see it.
    row = conn.execute(text("SELECT coalesce(status, :hidden) FROM pg_stat_wal_receiver"), {"hidden": HIDDEN}).first()
    return HostState(address, STANDBY, receiving=row[0] if row else None, replay_bytes=behind, last_replay_age=age)
