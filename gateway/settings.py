"""Settings: one TOML file, `PYPISSH_*` environment variables and command-line flags.

Precedence is flag > environment > file > default. The result is one frozen `Settings` object that
is passed down explicitly; no other module reads the environment.

State never depends on the current directory. Relative paths written in the config file resolve
against that file's folder; relative paths from the defaults, the environment or flags resolve
against `home` (`PYPISSH_HOME`, `--home`), which defaults to a per-user data directory. `load_all`
also tells where each value came from (for `check --show`), which `PYPISSH_*` variables no setting
reads (a misspelt name), and every problem with the values.
How the sources are read, and the settings of the per-login commands (read without this module),
are in `loginsettings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gateway import loginsettings as login
from gateway import setting_texts
from gateway.errors import ConfigError
from gateway.loginsettings import CONFIG_ENV, ENV_PREFIX

HOME_ENV = login.HOME_ENV
default_home = login.default_home
sqlite_path = login.sqlite_path
PROXY_MODES = ("off", "use", "require")
# `PYPISSH_*` variables that are not settings and are nobody's typo: the config file's path, the
# legacy pypissh client's own variables (PYPISSH_SSH, PYPISSH_HOST, PYPISSH_USER; see
# testbed/pypissh.py) and the virtualenv of the `./dev` script.
OTHER_VARIABLES = frozenset({CONFIG_ENV, "PYPISSH_SSH", "PYPISSH_HOST", "PYPISSH_USER", "PYPISSH_VENV"})

# Settings holding a file or folder: a relative value resolves against the config file's folder
# (when written there) or against `home` (otherwise). A relative SQLite path in database_url too.
PATH_SETTINGS = ("host_key_dir", "secret_key_file", "upstream_ca_bundle", "spool_dir", "shim_socket", "log_file",
                 "authorized_keys_file")
SECRET_SETTINGS = ("secret_key",)
# URLs that may carry a password (user:password@host, or ?password=): masked when shown.
URL_SETTINGS = ("database_url", "smtp_url", "upstream_url")

DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
# psycopg is an extra (`[postgres]`): a SQLite-only setup does not need it.
_POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg")
SMTP_SCHEMES = ("smtp", "smtps", "smtp+starttls")
UPSTREAM_SCHEMES = ("https", "http")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")

# Numbers: every numeric setting must be finite and not negative (0 turns a limit off where the
# README says so). These must be larger still; anything else is an impossible value.
AT_LEAST_ONE = ("workers", "max_upload_bytes", "max_header_bytes", "max_auth_tries", "public_port",
                "upload_threads", "registry_threads", "index_max_page_bytes", "max_sessions_per_connection")
ABOVE_ZERO = ("read_timeout", "upstream_timeout", "upstream_deadline", "login_timeout", "failed_login_half_life")
PORT_MAX = 65535


@dataclass(frozen=True)
class Settings:
    database_url: str = login.DATABASE_URL
    listen: str = "127.0.0.1:2222"
    ssh_user: str = login.SSH_USER
    upstream_url: str = "https://upload.pypi.org/legacy/"
    upstream_ca_bundle: str | None = None
    host_key_dir: str = "keys"
    secret_key: str | None = None
    secret_key_file: str = "secret.key"
    max_upload_bytes: int = login.MAX_UPLOAD_BYTES
    max_header_bytes: int = 64 * 1024
    read_timeout: float = login.READ_TIMEOUT
    upstream_timeout: float = 300.0
    upstream_retries: int = 2
    # The whole exchange with the upload server (every attempt, the backoff pauses and the check
    # on the index after a dropped connection) ends within this time, however slowly it answers.
    upstream_deadline: float = 600.0
    # The index's simple API: after a dropped connection the gateway looks there to see whether
    # the upload was published. Verified against upstream_ca_bundle like the upload server.
    index_url: str = "https://pypi.org/simple/"
    # The largest index page read (gateway/upload/index.py): PyPI's largest are a few MB.
    index_max_page_bytes: int = 20 * 1024 * 1024
    spool_dir: str | None = None
    health_listen: str = "127.0.0.1:9122"
    smtp_url: str = "smtp://127.0.0.1:25"
    mail_from: str = "PyPI SSH gateway <noreply@localhost>"
    proxy_protocol: str = "off"
    proxy_allowed: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    key_cache_seconds: float = 5.0
    # A schedule change (brownout, sunset, pause) reaches every running replica within this time.
    schedule_cache_seconds: float = 2.0
    # Per-use reminder emails: queue one when an account uploads over SSH and was not emailed
    # within this many days (0 turns them off); `pypissh-migrate notify --reminders` sends them.
    reminder_repeat_days: float = 30.0
    login_timeout: float = 30.0
    max_startups: int = 100
    # Unauthenticated connections one address may hold; a handshake needs one, a NAT a few.
    max_startups_per_source: int = 10
    # An address whose failed logins (score halving every failed_login_half_life seconds)
    # reach this many is refused until the score decays; 0 turns the penalty box off.
    failed_login_limit: int = 20
    failed_login_half_life: float = 300.0
    max_auth_tries: int = 6
    max_sessions_per_account: int = 8
    # Session channels one connection may hold open at once (OpenSSH's MaxSessions): a channel
    # past it is refused at its open, before the gateway keeps anything for it.
    max_sessions_per_connection: int = 10
    # Logged-in connections one account may hold on a replica (an OpenSSH ControlMaster holds one
    # for all its sessions); 0 means no cap.
    max_connections_per_account: int = 16
    # A session channel that sends no exec or shell request within this time is closed, so it
    # cannot hold one of the account's sessions; 0 means no limit.
    channel_request_timeout: float = 10.0
    # A logged-in connection with no channel open for this long is closed; 0 means never.
    idle_timeout: float = 60.0
    # Threads that read archives and forward uploads, and how many uploads may wait for one;
    # past that, uploads are refused (503, nothing published) and /readyz reports saturation.
    upload_threads: int = 64
    upload_queue: int = 64
    # Threads for key lookups and registry writes, separate from the uploads' so that a login
    # never waits behind an upload; /readyz reports saturation once registry_queue tasks wait.
    registry_threads: int = 8
    registry_queue: int = 64
    legacy_algorithms: bool = False
    allow_weak_keys: bool = False
    public_host: str = "localhost"
    public_port: int = 2222
    help_url: str = "https://packaging.python.org/en/latest/guides/distributing-packages-using-setuptools/#uploading-your-project-to-pypi"
    token_url: str = "https://pypi.org/manage/account/token/"
    log_level: str = "INFO"
    # How log lines look: `text` (a message, then key=value fields) or `json` (one object a line).
    log_format: str = "text"
    # Append the log to this file instead of stderr (`serve`).
    log_file: str | None = None
    workers: int = 1
    drain_seconds: float = 60.0
    # The state directory: relative paths from defaults, environment and flags resolve against it.
    # Empty until `load` fills in the per-user default (see `default_home`).
    home: str = ""
    # OpenSSH mode (gateway/ssh/keyfile.py): the replica keeps authorized_keys_file, which sshd
    # greps for the offered key; each line's forced command runs the shim with shim_python (empty:
    # the replica's own interpreter), which hands the session of shim_user over shim_socket.
    openssh_mode: bool = False
    shim_socket: str = login.SHIM_SOCKET
    shim_user: str = "submit"
    authorized_keys_file: str = ""
    shim_python: str = ""

    # -- derived values -------------------------------------------------------------------------
    @property
    def listen_host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_host_port(self.listen)[1]

    @property
    def health_host(self) -> str:
        return split_host_port(self.health_listen)[0]

    @property
    def health_port(self) -> int:
        return split_host_port(self.health_listen)[1]

    @property
    def sqlite_path(self) -> Path | None:
        """The registry's file when database_url is a SQLite file, else None."""
        return sqlite_path(self.database_url)

    def replace(self, **changes: Any) -> Settings:
        return validate(dataclasses.replace(self, **changes))


