"""The admin journal: who changed what through the command-line tools, when, and why.

Every change an admin makes (accounts, keys, the schedule, campaigns, imports, secret and host-key
rotations, pruning, schema migrations) is one row: the actor (the OS user the command ran as, and the machine), the
optional `--reason`, the command, the target, and the target's values before and after where they
mean something. Never a token, a key or a password: a stored token is recorded as `stored`.

The stores that make a change write its row in the same transaction (`journal`, given the
connection); commands whose change spans several transactions (an import, a campaign run, a secret
rotation, a prune) record one summary row right after it (`AuditStore.record`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select

from gateway.registry.engine import utcnow
from gateway.registry.schema import audit_events

# target_kind values
ACCOUNT = "account"
KEY = "key"
SCHEDULE = "schedule"
CAMPAIGN = "campaign"
IMPORT = "import"
SECRET_KEY = "secret_key"
HOST_KEYS = "host_keys"
EVENTS = "events"
SCHEMA = "schema"
EVIDENCE = "evidence"

MAX_REASON = 500


@dataclass(frozen=True)
class Actor:
    """Who makes a change, from where, with which command, why, and when (the command's clock)."""

    user: str
    host: str
    command: str
    reason: str | None = None
    at: dt.datetime | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    actor_host: str | None
    reason: str | None
    command: str
    target_kind: str
    target: str | None
    account_name: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _encode(values: Mapping[str, Any] | None) -> str | None:
    if values is None:
        return None
    return json.dumps(dict(values), sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def _decode(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def journal(conn: Connection, actor: Actor, *, target_kind: str, target: str | None,
            account_name: str | None = None, before: Mapping[str, Any] | None = None,
            after: Mapping[str, Any] | None = None) -> None:
    """Record one change on `conn`, inside the transaction that makes it."""
    conn.execute(insert(audit_events).values(
        at=actor.at or utcnow(), actor=actor.user[:100], actor_host=(actor.host or None) and actor.host[:255],
        reason=actor.reason[:MAX_REASON] if actor.reason else None, command=actor.command[:200],
        target_kind=target_kind, target=target[:255] if target else None,
        account_name=account_name[:100] if account_name else None,
        before=_encode(before), after=_encode(after)))


class AuditStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def record(self, actor: Actor, *, target_kind: str, target: str | None, account_name: str | None = None,
               before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None) -> None:
        """Record one change in a transaction of its own (after a change that spans several)."""
        with self.engine.begin() as conn:
            journal(conn, actor, target_kind=target_kind, target=target, account_name=account_name,
                    before=before, after=after)

    def entries(self, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                account: str | None = None, kinds: tuple[str, ...] | None = None) -> list[AuditEntry]:
        """The journal, oldest first: since <= at < until, of one account (the account itself, its
        keys, and campaign runs addressed to it by name), of some target kinds."""
        query = select(audit_events).order_by(audit_events.c.at, audit_events.c.id)
        if since is not None:
            query = query.where(audit_events.c.at >= since)
        if until is not None:
            query = query.where(audit_events.c.at < until)
        if account is not None:
            query = query.where(or_(audit_events.c.account_name == account,
                                    (audit_events.c.target_kind == ACCOUNT) & (audit_events.c.target == account)))
        if kinds:
            query = query.where(audit_events.c.target_kind.in_(kinds))
        with self.engine.connect() as conn:
            return [AuditEntry(id=row.id, at=row.at, actor=row.actor, actor_host=row.actor_host, reason=row.reason,
                               command=row.command, target_kind=row.target_kind, target=row.target,
                               account_name=row.account_name, before=_decode(row.before), after=_decode(row.after))
                    for row in conn.execute(query)]
