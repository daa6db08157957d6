"""sshd's two per-login commands, as both the fast path (gateway/entry.py) and the click CLI
(gateway/cli.py) run them: standard library only until the command itself needs more."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # `typing` is for type checkers only here (see gateway/loginsettings.py)
if TYPE_CHECKING:
    from typing import Protocol

    from gateway.ssh.shim import ShimSettings

    class KeyFileSettings(Protocol):
        """What `authorized-keys-command` reads (of `LoginSettings` or the full `Settings`)."""

        @property
        def authorized_keys_file(self) -> str: ...
        @property
        def ssh_user(self) -> str: ...


def authorized_keys_command(settings: KeyFileSettings, user: str, key: str | None, key_type: str | None) -> int:
    """Print the lines of authorized_keys_file for the key sshd presents (gateway/ssh/keycommand.py)."""
    if not key:
        return 0  # sshd passed no key (%k missing): list none rather than every key we know
    from gateway.ssh.keycommand import lines_for_key

    try:
        lines = lines_for_key(settings.authorized_keys_file, user, settings.ssh_user, key, key_type)
    except OSError as exc:  # sshd logs our stderr; the login is refused
        from gateway.ssh import user_texts

        sys.stderr.write(user_texts.key_file_unreadable(settings.authorized_keys_file, exc.strerror or exc) + "\n")
        return 1
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    return 0


def stdio_command(settings: ShimSettings, account: str, fingerprint: str | None) -> int:
    """Hand this session to the local replica (gateway/ssh/shim.py)."""
    from gateway.ssh.shim import run_shim

    return run_shim(settings, account, fingerprint, os.environ)
