"""The deprecation schedule's windows, as admins set them (see gateway.lifecycle.schedule)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from gateway.lifecycle.schedule import Schedule, Window
from gateway.registry import audit as journal
from gateway.registry.audit import Actor
from gateway.registry.engine import AdminInputError, inserted_id, utcnow
from gateway.registry.schema import schedule_windows


def _window_values(conn: Connection, window_id: int) -> dict[str, Any] | None:
    """A window as the admin journal records it."""
    row = conn.execute(select(schedule_windows).where(schedule_windows.c.id == window_id)).first()
    if row is None:
        return None
    return {"kind": row.kind, "starts_at": row.starts_at, "ends_at": row.ends_at, "note": row.note,
            "state": "cancelled" if row.cancelled_at else "set"}


def _target(kind: str, window_id: int | None) -> str:
    """The journal's name for a window: `notice` and `sunset` are single, the others numbered."""
    return kind if kind in ("notice", "sunset") or window_id is None else f"{kind} {window_id}"


class ScheduleStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def windows(self) -> list[Window]:
        """Every window not cancelled, oldest first."""
        query = (select(schedule_windows).where(schedule_windows.c.cancelled_at.is_(None))
                 .order_by(schedule_windows.c.starts_at, schedule_windows.c.id))
        with self.engine.connect() as conn:
            return [Window(id=row.id, kind=row.kind, starts_at=row.starts_at, ends_at=row.ends_at, note=row.note)
                    for row in conn.execute(query)]

    def current(self) -> Schedule:
        """The schedule in force: the windows, read as one `Schedule`."""
        return Schedule.from_windows(self.windows())

    def add_window(self, kind: str, starts_at: dt.datetime, ends_at: dt.datetime | None = None,
                   note: str | None = None, *, audit: Actor | None = None) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(insert(schedule_windows).values(
                kind=kind, starts_at=starts_at, ends_at=ends_at, note=note, created_at=utcnow()))
            window_id = inserted_id(result)
            if audit is not None:
                journal.journal(conn, audit, target_kind=journal.SCHEDULE, target=_target(kind, window_id),
                                after=_window_values(conn, window_id))
        return window_id

    def end_window(self, window_id: int, ends_at: dt.datetime, *, audit: Actor | None = None) -> None:
        with self.engine.begin() as conn:
            before = _window_values(conn, window_id) if audit is not None else None
            conn.execute(update(schedule_windows).where(schedule_windows.c.id == window_id).values(ends_at=ends_at))
            if audit is not None and before is not None:
                journal.journal(conn, audit, target_kind=journal.SCHEDULE, target=_target(before["kind"], window_id),
                                before=before, after=_window_values(conn, window_id))

    def cancel_window(self, window_id: int, *, audit: Actor | None = None) -> None:
        with self.engine.begin() as conn:
            before = _window_values(conn, window_id) if audit is not None else None
            done = conn.execute(update(schedule_windows).where(
                schedule_windows.c.id == window_id, schedule_windows.c.cancelled_at.is_(None)
            ).values(cancelled_at=utcnow()))
            if done.rowcount and audit is not None and before is not None:
                journal.journal(conn, audit, target_kind=journal.SCHEDULE, target=_target(before["kind"], window_id),
                                before=before, after=_window_values(conn, window_id))
        if done.rowcount == 0:
            raise AdminInputError(window_unknown(window_id))

    def replace_window(self, kind: str, starts_at: dt.datetime | None, note: str | None = None, *,
                       audit: Actor | None = None) -> int | None:
        """Set the one notice or sunset: cancel the current ones and add the new (None: only cancel)."""
        with self.engine.begin() as conn:
            current = conn.execute(select(schedule_windows.c.id).where(
                schedule_windows.c.kind == kind, schedule_windows.c.cancelled_at.is_(None)
            ).order_by(schedule_windows.c.id)).scalars().all()
            before = _window_values(conn, current[-1]) if current and audit is not None else None
            conn.execute(update(schedule_windows).where(
                schedule_windows.c.kind == kind, schedule_windows.c.cancelled_at.is_(None)
            ).values(cancelled_at=utcnow()))
            window_id = None
            if starts_at is not None:
                window_id = inserted_id(conn.execute(insert(schedule_windows).values(
                    kind=kind, starts_at=starts_at, note=note, created_at=utcnow())))
            if audit is not None:
                journal.journal(conn, audit, target_kind=journal.SCHEDULE, target=kind, before=before,
                                after=_window_values(conn, window_id) if window_id is not None else None)
        return window_id


# -- bad admin input the schedule store refuses ---------------------------------------------------
def window_unknown(window_id: int) -> str:
    return f"no scheduled window {window_id}; `pypissh-migrate schedule show` lists them"
