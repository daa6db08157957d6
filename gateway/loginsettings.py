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
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any

ENV_PREFIX = "PYPISSH_"
CONFIG_ENV = "PYPISSH_CONFIG"
HOME_ENV = "PYPISSH_HOME"
APP_DIR = "pypissh-gateway"

# Relative paths resolve against `home` (or, when written in the config file, its folder).
DATABASE_URL = "sqlite:///pypissh.sqlite3"
SSH_USER = "submit"
# The real index's default per-file limit.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
# Seconds a client may stay silent mid-request before it is told to retry.
READ_TIMEOUT = 30.0
SHIM_SOCKET = "shim.sock"

# name -> (type, default) of each setting the per-login commands read.
LOGIN_FIELDS: dict[str, tuple[str, Any]] = {
    "database_url": ("str", DATABASE_URL),
    "ssh_user": ("str", SSH_USER),
    "max_upload_bytes": ("int", MAX_UPLOAD_BYTES),
    "read_timeout": ("float", READ_TIMEOUT),
    "shim_socket": ("str", SHIM_SOCKET),
    "authorized_keys_file": ("str", ""),
    "home": ("str", ""),
}
# Of those, the ones holding a path (database_url: a relative SQLite file).
LOGIN_PATHS = ("shim_socket", "authorized_keys_file")
# Settings that no longer exist. Both readers refuse them, wherever they are set, rather than
# ignore them: the operator meant something by each.
REMOVED_SETTINGS = ("stdio_in_process",)


def _messages():
    from gateway import setting_texts as messages

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
    except IsADirectoryError:
        raise ConfigError(_messages().config_file_is_a_directory(path)) from None
    except OSError as exc:
        raise ConfigError(_messages().config_file_unreadable(path, exc.strerror or exc)) from None
    except UnicodeDecodeError:
        raise ConfigError(_messages().config_file_not_utf8(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_messages().config_file_not_toml(path, exc)) from None
    section = data.get("pypissh", data)
    if not isinstance(section, dict):
        raise ConfigError(_messages().config_file_not_toml(path, "[pypissh] is not a table"))
    return section


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
    if kind in ("int", "float"):
        # TOML's true is not a number, though Python's bool is an int.
        wrong = _messages().setting_not_integer if kind == "int" else _messages().setting_not_number
        if isinstance(raw, bool):
            raise ConfigError(wrong(name, raw))
        try:
            return int(raw) if kind == "int" else float(raw)
        except (TypeError, ValueError):
            raise ConfigError(wrong(name, raw)) from None
    if kind.startswith("tuple"):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(_messages().setting_not_list(name, raw))
        return tuple(str(part) for part in raw)
    if isinstance(raw, (dict, list)):
        raise ConfigError(_messages().setting_not_text(name))
    return None if raw is None else str(raw)


# -- where state lives ----------------------------------------------------------------------------
def default_home(environ: Mapping[str, str]) -> str:
    """The per-user data directory: $XDG_DATA_HOME/pypissh-gateway, else ~/.local/share/...

    Hand-written rather than platformdirs: three lines of the XDG rule, for a Linux service.
    """
    data = environ.get("XDG_DATA_HOME") or ""
    if os.path.isabs(data):
        return os.path.join(data, APP_DIR)
    user_home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(user_home, ".local", "share", APP_DIR)


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL as a Path (None for other databases and in-memory SQLite)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.partition("+")[0] != "sqlite":
        return None
    path = rest.partition("?")[0]
    if not path.startswith("/") or path in ("/", "/:memory:"):
        return None
    from pathlib import Path

    return Path(path[1:])


def resolve_path(value: str, base: str) -> str:
    """`value` made absolute against `base` (never against the current directory)."""
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))


def resolve_database_url(url: str, base: str) -> str:
    """A relative `sqlite:///PATH` made absolute against `base`; any other URL as it is."""
    database = sqlite_path(url)
    if database is None or database.is_absolute():
        return url
    scheme, _, rest = url.partition(":///")
    query = rest.partition("?")[2]
    return f"{scheme}:///{resolve_path(str(database), base)}" + (f"?{query}" if query else "")


class LoginSettings:
    """The settings of `authorized-keys-command` and `stdio` (same names as in `Settings`)."""

    database_url: str
    ssh_user: str
    max_upload_bytes: int
    read_timeout: float
    shim_socket: str
    authorized_keys_file: str
    home: str

    def __init__(self, values: Mapping[str, Any]):
        for name, (_kind, default) in LOGIN_FIELDS.items():
            setattr(self, name, values.get(name, default))


# Where a value came from, as `Merged.origins` records it: (kind, where).
FILE, ENV, FLAG = "file", "env", "flag"


