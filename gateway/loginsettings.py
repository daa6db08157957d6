"""Reading the settings' sources, and the few settings the per-login commands need.

sshd starts `authorized-keys-command` twice per login and `stdio` once per session, so those two
must not pay for the full `Settings` (dataclasses alone costs more than the interpreter's own
start). This module, standard library only, owns what both readers share: the configuration
file's format, the environment's names, the precedence (flag > environment > file > default) and
the conversion of values; and the names and defaults of the settings the per-login commands read.
`gateway/settings.py` declares those fields with the defaults defined here, and
tests/test_fast_paths.py checks that both readers agree.

The light reader checks only the settings it reads; the replica and `check` validate the rest.
"""

from __future__ import annotations

import os

# Annotations only; `typing` costs a per-login process a few milliseconds. (Type checkers treat a
# name TYPE_CHECKING as true wherever it is defined.)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

ENV_PREFIX = "PYPISSH_"
CONFIG_ENV = "PYPISSH_CONFIG"

DATABASE_URL = "sqlite:///var/pypissh.sqlite3"
SSH_USER = "submit"
# The real index's default per-file limit.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
# Seconds a client may stay silent mid-request before it is told to retry.
READ_TIMEOUT = 30.0
SHIM_SOCKET = "var/shim.sock"

# name -> (type, default) of each setting the per-login commands read.
LOGIN_FIELDS: dict[str, tuple[str, Any]] = {
    "database_url": ("str", DATABASE_URL),
    "ssh_user": ("str", SSH_USER),
    "max_upload_bytes": ("int", MAX_UPLOAD_BYTES),
    "read_timeout": ("float", READ_TIMEOUT),
    "shim_socket": ("str", SHIM_SOCKET),
    "stdio_in_process": ("bool", False),
}


def _messages():
    from gateway import messages  # only on a bad setting: it costs what this module saves

    return messages


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML file: its top level, or its [pypissh] table when it has one."""
    import tomllib

    from gateway.errors import ConfigError

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(_messages().config_file_missing(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_messages().config_file_not_toml(path, exc)) from None
    return data.get("pypissh", data)


def coerce(kind: str, name: str, raw: Any) -> Any:
    """`raw` (from the file, the environment or a flag) as a value of type `kind`."""
    from gateway.errors import ConfigError

    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(_messages().setting_not_boolean(name, raw))
    if kind == "int":
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(_messages().setting_not_integer(name, raw)) from None
    if kind == "float":
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(_messages().setting_not_number(name, raw)) from None
    if kind.startswith("tuple"):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return tuple(str(part) for part in raw)
    return None if raw is None else str(raw)


class LoginSettings:
    """The settings of `authorized-keys-command` and `stdio` (same names as in `Settings`)."""

    database_url: str
    ssh_user: str
    max_upload_bytes: int
    read_timeout: float
    shim_socket: str
    stdio_in_process: bool

    def __init__(self, values: Mapping[str, Any]):
        for name, (_kind, default) in LOGIN_FIELDS.items():
            setattr(self, name, values.get(name, default))


def load_login_settings(config_path: str | None = None, environ: Mapping[str, str] | None = None,
                        overrides: Mapping[str, Any] | None = None) -> LoginSettings:
    """The per-login commands' settings from the TOML file, the environment and flag overrides."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    path = config_path or environ.get(CONFIG_ENV)
    from_file = read_config_file(path) if path else {}
    values = {}
    for name, (kind, _default) in LOGIN_FIELDS.items():
        env_name = ENV_PREFIX + name.upper()
        if overrides.get(name) is not None:
            values[name] = coerce(kind, name, overrides[name])
        elif env_name in environ:
            values[name] = coerce(kind, name, environ[env_name])
        elif name in from_file:
            values[name] = coerce(kind, name, from_file[name])
    return LoginSettings(values)
