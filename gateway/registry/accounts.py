"""Accounts, their SSH keys and their sealed upstream tokens: who may upload, and as whom."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, bindparam, cast, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.emails import EmailError, normalised_email
from gateway.registry import audit as journal
from gateway.registry import names
from gateway.registry.audit import Actor
from gateway.registry.engine import AdminInputError, utcnow
from gateway.registry.schema import accounts, ssh_keys
from gateway.sshkeys import PublicKey


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


def _account_values(conn: Connection, name: str) -> dict[str, Any] | None:
    """An account as the admin journal records it: never the token, only whether one is stored."""
    row = conn.execute(select(accounts).where(accounts.c.name == name)).first()
    if row is None:
        return None
    return {"email": row.email, "disabled": row.disabled, "exempt": row.exempt, "note": row.note,
            "token": "stored" if row.token_ciphertext else "none"}


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


def checked_email(address: str | None) -> str | None:
    """An account's email in normal form; None (no email) for an empty one; AdminInputError when it
    is not an email address."""
    if address is None or not address.strip():
        return None
    try:
        return normalised_email(address)
    except EmailError as exc:
        raise AdminInputError(email_invalid(address.strip(), str(exc))) from None


def checked_account_name(name: str) -> str:
    """`name` when it follows the account-name grammar (gateway/registry/names.py), else
    AdminInputError. Every path that makes or renames an account comes through here: the name ends
    up in authorized_keys lines and command lines."""
    if not name or not name.strip():
        raise AdminInputError(account_name_missing())
    if not names.is_account_name(name):
        raise AdminInputError(names.refusal(name))
    return name


class AccountStore:
    """Accounts, keys and tokens; `identity_for_key` is the lookup of every login."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- accounts -------------------------------------------------------------------------------
    def add_account(self, name: str, *, email: str | None = None, exempt: bool = False,
                    note: str | None = None, audit: Actor | None = None) -> Account:
        name = checked_account_name(name)
        email = checked_email(email)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(accounts).values(
                    name=name, email=email, exempt=exempt, disabled=False, note=note,
                    created_at=utcnow()))
                if audit is not None:
                    journal.journal(conn, audit, target_kind=journal.ACCOUNT, target=name, account_name=name,
                                    after=_account_values(conn, name))
        except IntegrityError:
            raise AdminInputError(account_exists(name)) from None
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
            raise AdminInputError(account_unknown(name))
        return account

    def list_accounts(self) -> list[Account]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(accounts).order_by(accounts.c.name)).all()
        return [self._account_from_row(row) for row in rows]

    def update_account(self, name: str, *, audit: Actor | None = None, **values: Any) -> Account:
        allowed = {"email", "disabled", "exempt", "note"}
        unknown = set(values) - allowed
        if unknown:
            raise AdminInputError(account_fields_fixed(sorted(unknown)))
        if "email" in values:
            values["email"] = checked_email(values["email"])
        with self.engine.begin() as conn:
            before = _account_values(conn, name) if audit is not None else None
            done = conn.execute(update(accounts).where(accounts.c.name == name).values(**values))
            if done.rowcount and audit is not None:
                journal.journal(conn, audit, target_kind=journal.ACCOUNT, target=name, account_name=name,
                                before=before, after=_account_values(conn, name))
        if done.rowcount == 0:
            raise AdminInputError(account_unknown(name))
        return self.get_account(name)

    def set_token_ciphertext(self, name: str, ciphertext: str | None, *, audit: Actor | None = None) -> None:
        with self.engine.begin() as conn:
            before = _account_values(conn, name) if audit is not None else None
            done = conn.execute(update(accounts).where(accounts.c.name == name).values(
                token_ciphertext=ciphertext, token_set_at=utcnow() if ciphertext else None))
            if done.rowcount and audit is not None:  # that a token was set, never the token
                journal.journal(conn, audit, target_kind=journal.ACCOUNT, target=name, account_name=name,
                                before={"token": before["token"]} if before else None,
                                after={"token": "set" if ciphertext else "none"})
        if done.rowcount == 0:
            raise AdminInputError(account_unknown(name))

    def token_ciphertexts(self) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(accounts.c.id, accounts.c.token_ciphertext)
                                .where(accounts.c.token_ciphertext.is_not(None))).all()
        return [(row.id, row.token_ciphertext) for row in rows]

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
                allowed_projects: Sequence[str] | None = None, audit: Actor | None = None) -> KeyRecord:
        account = self.get_account(account_name)
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
            raise AdminInputError(key_registered_elsewhere(key.fingerprint, owner.account_name if owner else None)) from None
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

    def revoke_key(self, fingerprint: str, *, audit: Actor | None = None) -> KeyRecord:
        with self.engine.begin() as conn:
            done = conn.execute(update(ssh_keys).where(
                ssh_keys.c.fingerprint == fingerprint, ssh_keys.c.revoked_at.is_(None)
            ).values(revoked_at=utcnow()))
            if done.rowcount and audit is not None:
                self._journal_key_state(conn, audit, fingerprint, "active")
        key = self.find_key(fingerprint)
        if key is None:
            raise AdminInputError(key_unknown(fingerprint, revoked_too=False))
        if done.rowcount == 0:
            raise AdminInputError(key_already_revoked(fingerprint, key.revoked_at))
        return key

    def restore_key(self, fingerprint: str, *, audit: Actor | None = None) -> KeyRecord:
        """Undo a revocation: the key logs in again as its account."""
        with self.engine.begin() as conn:
            done = conn.execute(update(ssh_keys).where(
                ssh_keys.c.fingerprint == fingerprint, ssh_keys.c.revoked_at.is_not(None)
            ).values(revoked_at=None))
            if done.rowcount and audit is not None:
                self._journal_key_state(conn, audit, fingerprint, "revoked")
        key = self.find_key(fingerprint)
        if key is None:
            raise AdminInputError(key_unknown(fingerprint, revoked_too=True))
        if done.rowcount == 0:
            raise AdminInputError(key_not_revoked(fingerprint, key.account_name))
        return key

    @staticmethod
    def _journal_key_state(conn: Connection, audit: Actor, fingerprint: str, was: str) -> None:
        owner, values = _key_values(conn, fingerprint)
        journal.journal(conn, audit, target_kind=journal.KEY, target=fingerprint, account_name=owner,
                        before={"state": was}, after={"state": values["state"]} if values else None)

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


# -- bad admin input the registry refuses ---------------------------------------------------------
def key_not_revoked(fingerprint: str, account: str) -> str:
    return f"key {fingerprint} of '{account}' is not revoked; nothing to restore"


def key_revoked_elsewhere(fingerprint: str, owner: str) -> str:
    return (f"key {fingerprint} is a revoked key of account '{owner}'; a key belongs to one account: "
            f"`pypissh-migrate keys restore {fingerprint}` gives it back to '{owner}'")


def email_invalid(address: str, reason: str) -> str:
    return f"'{address}' is not an email address ({reason.rstrip('.')}); give one like alice@example.org"


def account_name_missing() -> str:
    return "an account needs a name (the user's name on the index)"


def account_exists(name: str) -> str:
    return f"account '{name}' already exists; see `pypissh-migrate accounts show {name}`"


def account_unknown(name: str) -> str:
    return f"no account named '{name}'; `pypissh-migrate accounts list` shows them"


def account_fields_fixed(fields: list[str]) -> str:
    return f"cannot change {', '.join(fields)}; the fields an admin may change are email, disabled, exempt and note"


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
