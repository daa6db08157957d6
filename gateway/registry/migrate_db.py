"""Schema migrations with Alembic, run programmatically (`pypissh-gateway db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from gateway.loginsettings import sqlite_path
from gateway.registry.engine import create_sqlite_file, make_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema; the one place a registry is created (a SQLite file 0600)."""
    path = sqlite_path(url)
    if path is not None:
        create_sqlite_file(path)
    command.upgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


MISSING, BEHIND, CURRENT, UNKNOWN = "missing", "behind", "current", "unknown"


def schema_state(url: str) -> tuple[str, str | None]:
    """(state, revision): `missing` when there is no registry (no SQLite file, or a database without
    our schema), `behind` when `db upgrade` has migrations to run, `current`, or `unknown` when a
    newer version migrated it. Never creates anything; database errors propagate."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return MISSING, None
    engine = make_engine(url)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    if revision is None:
        return MISSING, None
    if revision == head_revision():
        return CURRENT, revision
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}
    return (BEHIND if revision in known else UNKNOWN), revision
