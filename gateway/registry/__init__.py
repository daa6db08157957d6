"""The shared registry: one database engine, a store per concern.

    registry = Registry.from_url(settings.database_url)
    registry.accounts   accounts, their SSH keys and sealed tokens (the login lookup)
    registry.schedule   the deprecation schedule's windows
    registry.events     one upload event per SSH session, and what is read back from them
    registry.outbox     notification emails: campaigns and per-use reminders
    registry.reports    the report's aggregates (read-only: may run against a standby)
    registry.evidence   what the index lists for projects uploaded over SSH: who has switched

Only the modules of this package write SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from gateway.registry.accounts import Account, AccountStore, Identity, KeyRecord
from gateway.registry.engine import RegistryError, make_engine, utcnow
from gateway.registry.events import EventStore, UploadEvent
from gateway.registry.evidence import EvidenceStore
from gateway.registry.outbox import NotificationSend, Outbox
from gateway.registry.reports import ReportQueries
from gateway.registry.schedule import ScheduleStore

__all__ = ["Account", "Identity", "KeyRecord", "NotificationSend", "Registry", "RegistryError", "UploadEvent",
           "make_engine", "utcnow"]


@dataclass(frozen=True)
class Registry:
    engine: Engine
    accounts: AccountStore
    schedule: ScheduleStore
    events: EventStore
    outbox: Outbox
    reports: ReportQueries
    evidence: EvidenceStore

    @classmethod
    def on(cls, engine: Engine) -> "Registry":
        """Every store on one engine (one connection pool)."""
        return cls(engine, AccountStore(engine), ScheduleStore(engine), EventStore(engine), Outbox(engine),
                   ReportQueries(engine), EvidenceStore(engine))

    @classmethod
    def from_url(cls, url: str) -> "Registry":
        return cls.on(make_engine(url))

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(select(1))
        return True

    def close(self) -> None:
        """Close the pooled connections (the stores stay usable: the pool reopens on demand)."""
        self.engine.dispose()
