"""sshd's two per-login commands, as both the fast path (gateway/entry.py) and the click CLI
(gateway/cli.py) run them: standard library only until the command itself needs more."""

from __future__ import annotations

import os
import sys

from gateway.loginsettings import LoginSettings

TYPE_CHECKING = False  # `typing` is for type checkers only here (see gateway/loginsettings.py)
if TYPE_CHECKING:
    from collections.abc import Sequence


def authorized_keys_command(settings: LoginSettings, global_args: Sequence[str], user: str,
                            key: str | None, key_type: str | None, executable: str | None) -> int:
    """Print the authorized_keys line for the key sshd presents (see gateway/ssh/keycommand.py).
    `global_args` go into the forced command."""
    if not key:
        return 0  # sshd passed no key (%k missing): list none rather than every key we know
    from gateway.ssh.keycommand import KeyQuery, LookupFailed, UnsafeLine, lines_for_query

    query = KeyQuery(user, key, key_type, os.path.abspath(executable or sys.argv[0]), tuple(global_args))
    try:
        lines = lines_for_query(query, settings.ssh_user, settings.shim_socket, settings.database_url)
    except LookupFailed as exc:  # sshd logs our stderr; the login is refused
        from gateway import messages

        sys.stderr.write(messages.key_refused_registry_unreadable(str(exc)) + "\n")
        return 1
    except UnsafeLine as exc:  # a bad registry row: no line at all, and a warning in sshd's log
        from gateway import messages

        sys.stderr.write(messages.key_refused_unsafe_line(str(exc)) + "\n")
        return 1
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    return 0


def stdio_command(settings: LoginSettings, account: str, fingerprint: str | None) -> int:
    """Hand this session to the local replica (gateway/ssh/shim.py)."""
    from gateway.ssh.shim import run_shim

    return run_shim(settings, account, fingerprint, os.environ)
