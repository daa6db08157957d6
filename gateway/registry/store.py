"""Every query the gateway and the admin tools make; nothing else writes SQL.

The registry is synchronous (SQLAlchemy Core). The SSH server calls it from a worker thread so a
slow database never stalls the event loop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sqlalchemy import Engine, bindparam, create_engine, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.registry.schema import accounts, notification_sends, schedule_windows, ssh_keys, upload_events
from gateway.ssh.sshkeys import PublicKey

if TYPE_CHECKING:
    from gateway.lifecycle.schedule import Schedule, Window


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class RegistryError(Exception):
    """An admin action cannot be done; the message says why and what to do instead."""


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    email: str | None
    disabled: bool
    exempt: bool
    has_token: bool
    token_set_at: dt.datetime | None
    created_at: dt.datetime
    note: str | None = None


@dataclass(frozen=True)
class KeyRecord:
    id: int
    account_id: int
    account_name: str
    fingerprint: str
    algorithm: str
    bits: int | None
    public_key: str
    comment: str | None
    weak: bool
    allowed_projects: tuple[str, ...] | None
    source: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


@dataclass(frozen=True)
class Identity:
    """Who a login belongs to: what the SSH server needs to know about an authenticated key."""

    account_id: int
    account_name: str
    email: str | None
    exempt: bool
    fingerprint: str
    key_comment: str | None
    token_ciphertext: str | None
    allowed_projects: tuple[str, ...] | None


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


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine with the pool settings a long-running replica needs."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL lets readers and a writer work together
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # pre_ping: a restarted database heals without restarting replicas.
    return create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


# The per-login and per-upload statements are built once, with their values bound at execution
# (see record_event).
_IDENTITY_FOR_KEY = (
    select(accounts.c.id, accounts.c.name, accounts.c.email, accounts.c.exempt,
           accounts.c.token_ciphertext, ssh_keys.c.fingerprint, ssh_keys.c.comment,
           ssh_keys.c.allowed_projects)
    .join(accounts, accounts.c.id == ssh_keys.c.account_id)
    .where(ssh_keys.c.fingerprint == bindparam("key_fp"), ssh_keys.c.revoked_at.is_(None),
           accounts.c.disabled.is_(False))
)
_INSERT_EVENT = insert(upload_events)
_TOUCH_KEY = (update(ssh_keys).where(ssh_keys.c.fingerprint == bindparam("key_fp"))
              .values(last_used_at=bindparam("used_at")))


def _projects(text: str | None) -> tuple[str, ...] | None:
    return tuple(text.split()) if text else None


class Registry:
    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> "Registry":
        return cls(make_engine(url))

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(select(1))
        return True

    # -- accounts -------------------------------------------------------------------------------
    def add_account(self, name: str, *, email: str | None = None, exempt: bool = False,
                    note: str | None = None) -> Account:
        name = name.strip()
        if not name:
            raise RegistryError("an account needs a name (the user's name on the index)")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(accounts).values(
                    name=name, email=email, exempt=exempt, disabled=False, note=note,
                    created_at=utcnow()))
        except IntegrityError:
            raise RegistryError(f"account '{name}' already exists; see `pypissh-migrate accounts show {name}`") from None
        return self.get_account(name)

    def _account_from_row(self, row: Any) -> Account:
        return Account(
            id=row.id, name=row.name, email=row.email, disabled=row.disabled, exempt=row.exempt,
            has_token=row.token_ciphertext is not None, token_set_at=row.token_set_at,
            created_at=row.created_at, note=row.note)

    def find_account(self, name: str) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(accounts).where(accounts.c.name == name)).first()
        return self._account_from_row(row) if row else None

    def get_account(self, name: str) -> Account:
        account = self.find_account(name)
        if account is None:
            raise RegistryError(f"no account named '{name}'; `pypissh-migrate accounts list` shows them")
        return account

    def list_accounts(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(accounts).order_by(accounts.c.name)).all()
        return [self._account_from_row(row) for row in rows]

    def update_account(self, name: str, **values: Any) -> Account:
        allowed = {"email", "disabled", "exempt", "note"}
        unknown = set(values) - allowed
        if unknown:
            raise RegistryError(f"cannot change {', '.join(sorted(unknown))}")
        with self.engine.begin() as conn:
            done = conn.execute(update(accounts).where(accounts.c.name == name).values(**values))
        if done.rowcount == 0:
            raise RegistryError(f"no account named '{name}'")
        return self.get_account(name)

    def set_token_ciphertext(self, name: str, ciphertext: str | None) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(accounts).where(accounts.c.name == name).values(
                token_ciphertext=ciphertext, token_set_at=utcnow() if ciphertext else None))
        if done.rowcount == 0:
            raise RegistryError(f"no account named '{name}'")

    def token_ciphertexts(self) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(accounts.c.id, accounts.c.token_ciphertext)
                                .where(accounts.c.token_ciphertext.is_not(None))).all()
        return [(row.id, row.token_ciphertext) for row in rows]

    def replace_token_ciphertexts(self, pairs: Iterable[tuple[int, str]]) -> int:
        count = 0
        with self.engine.begin() as conn:
            for account_id, ciphertext in pairs:
                conn.execute(update(accounts).where(accounts.c.id == account_id)
                             .values(token_ciphertext=ciphertext))
                count += 1
        return count

    def swap_token_ciphertexts(self, triples: Iterable[tuple[int, str, str]]) -> list[int]:
        """Replace (account id, old, new) ciphertexts in one transaction, each only if the stored
        value is still `old` (a token set meanwhile is kept); returns the ids left unchanged."""
        unchanged: list[int] = []
        with self.engine.begin() as conn:
            for account_id, old, new in triples:
                done = conn.execute(update(accounts).where(
                    accounts.c.id == account_id, accounts.c.token_ciphertext == old
                ).values(token_ciphertext=new))
                if done.rowcount == 0:
                    unchanged.append(account_id)
        return unchanged

    # -- keys -----------------------------------------------------------------------------------
    def add_key(self, account_name: str, key: PublicKey, *, source: str = "admin",
                allowed_projects: Sequence[str] | None = None) -> KeyRecord:
        account = self.get_account(account_name)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(ssh_keys).values(
                    account_id=account.id, fingerprint=key.fingerprint, algorithm=key.algorithm,
                    bits=key.bits, public_key=key.openssh, comment=key.comment or None,
                    weak=key.weak, source=source, created_at=utcnow(),
                    allowed_projects=" ".join(allowed_projects) if allowed_projects else None))
        except IntegrityError:
            owner = self.find_key(key.fingerprint)
            whose = f"account '{owner.account_name}'" if owner else "another account"
            raise RegistryError(f"key {key.fingerprint} is already registered to {whose}; a key belongs to one account") from None
        found = self.find_key(key.fingerprint)
        assert found is not None
        return found

    def _key_query(self):
        return select(ssh_keys, accounts.c.name.label("account_name")).join(
            accounts, accounts.c.id == ssh_keys.c.account_id)

    def _key_from_row(self, row: Any) -> KeyRecord:
        return KeyRecord(
            id=row.id, account_id=row.account_id, account_name=row.account_name,
            fingerprint=row.fingerprint, algorithm=row.algorithm, bits=row.bits,
            public_key=row.public_key, comment=row.comment, weak=row.weak,
            allowed_projects=_projects(row.allowed_projects), source=row.source,
            created_at=row.created_at, revoked_at=row.revoked_at, last_used_at=row.last_used_at)

    def find_key(self, fingerprint: str) -> KeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._key_query().where(ssh_keys.c.fingerprint == fingerprint)).first()
        return self._key_from_row(row) if row else None

    def list_keys(self, account_name: str | None = None, *, include_revoked: bool = True) -> list[KeyRecord]:
        query = self._key_query().order_by(accounts.c.name, ssh_keys.c.created_at)
        if account_name is not None:
            self.get_account(account_name)
            query = query.where(accounts.c.name == account_name)
        if not include_revoked:
            query = query.where(ssh_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [self._key_from_row(row) for row in conn.execute(query)]

    def revoke_key(self, fingerprint: str) -> KeyRecord:
        with self.engine.begin() as conn:
            done = conn.execute(update(ssh_keys).where(
                ssh_keys.c.fingerprint == fingerprint, ssh_keys.c.revoked_at.is_(None)
            ).values(revoked_at=utcnow()))
        key = self.find_key(fingerprint)
        if key is None:
            raise RegistryError(f"no key with fingerprint {fingerprint}; `pypissh-migrate keys list` shows them")
        if done.rowcount == 0:
            raise RegistryError(f"key {fingerprint} was already revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC")
        return key

    def identity_for_key(self, fingerprint: str) -> Identity | None:
        """The login lookup: an active key of an enabled account, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(_IDENTITY_FOR_KEY, {"key_fp": fingerprint}).first()
        if row is None:
            return None
        return Identity(
            account_id=row.id, account_name=row.name, email=row.email, exempt=row.exempt,
            fingerprint=row.fingerprint, key_comment=row.comment,
            token_ciphertext=row.token_ciphertext, allowed_projects=_projects(row.allowed_projects))

    def touch_key(self, fingerprint: str, when: dt.datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(ssh_keys).where(ssh_keys.c.fingerprint == fingerprint)
                         .values(last_used_at=when))

    # -- schedule -------------------------------------------------------------------------------
    def schedule_windows(self) -> list["Window"]:
        """Every window not cancelled, oldest first (see gateway.lifecycle.schedule)."""
        from gateway.lifecycle.schedule import Window

        query = (select(schedule_windows).where(schedule_windows.c.cancelled_at.is_(None))
                 .order_by(schedule_windows.c.starts_at, schedule_windows.c.id))
        with self.engine.connect() as conn:
            return [Window(id=row.id, kind=row.kind, starts_at=row.starts_at, ends_at=row.ends_at, note=row.note)
                    for row in conn.execute(query)]

    def schedule(self) -> "Schedule":
        from gateway.lifecycle.schedule import Schedule

        return Schedule.from_windows(self.schedule_windows())

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

    # -- events ---------------------------------------------------------------------------------
    def record_event(self, event_: UploadEvent) -> None:
        # The statements are built once and the values passed at execution: building them per call
        # made SQLAlchemy coerce every column again, a fifth of the gateway's CPU per upload.
        with self.engine.begin() as conn:
            conn.execute(_INSERT_EVENT, dict(vars(event_)))
            if event_.key_fingerprint and event_.account_id is not None:
                conn.execute(_TOUCH_KEY, {"key_fp": event_.key_fingerprint, "used_at": event_.at})

    def events(self, *, account_name: str | None = None, limit: int | None = None) -> list[UploadEvent]:
        query = select(upload_events).order_by(upload_events.c.at, upload_events.c.id)
        if account_name is not None:
            query = query.where(upload_events.c.account_name == account_name)
        if limit is not None:
            query = query.limit(limit)
        names = [f for f in UploadEvent.__dataclass_fields__]
        with self.engine.connect() as conn:
            return [UploadEvent(**{n: row._mapping[n] for n in names}) for row in conn.execute(query)]

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

    # -- notifications (issue 4: campaigns and per-use reminders) ---------------------------------
    # A row is claimed as `sending` (with its Message-ID) before the message goes to the mail
    # server and marked `sent` once the server accepted it. A `sending` row left by a crash means
    # "maybe delivered": it is never sent again automatically (see migrate/campaigns.py).
    def notification_sends(self, *, campaign: str | None = None, account_ids: Iterable[int] | None = None,
                           statuses: Iterable[str] | None = None) -> list["NotificationSend"]:
        query = select(notification_sends).order_by(notification_sends.c.id)
        if campaign is not None:
            query = query.where(notification_sends.c.campaign == campaign)
        if account_ids is not None:
            query = query.where(notification_sends.c.account_id.in_(list(account_ids)))
        if statuses is not None:
            query = query.where(notification_sends.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [_send_from_row(row) for row in conn.execute(query)]

    def _covering_sends(self, conn, account_id: int, campaign: str | None, since: dt.datetime | None,
                        *, pending: tuple[str, ...], exclude: int | None = None) -> list[int]:
        """Rows that make another message to this account unnecessary: delivered (or maybe
        delivered) since `since`, or still waiting in one of the `pending` states."""
        table = notification_sends
        delivered = table.c.status.in_(("sent", "sending"))
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
            new_id = conn.execute(insert(notification_sends).values(**values)).inserted_primary_key[0]
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
            last = _aware(row.last)
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
                     "last": _aware(row.last), "uses": row.uses} for row in conn.execute(query)]


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


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """Aggregates (max) bypass the column type on SQLite: make them aware UTC again."""
    if value is None or isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc)
