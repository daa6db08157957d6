"""Upstream API tokens, encrypted at rest.

Tokens are sealed with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`). The key comes from
`secret_key` or `secret_key_file`; either may hold several keys separated by commas or lines, the
first used to encrypt and all accepted to decrypt, so a key can be rotated without downtime.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from gateway.errors import ConfigError
from gateway.settings import Settings

TOKEN_PREFIX = "pypi-"


def _as_fernet_key(text: str) -> bytes:
    """Accept a Fernet key as generated, or derive one from any passphrase of 32+ characters."""
    raw = text.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    if len(raw) < 32:
        raise ConfigError("secret_key must be a Fernet key or a passphrase of at least 32 characters")
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def parse_keys(text: str) -> list[bytes]:
    parts = [part for chunk in text.splitlines() for part in chunk.split(",")]
    keys = [_as_fernet_key(part) for part in parts if part.strip() and not part.startswith("#")]
    if not keys:
        raise ConfigError("the secret key is empty; run `pypissh-migrate rotate-secret --new-key-file`")
    return keys


def new_key() -> str:
    return Fernet.generate_key().decode()


def read_secret_text(settings: Settings, *, create: bool = False) -> str:
    """The configured key text; with create=True a missing key file is generated (mode 0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.secret_key_file)
    if not path.exists():
        if not create:
            raise ConfigError(
                f"no secret key: set secret_key or create {path} (`pypissh-gateway check --init` makes one)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_key() + "\n")
    return path.read_text()


class TokenBox:
    """Seals and opens upstream tokens; knows nothing of the database."""

    def __init__(self, keys: list[bytes]):
        self._keys = keys
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings, *, create: bool = True) -> "TokenBox":
        return cls(parse_keys(read_secret_text(settings, create=create)))

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a stored token cannot be decrypted with the configured secret keys; "
                "keep the old key in secret_key until `pypissh-migrate rotate-secret` has run"
            ) from None

    def reseal(self, ciphertext: str) -> str:
        """Re-encrypt under the first (newest) key."""
        return self._fernet.rotate(ciphertext.encode()).decode()


def check_token_shape(token: str) -> str:
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError("that is not an API token: tokens start with 'pypi-' and have no spaces")
    return token
