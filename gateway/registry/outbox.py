"""The outbox: one row per notification email sent, being sent, or queued (campaigns and reminders).

A row is claimed as `sending` (with its Message-ID) before the message goes to the mail server and
marked `sent` once the server accepted it. A `sending` row left by a crash means "maybe delivered":
it is never sent again automatically (see migrate/campaigns.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, func, insert, select, update

from gateway.registry.engine import inserted_id
from gateway.registry.schema import notification_sends


@dataclass(frozen=True)
class NotificationSend:
    id: int
    campaign: str
    account_id: int
    email: str | None
    status: str  # queued | sending | sent | failed | skipped
    created_at: dt.datetime
    sent_at: dt.datetime | None
    message_id: str | None
    error: str | None


def _send_from_row(row: Any) -> NotificationSend:
    return NotificationSend(id=row.id, campaign=row.campaign, account_id=row.account_id, email=row.email,
                            status=row.status, created_at=row.created_at, sent_at=row.sent_at,
                            message_id=row.message_id, error=row.error)


class Outbox:
    def __init__(self, engine: Engine):
        self.engine = engine

    def sends(self, *, campaign: str | None = None, account_ids: Iterable[int] | None = None,
              statuses: Iterable[str] | None = None) -> list[NotificationSend]:
        query = select(notification_sends).order_by(notification_sends.c.id)
        if campaign is not None:
            query = query.where(notification_sends.c.campaign == campaign)
        if account_ids is not None:
            query = query.where(notification_sends.c.account_id.in_(list(account_ids)))
        if statuses is not None:
            query = query.where(notification_sends.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [_send_from_row(row) for row in conn.execute(query)]

    def _covering_sends(self, conn: Connection, account_id: int, campaign: str | None, since: dt.datetime | None,
                        *, pending: tuple[str, ...], exclude: int | None = None) -> list[int]:
        """Rows that make another message to this account unnecessary: delivered (or maybe
        delivered) since `since`, or still waiting in one of the `pending` states."""
        table = notification_sends
        delivered: ColumnElement[bool] = table.c.status.in_(("sent", "sending"))
        if since is not None:
            delivered = delivered & (func.coalesce(table.c.sent_at, table.c.created_at) >= since)
        query = select(table.c.id).where(table.c.account_id == account_id, delivered | table.c.status.in_(pending))
        if campaign is not None:
            query = query.where(table.c.campaign == campaign)
        if exclude is not None:
            query = query.where(table.c.id != exclude)
        return [row.id for row in conn.execute(query)]

    def _insert_unless_covered(self, values: dict[str, Any], campaign: str | None, since: dt.datetime | None,
                               pending: tuple[str, ...]) -> int | None:
        account_id = values["account_id"]
        with self.engine.begin() as conn:
            if self._covering_sends(conn, account_id, campaign, since, pending=pending):
                return None
            new_id = inserted_id(conn.execute(insert(notification_sends).values(**values)))
        # Two processes may both pass the check above. Each looks again after its own commit; the
        # later of the two always sees the other and backs off, so at most one message goes out.
        with self.engine.begin() as conn:
            if self._covering_sends(conn, account_id, campaign, since, pending=pending, exclude=new_id):
                conn.execute(notification_sends.delete().where(notification_sends.c.id == new_id))
                return None
        return new_id

    def claim_send(self, campaign: str, account_id: int, email: str, message_id: str, now: dt.datetime,
                   *, since: dt.datetime | None = None) -> int | None:
        """Claim the (campaign, account) message before it is sent: the new row's id, or None when
        a row sent (or maybe sent) since `since` (ever, when None) already covers it."""
        values = dict(campaign=campaign, account_id=account_id, email=email, status="sending",
                      created_at=now, message_id=message_id)
        return self._insert_unless_covered(values, campaign, since, pending=())

    def claim_queued(self, send_id: int, email: str, message_id: str) -> bool:
        """Take a queued reminder for sending; False when another process took it first."""
        with self.engine.begin() as conn:
            done = conn.execute(update(notification_sends).where(
                notification_sends.c.id == send_id, notification_sends.c.status == "queued"
            ).values(status="sending", email=email, message_id=message_id))
        return done.rowcount == 1

    def finish_send(self, send_id: int, status: str, *, sent_at: dt.datetime | None = None,
                    error: str | None = None) -> None:
        """Record how a claimed message ended: sent, failed, or skipped (with the reason)."""
        with self.engine.begin() as conn:
            conn.execute(update(notification_sends).where(notification_sends.c.id == send_id)
                         .values(status=status, sent_at=sent_at, error=error))

    def queue_reminder(self, account_id: int, email: str | None, now: dt.datetime,
                       since: dt.datetime) -> int | None:
        """Queue a per-use `reminder` unless the account was emailed since `since` or one waits."""
        values = dict(campaign="reminder", account_id=account_id, email=email, status="queued", created_at=now)
        return self._insert_unless_covered(values, None, since, pending=("queued",))

