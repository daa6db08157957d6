"""The shared registry: one database engine, a store per concern.

    registry = Registry.from_url(settings.database_url)
    registry.accounts   accounts and their sealed tokens
    registry.keys       the accounts' SSH keys (the login lookup)
    registry.schedule   the deprecation schedule's windows
    registry.events     one upload event per SSH session, and what is read back from them
    registry.outbox     notification emails: campaigns and per-use reminders
    registry.reports    the report's aggregates (read-only: may run against a standby)
    registry.evidence   what the index lists for projects uploaded over SSH: who has switched
    registry.audit      the admin journal: every change made through the command-line tools

Only the modules of this package write SQL. Importing the package itself costs nothing: the
stores (and SQLAlchemy) load on first use of a name, so `keyline`, the one stdlib-only module
here, serves sshd's AuthorizedKeysCommand without them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gateway.registry.accounts import Account, AccountStore
    from gateway.registry.audit import Actor, AuditEntry, AuditStore
    from gateway.registry.engine import AdminInputError, make_engine, utcnow
    from gateway.registry.events import EventStore, UploadEvent
    from gateway.registry.evidence import EvidenceStore
    from gateway.registry.keys import Identity, KeyRecord, KeyStore
    from gateway.registry.outbox import NotificationSend, Outbox
    from gateway.registry.reports import ReportQueries
    from gateway.registry.schedule import ScheduleStore

__all__ = ["Account", "Actor", "AdminInputError", "AuditEntry", "Identity", "KeyRecord", "NotificationSend", "Registry",
           "UploadEvent", "make_engine", "utcnow"]

# name -> the module of this package that defines it, imported on first use.
_LAZY = {
    "Account": "accounts", "AccountStore": "accounts",
    "Identity": "keys", "KeyRecord": "keys", "KeyStore": "keys",
    "Actor": "audit", "AuditEntry": "audit", "AuditStore": "audit",
    "AdminInputError": "engine", "make_engine": "engine", "utcnow": "engine",
    "EventStore": "events", "UploadEvent": "events",
    "EvidenceStore": "evidence",
    "NotificationSend": "outbox", "Outbox": "outbox",
    "ReportQueries": "reports",
    "ScheduleStore": "schedule",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


@dataclass(frozen=True)
class Registry:
    engine: Engine
    accounts: AccountStore
    keys: KeyStore
    schedule: ScheduleStore
    events: EventStore
    outbox: Outbox
    reports: ReportQueries
    evidence: EvidenceStore
    audit: AuditStore

    @classmethod
    def on(cls, engine: Engine) -> Registry:
        """Every store on one engine (one connection pool)."""
        from gateway.registry.accounts import AccountStore
        from gateway.registry.audit import AuditStore
        from gateway.registry.events import EventStore
        from gateway.registry.evidence import EvidenceStore
        from gateway.registry.keys import KeyStore
        from gateway.registry.outbox import Outbox
        from gateway.registry.reports import ReportQueries
        from gateway.registry.schedule import ScheduleStore

        accounts = AccountStore(engine)
        return cls(engine, accounts, KeyStore(engine, accounts), ScheduleStore(engine), EventStore(engine),
                   Outbox(engine), ReportQueries(engine), EvidenceStore(engine), AuditStore(engine))

    @classmethod
    def from_url(cls, url: str) -> Registry:
        from gateway.registry.engine import make_engine

        return cls.on(make_engine(url))

    def ping(self) -> bool:
        from sqlalchemy import select

        with self.engine.connect() as conn:
            conn.execute(select(1))
        return True

    def close(self) -> None:
        """Close the pooled connections (the stores stay usable: the pool reopens on demand)."""
        self.engine.dispose()
