"""Accounts and their sealed upstream tokens: who may upload (their keys: gateway/registry/keys.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.emails import EmailError, normalised_email
from gateway.registry import audit as journal
from gateway.registry import names
from gateway.registry.audit import Actor
from gateway.registry.engine import AdminInputError, utcnow
from gateway.registry.schema import accounts


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


def _account_values(conn: Connection, name: str) -> dict[str, Any] | None:
    """An account as the admin journal records it: never the token, only whether one is stored."""
    row = conn.execute(select(accounts).where(accounts.c.name == name)).first()
    if row is None:
        return None
    return {"email": row.email, "disabled": row.disabled, "exempt": row.exempt, "note": row.note,
            "token": "stored" if row.token_ciphertext else "none"}


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
    """Accounts and their tokens."""

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

# -- bad admin input the registry refuses ---------------------------------------------------------


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
