"""The upload events: one row per SSH session, and what the gateway and the tools read back.

An upload is written twice: as "forwarding" just before it is handed to the upload server, and
with its outcome once that answered. A replica that dies in between leaves the "forwarding" row,
so every upload that reached the upload server has a row, whose outcome reads "unknown" in reports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, bindparam, delete, exists, func, insert, or_, select, update

from gateway.registry.engine import aware, inserted_id
from gateway.registry.schema import ssh_keys, upload_events


@dataclass
class UploadEvent:
    """One SSH session's exchange. Never the file's content, never a credential."""

    at: dt.datetime
    outcome: str
    account_id: int | None = None
    account_name: str | None = None
    key_fingerprint: str | None = None
    client_addr: str | None = None
    ssh_client_version: str | None = None
    user_agent: str | None = None
    action: str | None = None
    project: str | None = None
    version: str | None = None
    filename: str | None = None
    size: int | None = None
    sha256: str | None = None
    upstream_status: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    legacy_crypto: bool = False
    replica: str | None = None
    id: int | None = None  # set once the row is written; later writes update that row


# The per-upload statements are built once, with their values bound at execution (see record).
_INSERT_EVENT = insert(upload_events)
_UPDATE_EVENT = update(upload_events).where(upload_events.c.id == bindparam("event_id"))
_TOUCH_KEY = (update(ssh_keys).where(ssh_keys.c.fingerprint == bindparam("key_fp"))
              .values(last_used_at=bindparam("used_at")))


def _has_later_event() -> ColumnElement[bool]:
    """True for an event whose account has a later one (by time, then id): not its latest."""
    later = upload_events.alias("later")
    return exists().where(later.c.account_id == upload_events.c.account_id,
                          or_(later.c.at > upload_events.c.at,
                              and_(later.c.at == upload_events.c.at, later.c.id > upload_events.c.id)))


def _prunable(before: dt.datetime) -> ColumnElement[bool]:
    """Events older than `before`, except each account's latest (its last use stays known)."""
    return and_(upload_events.c.at < before,
                or_(upload_events.c.account_id.is_(None), _has_later_event()))


class EventStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # -- retention (`pypissh-migrate prune`) ----------------------------------------------------
    def prune_counts(self, before: dt.datetime) -> tuple[int, int]:
        """(events older than `before` that pruning deletes, those it keeps as accounts' latest)."""
        with self.engine.connect() as conn:
            prunable = conn.execute(select(func.count()).select_from(upload_events)
                                    .where(_prunable(before))).scalar_one()
            older = conn.execute(select(func.count()).select_from(upload_events)
                                 .where(upload_events.c.at < before)).scalar_one()
        return prunable, older - prunable

    def prune_batch(self, before: dt.datetime, batch: int) -> int:
        """Delete at most `batch` prunable events, oldest first, in one transaction; how many went."""
        with self.engine.begin() as conn:
            ids = conn.execute(select(upload_events.c.id).where(_prunable(before))
                               .order_by(upload_events.c.id).limit(batch)).scalars().all()
            if ids:
                conn.execute(delete(upload_events).where(upload_events.c.id.in_(ids)))
        return len(ids)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(upload_events)).scalar_one()

    def record(self, event_: UploadEvent) -> None:
        """Store one session's event and mark its key as used; an event written before (its `id`
        set) is updated in place."""
        # The statements are built once and the values passed at execution: building them per call
        # made SQLAlchemy coerce every column again, a fifth of the gateway's CPU per upload.
        values = {name: value for name, value in vars(event_).items() if name != "id"}
        with self.engine.begin() as conn:
            if event_.id is not None:
                conn.execute(_UPDATE_EVENT, {**values, "event_id": event_.id})
                return
            event_.id = inserted_id(conn.execute(_INSERT_EVENT, values))
            if event_.key_fingerprint and event_.account_id is not None:
                conn.execute(_TOUCH_KEY, {"key_fp": event_.key_fingerprint, "used_at": event_.at})

    def account_activity(self, account_id: int) -> dict[str, Any]:
        """Last use and projects uploaded through the gateway (for `accounts show` and guides)."""
        with self.engine.connect() as conn:
            last = conn.execute(select(func.max(upload_events.c.at))
                                .where(upload_events.c.account_id == account_id)).scalar()
            projects = conn.execute(
                select(upload_events.c.project, func.max(upload_events.c.at).label("last"),
                       func.count().label("uploads"))
                .where(upload_events.c.account_id == account_id, upload_events.c.project.is_not(None))
                .group_by(upload_events.c.project).order_by(upload_events.c.project)).all()
        return {
            "last_use": last,
            "projects": [{"name": p.project, "last": p.last, "uploads": p.uploads} for p in projects],
        }

    def last_use_by_account(self) -> dict[int, dt.datetime]:
        """When each account last used the SSH path: its latest event or key use."""
        result: dict[int, dt.datetime] = {}
        with self.engine.connect() as conn:
            events = conn.execute(select(upload_events.c.account_id, func.max(upload_events.c.at).label("last"))
                                  .where(upload_events.c.account_id.is_not(None))
                                  .group_by(upload_events.c.account_id)).all()
            keys = conn.execute(select(ssh_keys.c.account_id, func.max(ssh_keys.c.last_used_at).label("last"))
                                .group_by(ssh_keys.c.account_id)).all()
        for row in [*events, *keys]:
            last = aware(row.last)
            if last is not None and (row.account_id not in result or last > result[row.account_id]):
                result[row.account_id] = last
        return result

    def client_versions(self, account_id: int, limit: int = 5) -> list[dict[str, Any]]:
        """The clients an account used, most recent first (for the evidence in emails)."""
        query = (select(upload_events.c.user_agent, upload_events.c.ssh_client_version,
                        func.max(upload_events.c.at).label("last"), func.count().label("uses"))
                 .where(upload_events.c.account_id == account_id)
                 .group_by(upload_events.c.user_agent, upload_events.c.ssh_client_version)
                 .order_by(func.max(upload_events.c.at).desc()).limit(limit))
        with self.engine.connect() as conn:
            return [{"user_agent": row.user_agent, "ssh_client_version": row.ssh_client_version,
                     "last": aware(row.last), "uses": row.uses} for row in conn.execute(query)]

