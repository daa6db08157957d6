"""SIGHUP, as operators know it from sshd and nginx: what can change without dropping a session
is taken up again, and the log says what was done.

- `log_file` is reopened by its name, so that after logrotate (or `mv gw.log gw.log.1`) the lines
  go to the new file;
- the secret keys are read again from `secret_key_file` (a replica also does so by itself when a
  token does not open, see gateway/tokens.py); a key file that cannot be read leaves the keys in
  use.

- the host keys are read again from host_key_dir (after `keygen --promote`): new connections get
  them, open ones keep the keys they were made with.

The other settings are read at start only: restart the replica (one at a time behind the
balancer; SIGTERM drains) for those.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.errors import ConfigError
from gateway.ops import logformat
from gateway.tokens import TokenBox

if TYPE_CHECKING:
    from gateway.services import Services
    from gateway.settings import Settings
    from gateway.ssh.listener import GatewayListener

log = logging.getLogger("gateway.hangup")


def reopen_log() -> None:
    """Reopen log_file, then say so in it (in the new file)."""
    try:
        path = logformat.reopen_log_file()
    except OSError as exc:  # the old stream is kept: lines still go somewhere
        log.error("%s", hangup_log_unusable(exc.filename or "log_file", exc.strerror or exc))
        return
    log.info("%s", hangup_log_reopened(path))


async def reload_host_keys(services: Services, server: GatewayListener) -> None:
    """Serve new connections with the host keys host_key_dir holds now (after `keygen --promote`);
    connections already open keep theirs. Keys that cannot be read leave the served ones."""
    from gateway.ssh import hostkeys
    from gateway.ssh.server import connection_options

    try:
        options = await connection_options(services)
    except (ConfigError, OSError) as exc:
        log.error("%s", hangup_host_keys_kept(str(exc)))
        return
    server.use_options(options)
    log.info("%s", hangup_host_keys_read(hostkeys.fingerprints(services.settings.host_key_dir)))


def reload_secret_keys(settings: Settings, tokens: TokenBox) -> None:
    """Read the secret keys again into `tokens`; on any problem keep the keys in use."""
    try:
        tokens.reread()
    except ConfigError as exc:
        log.error("%s", hangup_keys_kept(str(exc)))
        return
    log.info("%s", hangup_keys_read(tokens.key_count, settings.secret_key_file if not settings.secret_key
                                             else "secret_key"))


# -- the log lines of a SIGHUP --------------------------------------------------------------------
def hangup_log_reopened(path: str | None) -> str:
    if path is None:
        return "SIGHUP: the log goes to stderr (no log_file), nothing to reopen"
    return f"SIGHUP: reopened log_file {path}"


def hangup_log_unusable(path: object, reason: object) -> str:
    return f"SIGHUP: cannot reopen log_file {path} ({reason}); still writing to the file open before"


def hangup_keys_read(count: int, where: object) -> str:
    return f"SIGHUP: read {count} secret key(s) again from {where}"


def hangup_host_keys_read(fingerprints: list[str]) -> str:
    return f"SIGHUP: read the host keys again; new connections get {', '.join(fingerprints)}"


def hangup_host_keys_kept(problem: str) -> str:
    return f"SIGHUP: kept the host keys in use, since {problem}"


def hangup_keys_kept(problem: str) -> str:
    return f"SIGHUP: kept the secret keys in use, since {problem}"
