"""The AuthorizedKeysCommand's direct registry read (gateway/registry/keyline.py, bare sqlite3 or
psycopg) agrees with the login lookup (`AccountStore.identity_for_key`, SQLAlchemy), on SQLite and
on PostgreSQL."""

from __future__ import annotations

import pytest

from gateway.registry import Registry
from gateway.registry.keyline import KeylineError, account_for_key
from gateway.sshkeys import parse_public_key

UNKNOWN = "SHA256:" + "B" * 43


def _populate(registry: Registry, user_keys) -> list[str]:
    """alice (active key), bob (key revoked), carol (account disabled, key active); the fingerprints
    to ask about, an unknown one included."""
    keys = {name: parse_public_key(user_keys[name].public_line) for name in ("alice", "bob", "mallory")}
    registry.accounts.add_account("alice")
    registry.accounts.add_key("alice", keys["alice"])
    registry.accounts.add_account("bob")
    registry.accounts.add_key("bob", keys["bob"])
    registry.accounts.revoke_key(keys["bob"].fingerprint)
    registry.accounts.add_account("carol")
    registry.accounts.add_key("carol", keys["mallory"])
    registry.accounts.update_account("carol", disabled=True)
    return [key.fingerprint for key in keys.values()] + [UNKNOWN]


def _agree(url: str, registry: Registry, fingerprints: list[str]) -> dict[str, str | None]:
    answers = {}
    for fingerprint in fingerprints:
        identity = registry.accounts.identity_for_key(fingerprint)
        assert account_for_key(url, fingerprint) == (identity.account_name if identity else None), fingerprint
        answers[fingerprint] = account_for_key(url, fingerprint)
    return answers


def test_keyline_agrees_with_the_login_lookup(registry_url, user_keys):
    """alice's active key finds alice; revoked, disabled and unknown keys find nobody; the bare
    driver (sqlite3 or psycopg) answers as the SQLAlchemy lookup does."""
    registry = Registry.from_url(registry_url)
    try:
        fingerprints = _populate(registry, user_keys)
        assert list(_agree(registry_url, registry, fingerprints).values()) == ["alice", None, None, None]
    finally:
        registry.close()


def test_keyline_never_creates_a_registry(tmp_path):
    """A database_url naming a missing SQLite file is an error, and no file is created."""
    missing = tmp_path / "none.sqlite3"
    with pytest.raises(KeylineError, match="no registry at"):
        account_for_key(f"sqlite:///{missing}", UNKNOWN)
    assert not missing.exists()
