r"""`authorized_keys_file`: the OpenSSH mode without a Python program per key lookup.

sshd asks for the owner of a key twice per login. `authorized-keys-command` answers in about one
interpreter start; this answers in one `grep`, about a millisecond. The replica keeps a file of
ready-made authorized_keys lines, one per active key of an enabled account, and sshd's
AuthorizedKeysCommand picks out the line of the key it was offered:

    Match User submit
        AuthorizedKeysFile none
        AuthorizedKeysCommand /usr/bin/grep -F -- %k /var/lib/pypissh-gateway/authorized_keys
        AuthorizedKeysCommandUser pypissh

Each line's forced command is the shim started by an isolated interpreter without `site`
(gateway/ssh/shimexec.py), with everything it needs on its command line (one line in the file,
shown wrapped here):

    restrict,command="/opt/pypissh/bin/python -I -S .../gateway/ssh/shimexec.py \
        --socket /run/pypissh-gateway/shim.sock --account alice --fingerprint SHA256:... \
        --read-timeout 30.0 --max-upload-bytes 104857600" ssh-ed25519 AAAA...

Not `AuthorizedKeysFile` itself: sshd reads such a file as the session's user and, with
StrictModes, only when root or that user owns it, while the replica runs as its own user; and it
parses every line of it for each key, where grep only compares bytes.

The replica rewrites the file whenever what it would hold changes, checking every
`key_cache_seconds`, atomically (a temporary file renamed over it, so sshd never reads half a
file), of mode 0640. A check is one aggregate query (the active keys' count and id sums: 37 ms of
PostgreSQL's time with 100,000 keys); the keys themselves are read and the lines built (0.65 s of
CPU for 100,000 keys) only when that changed, and every FULL_CHECK_EVERY checks in any case.

Until the next rewrite sshd still admits a key revoked meanwhile, but the replica looks every
session's key up again (as for the key command), so a revoked key's session is refused within
`key_cache_seconds` either way. When the registry cannot be read the file is left as it is and
the replica tries again at the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shlex
import sys
import tempfile

from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import ConfigError
from gateway.registry import Registry
from gateway.settings import Settings
from gateway.ssh import keycommand, user_texts

log = logging.getLogger(__name__)

HEADER = ("# Written by pypissh-gateway (authorized_keys_file): one line per active key, rewritten when\n"
          "# the registry changes. Edits are lost; use `pypissh-migrate keys`.\n")
MODE = 0o640
# The shim's launcher (a script: importing it would run it).
SHIMEXEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shimexec.py")
# Every this many checks the keys are read whatever their signature says (5 minutes by default).
FULL_CHECK_EVERY = 60
# With the key cache off (key_cache_seconds = 0) the file is still checked this often.
UNCACHED_PERIOD = 1.0


def shim_command(settings: Settings, account: str, fingerprint: str) -> str:
    """The forced command of one key's line: the shim's launcher (see the module notes)."""
    python = settings.shim_python or sys.executable
    return shlex.join([python, "-I", "-S", SHIMEXEC,
                       "--socket", settings.shim_socket, "--account", keycommand.check_account(account),
                       "--fingerprint", keycommand.check_fingerprint(fingerprint),
                       "--read-timeout", str(settings.read_timeout),
                       "--max-upload-bytes", str(settings.max_upload_bytes)])


def file_text(settings: Settings, keys: list[tuple[str, str, str]]) -> str:
    """The file's content for `keys`, (account, fingerprint, "<type> <base64>") each. A row that
    cannot make a safe line (an account name against the grammar, planted in the database by
    hand) is left out with a warning: its key gets no access rather than a shell."""
    lines = []
    for account, fingerprint, public_key in keys:
        try:
            lines.append(keycommand.authorized_keys_line(shim_command(settings, account, fingerprint), public_key))
        except keycommand.UnsafeLine as exc:
            log.warning("authorized_keys_file: key %s left out: %s", ascii(fingerprint)[1:-1][:80], exc)
    return HEADER + "".join(line + "\n" for line in lines)


def check_writable(path: str) -> None:
    """Raise ConfigError unless the file's folder exists and this process may write in it (at
    start, rather than a warning at every check)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(user_texts.key_file_folder_unusable(path, folder))


class KeyFileWriter:
    """Keeps `settings.authorized_keys_file` equal to what the registry says."""

    def __init__(self, settings: Settings, registry: Registry):
        self.settings = settings
        self.registry = registry
        self.path = settings.authorized_keys_file
        self._written: str | None = None  # sha256 of the content last written (or found)
        self._signature: tuple[int, int, int] | None = None  # the keys' signature when last read
        self._checks = 0

    def update(self) -> bool:
        """Rewrite the file if the registry's keys changed; True when it was written. The keys
        are read only when their signature changed, or every FULL_CHECK_EVERY checks (for what the
        signature cannot see: rows edited by hand, or changes that happen to cancel out)."""
        signature = self.registry.keys.active_keys_signature()
        self._checks += 1
        if signature == self._signature and self._checks % FULL_CHECK_EVERY:
            return False
        self._signature = signature
        text = file_text(self.settings, self.registry.keys.active_public_keys())
        digest = hashlib.sha256(text.encode()).hexdigest()
        if self._written is None:
            self._written = _digest_of(self.path)
        if digest == self._written:
            return False
        _replace(self.path, text)
        self._written = digest
        return True

    async def run(self) -> None:
        """Update now, then at every check period, until cancelled."""
        period = self.settings.key_cache_seconds if self.settings.key_cache_seconds > 0 else UNCACHED_PERIOD
        while True:
            try:
                if await asyncio.to_thread(self.update):
                    log.info("authorized_keys_file %s rewritten", self.path)
            except OSError as exc:
                log.error("cannot write authorized_keys_file %s: %s; sshd reads the previous one",
                          self.path, exc.strerror or exc)
            except SQLAlchemyError as exc:  # the registry is down: keep the last file, try again
                log.warning("cannot read the registry for authorized_keys_file (%s: %s); keeping the "
                            "file as it is", type(exc).__name__, exc)
            await asyncio.sleep(period)


def _digest_of(path: str) -> str:
    try:
        with open(path, "rb") as existing:
            return hashlib.sha256(existing.read()).hexdigest()
    except OSError:
        return ""


def _replace(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".authorized_keys.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
