"""SSH keys: whose each key is, added, revoked and restored by admins, and the lookup of every login."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, bindparam, cast, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.registry import audit as journal
from gateway.registry.accounts import AccountStore
from gateway.registry.audit import Actor
from gateway.registry.engine import AdminInputError, utcnow
from gateway.registry.schema import accounts, ssh_keys
from gateway.sshkeys import PublicKey


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
    key_type: str | None = None  # e.g. ssh-ed25519, for the session's log line


# The per-login statement is built once, with its value bound at execution (see EventStore.record).
_ACTIVE_KEYS = (
    select(accounts.c.id, accounts.c.name, accounts.c.email, accounts.c.exempt,
           accounts.c.token_ciphertext, ssh_keys.c.fingerprint, ssh_keys.c.comment,
           ssh_keys.c.allowed_projects, ssh_keys.c.algorithm)
    .join(accounts, accounts.c.id == ssh_keys.c.account_id)
    .where(ssh_keys.c.revoked_at.is_(None), accounts.c.disabled.is_(False))
)
_IDENTITY_FOR_KEY = _ACTIVE_KEYS.where(ssh_keys.c.fingerprint == bindparam("key_fp"))
_IDENTITIES_FOR_KEYS = _ACTIVE_KEYS.where(ssh_keys.c.fingerprint.in_(bindparam("key_fps", expanding=True)))
# Every active key of an enabled account, as authorized_keys_file lists them.
_ACTIVE_PUBLIC_KEYS = (
    select(accounts.c.name, ssh_keys.c.fingerprint, ssh_keys.c.public_key)
    .join(accounts, accounts.c.id == ssh_keys.c.account_id)
    .where(ssh_keys.c.revoked_at.is_(None), accounts.c.disabled.is_(False))
    .order_by(ssh_keys.c.fingerprint)
)
# What changes whenever the set of active keys of enabled accounts does (a key added, revoked or
# restored, an account disabled or enabled): one aggregate row, far cheaper than the keys.
_ACTIVE_KEYS_SIGNATURE = (
    select(func.count(), func.coalesce(func.sum(ssh_keys.c.id), 0),
           func.coalesce(func.sum(cast(ssh_keys.c.id, BigInteger) * cast(ssh_keys.c.id, BigInteger)), 0))
    .select_from(ssh_keys.join(accounts, accounts.c.id == ssh_keys.c.account_id))
    .where(ssh_keys.c.revoked_at.is_(None), accounts.c.disabled.is_(False))
)
# Fingerprints per query of identities_for_keys: well inside every database's parameter limit.
KEYS_PER_QUERY = 500


def _projects(text: str | None) -> tuple[str, ...] | None:
    return tuple(text.split()) if text else None


def _key_values(conn: Connection, fingerprint: str) -> tuple[str | None, dict[str, Any] | None]:
    """(account name, the key as the admin journal records it)."""
    row = conn.execute(select(ssh_keys, accounts.c.name.label("account_name"))
                       .join(accounts, accounts.c.id == ssh_keys.c.account_id)
                       .where(ssh_keys.c.fingerprint == fingerprint)).first()
    if row is None:
        return None, None
    return row.account_name, {
        "account": row.account_name, "algorithm": row.algorithm, "bits": row.bits, "comment": row.comment,
        "projects": row.allowed_projects, "weak": row.weak, "source": row.source,
        "state": "revoked" if row.revoked_at else "active"}


class KeyStore:
    """The accounts' keys; `identity_for_key` is the lookup of every login."""

    def __init__(self, engine: Engine, accounts: AccountStore):
        self.engine = engine
        self.accounts = accounts

    def add_key(self, account_name: str, key: PublicKey, *, source: str = "admin",
                allowed_projects: Sequence[str] | None = None, audit: Actor | None = None) -> KeyRecord:
        account = self.accounts.get_account(account_name)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(ssh_keys).values(
                    account_id=account.id, fingerprint=key.fingerprint, algorithm=key.algorithm,
                    bits=key.bits, public_key=key.openssh, comment=key.comment or None,
                    weak=key.weak, source=source, created_at=utcnow(),
                    allowed_projects=" ".join(allowed_projects) if allowed_projects else None))
                if audit is not None:
                    journal.journal(conn, audit, target_kind=journal.KEY, target=key.fingerprint,
                                    account_name=account.name, after=_key_values(conn, key.fingerprint)[1])
        except IntegrityError:
            owner = self.find_key(key.fingerprint)
            if owner is not None and owner.revoked_at is not None:
                if owner.account_id != account.id:
                    raise AdminInputError(key_revoked_elsewhere(key.fingerprint, owner.account_name)) from None
                # The admin gives it back: a mistaken revoke is not final.
                return self.restore_key(key.fingerprint, audit=audit)
            owner_name = owner.account_name if owner else None
            raise AdminInputError(key_registered_elsewhere(key.fingerprint, owner_name)) from None
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
            self.accounts.get_account(account_name)
            query = query.where(accounts.c.name == account_name)
        if not include_revoked:
            query = query.where(ssh_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [self._key_from_row(row) for row in conn.execute(query)]

    def revoke_key(self, fingerprint: str, *, audit: Actor | None = None) -> KeyRecord:
        key, changed = self._set_revoked(fingerprint, True, audit)
        if not changed:
            raise AdminInputError(key_already_revoked(fingerprint, key.revoked_at))
        return key

    def restore_key(self, fingerprint: str, *, audit: Actor | None = None) -> KeyRecord:
        """Undo a revocation: the key logs in again as its account."""
        key, changed = self._set_revoked(fingerprint, False, audit)
        if not changed:
            raise AdminInputError(key_not_revoked(fingerprint, key.account_name))
        return key

    def _set_revoked(self, fingerprint: str, revoked: bool, audit: Actor | None) -> tuple[KeyRecord, bool]:
        """Revoke or restore a key, journaling the change: the key, and whether it changed."""
        was_active = ssh_keys.c.revoked_at.is_(None)
        with self.engine.begin() as conn:
            done = conn.execute(update(ssh_keys).where(
                ssh_keys.c.fingerprint == fingerprint, was_active if revoked else ~was_active
            ).values(revoked_at=utcnow() if revoked else None))
            if done.rowcount and audit is not None:
                owner, values = _key_values(conn, fingerprint)
                journal.journal(conn, audit, target_kind=journal.KEY, target=fingerprint, account_name=owner,
                                before={"state": "active" if revoked else "revoked"},
                                after={"state": values["state"]} if values else None)
        key = self.find_key(fingerprint)
        if key is None:
            # Restoring, the admin may be looking for a revoked key: name the listing that shows them.
            raise AdminInputError(key_unknown(fingerprint, revoked_too=not revoked))
        return key, bool(done.rowcount)

    def identity_for_key(self, fingerprint: str) -> Identity | None:
        """The login lookup: an active key of an enabled account, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(_IDENTITY_FOR_KEY, {"key_fp": fingerprint}).first()
        return _identity(row) if row is not None else None

    def active_public_keys(self) -> list[tuple[str, str, str]]:
        """(account, fingerprint, "<type> <base64>") of every active key of an enabled account,
        ordered by fingerprint: what `authorized_keys_file` holds."""
        with self.engine.connect() as conn:
            return [(row.name, row.fingerprint, row.public_key) for row in conn.execute(_ACTIVE_PUBLIC_KEYS)]

    def active_keys_signature(self) -> tuple[int, int, int]:
        """(count, sum and sum of squares of the ids) of the active keys of enabled accounts."""
        with self.engine.connect() as conn:
            count, total, squares = conn.execute(_ACTIVE_KEYS_SIGNATURE).one()
        return int(count), int(total), int(squares)

    def identities_for_keys(self, fingerprints: Collection[str]) -> dict[str, Identity]:
        """`identity_for_key` for many keys at once (the re-check of open connections): the
        active ones, by fingerprint; revoked and unknown keys are absent."""
        wanted = sorted(set(fingerprints))
        found: dict[str, Identity] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), KEYS_PER_QUERY):
                rows = conn.execute(_IDENTITIES_FOR_KEYS, {"key_fps": wanted[start:start + KEYS_PER_QUERY]})
                found.update((row.fingerprint, _identity(row)) for row in rows)
        return found


def _identity(row: Any) -> Identity:
    return Identity(
        account_id=row.id, account_name=row.name, email=row.email, exempt=row.exempt,
        fingerprint=row.fingerprint, key_comment=row.comment,
        token_ciphertext=row.token_ciphertext, allowed_projects=_projects(row.allowed_projects),
        key_type=row.algorithm)


# -- bad admin input about keys --------------------------------------------------------------------
def key_not_revoked(fingerprint: str, account: str) -> str:
    return f"key {fingerprint} of '{account}' is not revoked; nothing to restore"

def key_revoked_elsewhere(fingerprint: str, owner: str) -> str:
    return (f"key {fingerprint} is a revoked key of account '{owner}'; a key belongs to one account: "
            f"`pypissh-migrate keys restore {fingerprint}` gives it back to '{owner}'")

def key_registered_elsewhere(fingerprint: str, owner: str | None) -> str:
    if owner is None:
        return f"key {fingerprint} is already registered to another account; a key belongs to one account"
    return f"key {fingerprint} is already registered to account '{owner}'; a key belongs to one account"

def key_unknown(fingerprint: str, *, revoked_too: bool) -> str:
    if revoked_too:
        return f"no key with fingerprint {fingerprint}; `pypissh-migrate keys list --all` shows them"
    return f"no key with fingerprint {fingerprint}; `pypissh-migrate keys list` shows them"

def key_already_revoked(fingerprint: str, revoked_at: dt.datetime | None) -> str:
    if revoked_at is None:  # restored again between the update and the lookup
        return f"key {fingerprint} was already revoked"
    return f"key {fingerprint} was already revoked on {revoked_at:%Y-%m-%d %H:%M} UTC"