@dataclass(frozen=True)
class Source:
    """Where a setting's value came from: `default`, `file` (where = its path), `env` (where = the
    variable) or `flag`."""

    kind: str
    where: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.where}".strip()

    def origin(self) -> str:
        """For messages: where the operator fixes the value ('' for a default)."""
        return login.origin_note(self.kind, self.where)


DEFAULT = Source("default")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings, as a sentence that says how to fix it."""

    setting: str | None
    message: str


@dataclass(frozen=True)
class Loaded:
    """The settings with their provenance: what `check --show` prints."""

    settings: Settings
    sources: Mapping[str, Source] = field(default_factory=dict)
    config_path: Path | None = None
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


# -- small parsers --------------------------------------------------------------------------------
def split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(setting_texts.not_host_port(value))
    return host.strip("[]") or "0.0.0.0", int(port)


def mask_url(url: str | None) -> str | None:
    """`url` without its password (user:***@host, password=***), for anything a person reads."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        login, _, where = netloc.rpartition("@")
        netloc = f"{login.partition(':')[0]}:***@{where}"
    if "password=" in query.lower():
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(query)], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing to hide: as written (urlunsplit would drop sqlite:////'s empty host)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def shown_value(name: str, value: Any) -> Any:
    """A setting's value as a person may see it: secrets masked."""
    if name in SECRET_SETTINGS and value:
        return "***"
    if name in URL_SETTINGS:
        return mask_url(value)
    return value


# -- the sources ----------------------------------------------------------------------------------
def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(Settings)}


