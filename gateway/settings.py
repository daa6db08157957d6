"""Settings: one TOML file, `PYPISSH_*` environment variables and command-line flags.

Precedence is flag > environment > file > default. The result is one frozen `Settings` object that
is passed down explicitly; no other module reads the environment.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gateway import messages
from gateway.errors import ConfigError

ENV_PREFIX = "PYPISSH_"
CONFIG_ENV = "PYPISSH_CONFIG"
PROXY_MODES = ("off", "use", "require")


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/pypissh.sqlite3"
    listen: str = "127.0.0.1:2222"
    ssh_user: str = "submit"
    upstream_url: str = "https://upload.pypi.org/legacy/"
    upstream_ca_bundle: str | None = None
    host_key_dir: str = "keys"
    secret_key: str | None = None
    secret_key_file: str = "var/secret.key"
    # The real index's default per-file limit.
    max_upload_bytes: int = 100 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    # Seconds a client may stay silent mid-request before it is told to retry.
    read_timeout: float = 30.0
    upstream_timeout: float = 300.0
    upstream_retries: int = 2
    # The whole exchange with the upload server (every attempt, the backoff pauses and the check
    # on the index after a dropped connection) ends within this time, however slowly it answers.
    upstream_deadline: float = 600.0
    # The index's simple API: after a dropped connection the gateway looks there to see whether
    # the upload was published. Verified against upstream_ca_bundle like the upload server.
    index_url: str = "https://pypi.org/simple/"
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
    workers: int = 1
    drain_seconds: float = 60.0

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

    def replace(self, **changes: Any) -> "Settings":
        return validate(dataclasses.replace(self, **changes))


def split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(messages.not_host_port(value))
    return host.strip("[]") or "0.0.0.0", int(port)


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(Settings)}


def _coerce(name: str, raw: Any) -> Any:
    kind = _field_types()[name]
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(messages.setting_not_boolean(name, raw))
    if kind == "int":
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(messages.setting_not_integer(name, raw)) from None
    if kind == "float":
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(messages.setting_not_number(name, raw)) from None
    if kind.startswith("tuple"):
        if isinstance(raw, str):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return tuple(str(part) for part in raw)
    return None if raw is None else str(raw)


def validate(settings: Settings) -> Settings:
    if settings.proxy_protocol not in PROXY_MODES:
        raise ConfigError(messages.setting_not_one_of("proxy_protocol", PROXY_MODES, settings.proxy_protocol))
    for cidr in settings.proxy_allowed:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(messages.not_a_network("proxy_allowed", cidr)) from None
    split_host_port(settings.listen)
    split_host_port(settings.health_listen)
    if settings.max_upload_bytes <= 0:
        raise ConfigError(messages.setting_not_positive("max_upload_bytes"))
    if settings.upstream_deadline <= 0:
        raise ConfigError(messages.setting_not_positive("upstream_deadline"))
    for name in ("upload_threads", "registry_threads"):
        if getattr(settings, name) <= 0:
            raise ConfigError(messages.setting_not_positive(name))
    for name in ("upload_queue", "registry_queue", "max_connections_per_account", "channel_request_timeout",
                 "idle_timeout"):
        if getattr(settings, name) < 0:
            raise ConfigError(messages.setting_negative(name))
    _check_database_driver(settings.database_url)
    return settings


# psycopg is an extra (`[postgres]`): a SQLite-only setup does not need it.
_POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg")


def _check_database_driver(url: str) -> None:
    if url.partition("://")[0] in _POSTGRES_SCHEMES and importlib.util.find_spec("psycopg") is None:
        raise ConfigError(messages.missing_extra("a postgresql:// database_url", "psycopg", "postgres"))


def load(
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and flag overrides."""
    environ = os.environ if environ is None else environ
    known = _field_types()
    values: dict[str, Any] = {}

    path = config_path or environ.get(CONFIG_ENV)
    if path:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(messages.config_file_missing(path)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(messages.config_file_not_toml(path, exc)) from None
        data = data.get("pypissh", data)
        for name, raw in data.items():
            if name not in known:
                raise ConfigError(messages.unknown_setting(name, path))
            values[name] = _coerce(name, raw)

    for name in known:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = _coerce(name, environ[env_name])

    for name, raw in (overrides or {}).items():
        if raw is None:
            continue
        if name not in known:
            raise ConfigError(messages.unknown_setting(name))
        values[name] = _coerce(name, raw)

    return validate(Settings(**values))


def ensure_parent(path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target
