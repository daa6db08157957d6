"""The deprecation schedule's windows, as admins set them (see gateway.lifecycle.schedule)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, insert, select, update

from gateway.lifecycle.schedule import Schedule, Window
from gateway.registry.engine import RegistryError, utcnow
from gateway.registry.schema import schedule_windows


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
                   note: str | None = None) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(insert(schedule_windows).values(
                kind=kind, starts_at=starts_at, ends_at=ends_at, note=note, created_at=utcnow()))
        return result.inserted_primary_key[0]

    def end_window(self, window_id: int, ends_at: dt.datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(schedule_windows).where(schedule_windows.c.id == window_id).values(ends_at=ends_at))

    def cancel_window(self, window_id: int) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(schedule_windows).where(
                schedule_windows.c.id == window_id, schedule_windows.c.cancelled_at.is_(None)
            ).values(cancelled_at=utcnow()))
        if done.rowcount == 0:
            raise RegistryError(f"no scheduled window {window_id}; `pypissh-migrate schedule show` lists them")

    def replace_window(self, kind: str, starts_at: dt.datetime | None, note: str | None = None) -> int | None:
        """Set the one notice or sunset: cancel the current ones and add the new (None: only cancel)."""
        with self.engine.begin() as conn:
            conn.execute(update(schedule_windows).where(
                schedule_windows.c.kind == kind, schedule_windows.c.cancelled_at.is_(None)
            ).values(cancelled_at=utcnow()))
            if starts_at is None:
                return None
            result = conn.execute(insert(schedule_windows).values(
                kind=kind, starts_at=starts_at, note=note, created_at=utcnow()))
        return result.inserted_primary_key[0]
