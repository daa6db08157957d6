"""Upstream API tokens, encrypted at rest.

Tokens are sealed with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`). The key comes from
`secret_key` or `secret_key_file`; either may hold several keys separated by commas or lines, the
first used to encrypt and all accepted to decrypt, so a key can be rotated without downtime.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from gateway.errors import ConfigError
from gateway.phrases import PROGRAM
from gateway.settings import Settings

TOKEN_PREFIX = "pypi-"
log = logging.getLogger(__name__)


def _as_fernet_key(text: str) -> bytes:
    """Accept a Fernet key as generated, or derive one from any passphrase of 32+ characters."""
    raw = text.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    if len(raw) < 32:
        raise ConfigError(secret_key_too_short())
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def parse_keys(text: str, where: object = "secret_key") -> list[bytes]:
    parts = [part for chunk in text.splitlines() for part in chunk.split(",")]
    keys = [_as_fernet_key(part) for part in parts if part.strip() and not part.startswith("#")]
    if not keys:
        raise ConfigError(secret_key_empty(where))
    return keys


def new_key() -> str:
    return Fernet.generate_key().decode()


def key_file(settings: Settings) -> Path | None:
    """The key file the settings name, or None when the key is given inline (`secret_key`)."""
    return None if settings.secret_key else Path(settings.secret_key_file)


def read_secret_text(settings: Settings) -> str:
    """The configured key text. A missing key file is an error naming it: only `keygen` (and
    `init`) create one, through `create_key_file`."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.secret_key_file)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise ConfigError(secret_key_missing(path)) from None
    except OSError as exc:
        raise ConfigError(secret_key_unreadable(path, exc.strerror or exc)) from None


def create_key_file(path: Path) -> bool:
    """Write a new key to `path` (mode 0600, its folder 0700 when made); False when it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(new_key() + "\n")
    return True


class TokenBox:
    """Seals and opens upstream tokens; knows nothing of the database.

    A box made from the settings reads its key file again when a token does not open with the
    keys it holds: after `pypissh-migrate rotate-secret` a running replica opens the re-sealed
    tokens without a restart, and `--retire-old` cannot break it (once the file is on its machine).
    """

    def __init__(self, keys: list[bytes], settings: Settings | None = None):
        self._settings = settings  # where to read the keys again; None: never
        self._use(keys)

    def _use(self, keys: list[bytes]) -> None:
        self._keys = keys
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBox:
        """The box for the configured key(s); ConfigError naming the key file when it is missing."""
        return cls(parse_keys(read_secret_text(settings), key_file(settings) or "secret_key"), settings)

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def reread(self) -> bool:
        """Read the configured keys again; True when they changed. ConfigError (the keys in use
        kept) when they cannot be read."""
        if self._settings is None:
            return False
        fresh = parse_keys(read_secret_text(self._settings), key_file(self._settings) or "secret_key")
        if fresh == self._keys:
            return False
        self._use(fresh)
        log.info("%s", secret_keys_changed(len(fresh), key_file(self._settings) or "secret_key"))
        return True

    def opens(self, ciphertext: str) -> bool:
        try:
            self.open(ciphertext)
        except ConfigError:
            return False
        return True

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            pass
        try:
            changed = self.reread()  # a rotation may have changed the key file since
        except ConfigError:
            changed = False
        try:
            if changed:
                return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            pass
        raise ConfigError(token_undecryptable())

    def reseal(self, ciphertext: str) -> str:
        """Re-encrypt under the first (newest) key."""
        return self._fernet.rotate(ciphertext.encode()).decode()


def check_token_shape(token: str) -> str:
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(not_an_api_token())
    return token


# -- what the operator reads about the secret key and the tokens ----------------------------------
def secret_key_missing(path: object) -> str:
    return (f"no secret key file at {path}, so API tokens cannot be sealed or opened; run "
            f"`{PROGRAM} keygen` to create one for a new registry, or set secret_key_file to the key "
            "the stored tokens were sealed with")


def secret_key_unreadable(path: object, reason: object) -> str:
    return f"cannot read the secret key file {path} ({reason}); make it readable by the user running this command"


def secret_key_too_short() -> str:
    return "secret_key must be a Fernet key or a passphrase of at least 32 characters"


def secret_key_empty(where: object) -> str:
    return (
        f"the secret key in {where} is empty; put the key back, "
        "or run `pypissh-migrate rotate-secret --new-key-file FILE`"
    )


def token_undecryptable() -> str:
    return ("a stored token cannot be decrypted with the configured secret keys; keep the old key in "
            "secret_key until `pypissh-migrate rotate-secret` has run")


def not_an_api_token() -> str:
    return "that is not an API token: tokens start with 'pypi-' and have no spaces"


def secret_keys_changed(count: int, where: object) -> str:
    return f"a stored token did not open: read the secret keys again from {where}, now {count} key(s)"