def _fields() -> dict[str, tuple[str, Any]]:
    """name -> (type, default) of every setting, as `loginsettings.merge_sources` reads them."""
    return {f.name: (str(f.type), f.default) for f in dataclasses.fields(Settings)}


def _closest(name: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


# -- validation -----------------------------------------------------------------------------------
AddProblem = Callable[[str | None, str], None]  # add(setting or None, message): one problem found


def problems(settings: Settings) -> list[Problem]:
    """Everything wrong with `settings`, each with what to do. Empty when they can be used."""
    found: list[Problem] = []

    def add(setting: str | None, message: str) -> None:
        found.append(Problem(setting, message))

    for name, kind in _field_types().items():
        value = getattr(settings, name)
        if kind not in ("int", "float") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            add(name, setting_texts.setting_not_finite(name, value))
        elif name in AT_LEAST_ONE and value < 1:
            add(name, setting_texts.setting_too_small(name, value, "at least 1"))
        elif name in ABOVE_ZERO and value <= 0:
            add(name, setting_texts.setting_too_small(name, value, "above 0"))
        elif value < 0:
            add(name, setting_texts.setting_too_small(name, value, "0 or more"))
    if settings.public_port > PORT_MAX:
        add("public_port", setting_texts.port_out_of_range("public_port", settings.public_port))

    if settings.proxy_protocol not in PROXY_MODES:
        add("proxy_protocol", setting_texts.setting_not_one_of("proxy_protocol", PROXY_MODES, settings.proxy_protocol))
    for cidr in settings.proxy_allowed:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            add("proxy_allowed", setting_texts.not_a_network("proxy_allowed", cidr))
    if settings.log_level.upper() not in LOG_LEVELS:
        add("log_level", setting_texts.setting_not_one_of("log_level", LOG_LEVELS, settings.log_level))
    if settings.log_format not in LOG_FORMATS:
        add("log_format", setting_texts.setting_not_one_of("log_format", LOG_FORMATS, settings.log_format))
    _check_addresses(settings, add)
    _check_urls(settings, add)
    if settings.authorized_keys_file and not settings.openssh_mode:
        add("authorized_keys_file", setting_texts.needs_openssh_mode("authorized_keys_file"))
    if settings.openssh_mode and not settings.authorized_keys_file:
        add("authorized_keys_file", setting_texts.openssh_mode_needs_key_file())
    if settings.shim_python and not os.path.isabs(settings.shim_python):
        add("shim_python", setting_texts.not_absolute("shim_python", settings.shim_python))
    if settings.home and not os.path.isabs(settings.home):
        add("home", setting_texts.home_not_absolute(settings.home))
    return found


def _check_addresses(settings: Settings, add: AddProblem) -> None:
    ports = {}
    for name in ("listen", "health_listen"):
        try:
            ports[name] = split_host_port(getattr(settings, name))
        except ConfigError as exc:
            add(name, f"{name}: {exc}")
            continue
        if ports[name][1] > PORT_MAX:
            add(name, setting_texts.port_out_of_range(name, ports[name][1]))
    # Port 0 asks the kernel for a free port each time: two of those never collide.
    if len(ports) == 2 and ports["listen"] == ports["health_listen"] and ports["listen"][1] != 0:
        add("health_listen", setting_texts.health_listen_is_listen(settings.listen))


def _check_urls(settings: Settings, add: AddProblem) -> None:
    url = settings.database_url
    scheme, sep, _rest = url.partition("://")
    if not sep:
        add("database_url", setting_texts.database_url_is_a_path(url))
    elif scheme not in DATABASE_SCHEMES:
        add("database_url", setting_texts.database_scheme_unknown(scheme, DATABASE_SCHEMES))
    elif scheme in _POSTGRES_SCHEMES and importlib.util.find_spec("psycopg") is None:
        # Not the value's fault but the install's: no "set by", the fix is the extra.
        add(None, setting_texts.missing_extra("a postgresql:// database_url", "psycopg", "postgres"))

    smtp = urlsplit(settings.smtp_url)
    if smtp.scheme.lower() not in SMTP_SCHEMES or not smtp.hostname:
        add("smtp_url", setting_texts.smtp_url_invalid(mask_url(settings.smtp_url) or "", SMTP_SCHEMES))

    upstream = urlsplit(settings.upstream_url)
    if upstream.scheme.lower() not in UPSTREAM_SCHEMES or not upstream.hostname:
        add("upstream_url", setting_texts.upstream_url_invalid(mask_url(settings.upstream_url) or ""))

    index = urlsplit(settings.index_url)
    if index.scheme.lower() not in UPSTREAM_SCHEMES or not index.hostname:
        add("index_url", setting_texts.index_url_invalid(mask_url(settings.index_url) or ""))


def validate(settings: Settings) -> Settings:
    """`settings` if they can be used, else a ConfigError with the first problem."""
    found = problems(settings)
    if found:
        raise ConfigError(found[0].message)
    return settings


def insecure_upstream(settings: Settings) -> str | None:
    """Why `upstream_url` would carry tokens in cleartext, or None when it uses HTTPS."""
    if urlsplit(settings.upstream_url).scheme.lower() == "https":
        return None
    return setting_texts.upstream_not_https(mask_url(settings.upstream_url) or "")


# -- loading --------------------------------------------------------------------------------------
def load(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and flag overrides."""
    return load_all(config_path, environ, overrides).settings


def load_all(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    strict: bool = True,
) -> Loaded:
    """The settings with the source of each value, warnings about unknown `PYPISSH_*` variables
    and (with strict=False, instead of raising on the first) every problem found."""
    environ = os.environ if environ is None else environ
    merged = login.merge_sources(_fields(), PATH_SETTINGS, config_path, environ, overrides, unknown=_unknown_setting)
    settings = Settings(**merged.values)
    sources = {name: Source(*merged.origins[name]) if name in merged.origins else DEFAULT for name in _fields()}
    found = [f"{p.message}{sources[p.setting].origin() if p.setting else ''}" for p in problems(settings)]
    if strict and found:
        raise ConfigError(found[0])
    config = Path(merged.config) if merged.config is not None else None
    return Loaded(settings, sources, config, tuple(unknown_variables(environ)), tuple(found))


def _unknown_setting(name: str, config: str | None) -> ConfigError:
    return ConfigError(setting_texts.unknown_setting(name, config, _closest(name, list(_fields()))))


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each `PYPISSH_*` variable no setting reads, naming the closest setting."""
    settings = list(_field_types())
    known = {ENV_PREFIX + name.upper() for name in settings} | OTHER_VARIABLES
    warnings = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in known:
            continue
        # Compared without the shared prefix, which would make every name look alike.
        closest = _closest(variable[len(ENV_PREFIX):].lower(), settings)
        warnings.append(setting_texts.unknown_variable(variable, ENV_PREFIX + closest.upper() if closest else None,
                                                  closest))
    return warnings