def origin_note(kind: str, where: str) -> str:
    """For messages: where the operator fixes a value ('' for a default)."""
    if kind == FILE:
        return f" (set in {where})"
    if kind == ENV:
        return f" (set by {where})"
    if kind == FLAG:
        return " (set by a command-line flag)"
    return ""


class Merged:
    """The sources merged: the values set (with `home`, the paths and database_url resolved),
    where each came from, and the configuration file's absolute path (None: no file)."""

    __slots__ = ("config", "origins", "values")

    def __init__(self, values: dict[str, Any], origins: dict[str, tuple[str, str]], config: str | None):
        self.values = values
        self.origins = origins
        self.config = config


def merge_sources(fields: Mapping[str, tuple[str, Any]], paths: Sequence[str],
                  config_path: str | os.PathLike[str] | None, environ: Mapping[str, str],
                  overrides: Mapping[str, Any] | None, *,
                  unknown: Callable[[str, str | None], Exception] | None = None) -> Merged:
    """The one reading of the settings' sources: `fields` (name -> (type, default)) from the TOML
    file, the environment and flags, flag > environment > file > default. Every value given is
    converted, so a bad one is an error wherever it was overridden. A name no field has, in the
    file or among the flags, raises `unknown(name, the file or None)`, or is skipped without it.
    Relative paths resolve against the file's folder when written there, else against `home`."""
    from gateway.errors import ConfigError

    values: dict[str, Any] = {}
    origins: dict[str, tuple[str, str]] = {}

    def take(name: str, raw: Any, kind: str, where: str) -> None:
        try:
            values[name] = coerce(fields[name][0], name, raw)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{origin_note(kind, where)}") from None
        origins[name] = (kind, where)

    path = config_path or environ.get(CONFIG_ENV)
    config = None
    if path:
        from pathlib import Path

        config = str(Path(path).absolute())
    from_file = read_config_file(config) if config is not None else {}
    _refuse_removed(from_file, config, environ, overrides or {})
    if config is not None:
        for name, raw in from_file.items():
            if name in fields:
                take(name, raw, FILE, config)
            elif unknown is not None:
                raise unknown(name, config)
    for name in fields:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            take(name, environ[env_name], ENV, env_name)
    for name, raw in (overrides or {}).items():
        if raw is None:
            continue
        if name in fields:
            take(name, raw, FLAG, "")
        elif unknown is not None:
            raise unknown(name, None)
    _resolve_paths(values, origins, paths, fields, config, environ)
    return Merged(values, origins, config)


def _refuse_removed(from_file: Mapping[str, Any], config: str | None, environ: Mapping[str, str],
                    overrides: Mapping[str, Any]) -> None:
    """Raise ConfigError, in one line saying what to do, when a removed setting is set anywhere."""
    from gateway.errors import ConfigError

    for name in REMOVED_SETTINGS:
        env_name = ENV_PREFIX + name.upper()
        if name in from_file:
            where = f" in {config}"
        elif env_name in environ:
            where = f" by {env_name}"
        elif overrides.get(name) is not None:
            where = " by a command-line flag"
        else:
            continue
        raise ConfigError(_messages().removed_setting(name, where))


def _resolve_paths(values: dict[str, Any], origins: Mapping[str, tuple[str, str]], paths: Sequence[str],
                   fields: Mapping[str, tuple[str, Any]], config: str | None, environ: Mapping[str, str]) -> None:
    """Make every path absolute: against the config file's folder when written there, else
    against `home` (never against the current directory)."""
    config_dir = os.path.dirname(config) if config is not None else None

    def base(name: str) -> str:
        return config_dir if config_dir is not None and origins.get(name, ("",))[0] == FILE else home

    home = values.get("home") or ""
    if not home:
        home = default_home(environ)
    elif not os.path.isabs(home) and config_dir is not None and origins["home"][0] == FILE:
        home = resolve_path(home, config_dir)
    values["home"] = home
    if not os.path.isabs(home):
        return  # nothing can be resolved against it (the full reader reports it)
    for name in paths:
        value = values.get(name, fields[name][1])
        if value:
            values[name] = resolve_path(value, base(name))
    values["database_url"] = resolve_database_url(values.get("database_url", fields["database_url"][1]),
                                                  base("database_url"))


def load_login_settings(config_path: str | None = None, environ: Mapping[str, str] | None = None,
                        overrides: Mapping[str, Any] | None = None) -> LoginSettings:
    """The per-login commands' settings, merged as `gateway.settings` merges them (other
    settings in the file or among the flags are skipped)."""
    merged = merge_sources(LOGIN_FIELDS, LOGIN_PATHS, config_path, os.environ if environ is None else environ,
                           overrides)
    return LoginSettings(merged.values)
