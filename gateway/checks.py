"""What `pypissh-gateway check` looks at, one finding per line, each failure with its fix.

The settings' own problems (impossible numbers, unknown schemes, health_listen on listen), file
and folder modes as sshd's StrictModes judges them (`mode_findings`, which `serve` enforces too),
the host keys, the registry (for a multi-host PostgreSQL URL also which host is the primary now and
how far each standby lags), the secret key and whether it opens every stored token, and the
upstream: HTTPS, the CA bundle, and
a real request (TLS handshake with the configured CA, then any HTTP answer). `show_lines` is
`check --show`: every effective setting with its source, secrets masked.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway import check_texts, cli_texts, setting_texts
from gateway.errors import ConfigError
from gateway.settings import Loaded, Settings, insecure_upstream, mask_url, shown_value
from gateway.ssh import hostkeys
from gateway.upload.index import index_not_https

if TYPE_CHECKING:
    from gateway.registry.replication import HostState

# A reachability check, not an upload: a few seconds tell a dead address from a live one.
UPSTREAM_CHECK_SECONDS = 5.0
PRIVATE = 0o077  # any permission for group or others
WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str

    def line(self) -> str:
        return f"[{'ok' if self.ok else 'FAIL'}] {self.text}"


def ok(text: str) -> Finding:
    return Finding(True, text)


def fail(text: str) -> Finding:
    return Finding(False, text)


def mode_of(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def private_file(what: str, path: Path) -> list[Finding]:
    """A failure when `path` exists and group or others have any access to it."""
    mode = mode_of(path)
    if mode is not None and mode & PRIVATE:
        return [fail(check_texts.file_mode_too_open(what, path, mode))]
    return []


def folder_not_writable_by_others(what: str, path: Path) -> list[Finding]:
    """A failure when group or others may write in `path`: they could replace a key inside it."""
    mode = mode_of(path)
    if mode is not None and path.is_dir() and mode & WRITABLE_BY_OTHERS:
        return [fail(check_texts.folder_writable_by_others(what, path, mode))]
    return []


# -- the parts ------------------------------------------------------------------------------------
def settings_findings(loaded: Loaded) -> list[Finding]:
    return [fail(problem) for problem in loaded.problems]


def mode_findings(loaded: Loaded) -> list[Finding]:
    """File modes as sshd's StrictModes judges them: private keys, the secret key, the registry
    file and a configuration file holding a password readable by the owner alone; the config file,
    home and the key folders writable by the owner alone. `serve` refuses to start on any of these
    (unless --insecure-modes)."""
    from gateway.tokens import key_file

    settings = loaded.settings
    found: list[Finding] = []
    config = loaded.config_path
    if config is not None:
        mode = mode_of(config)
        if mode is not None and mode & WRITABLE_BY_OTHERS:
            found.append(fail(check_texts.config_writable_by_others(config, mode)))
        elif mode is not None and mode & PRIVATE and _config_holds_password(loaded):
            found.append(fail(check_texts.config_password_readable(config, mode)))
    found += folder_not_writable_by_others("home", Path(settings.home))
    found += folder_not_writable_by_others("host_key_dir", Path(settings.host_key_dir))
    for path in hostkeys.private_key_files(settings.host_key_dir):
        found += private_file("host private key", path)
    secret = key_file(settings)
    if secret is not None:
        if secret.parent != Path(settings.home):
            found += folder_not_writable_by_others("the secret key's folder", secret.parent)
        found += private_file("secret key file", secret)
    database = settings.sqlite_path
    if database is not None:
        for suffix in ("", "-wal", "-shm"):
            found += private_file("registry file", Path(f"{database}{suffix}"))
    return found


def _config_holds_password(loaded: Loaded) -> bool:
    """Whether the configuration file itself sets a URL with a password, or the secret key."""
    from urllib.parse import urlsplit

    def from_file(name: str) -> bool:
        source = loaded.sources.get(name)
        return source is not None and source.kind == "file"

    settings = loaded.settings
    if from_file("secret_key") and settings.secret_key:
        return True
    for name in ("database_url", "smtp_url"):
        value = getattr(settings, name) or ""
        if from_file(name) and "://" in value and (urlsplit(value).password or "password=" in value.lower()):
            return True
    return False


def host_key_findings(settings: Settings) -> list[Finding]:
    try:
        return [ok(check_texts.host_keys_ok(hostkeys.fingerprints(settings.host_key_dir)))]
    except ConfigError as exc:
        return [fail(str(exc))]


def registry_findings(settings: Settings) -> tuple[list[Finding], bool]:
    """The registry's findings, and whether it can be read."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.registry.migrate_db import BEHIND, CURRENT, MISSING, head_revision, schema_state

    where = mask_url(settings.database_url) or ""
    try:
        state, revision = schema_state(settings.database_url)
    except ModuleNotFoundError as exc:  # the database's driver is an extra the install left out
        missing = setting_texts.missing_extra("a postgresql:// database_url", exc.name or "psycopg", "postgres")
        return [fail(missing)], False
    except SQLAlchemyError as exc:
        from gateway.cliutil import database_error_detail

        return [fail(cli_texts.registry_unreachable(where, database_error_detail(exc)))], False
    found: list[Finding] = []
    if state == MISSING:
        found.append(fail(cli_texts.registry_missing(where)))
    elif state == BEHIND:
        found.append(fail(cli_texts.registry_behind(where, revision, head_revision())))
    elif state == CURRENT:
        found.append(ok(check_texts.database_ok(where)))
    else:
        found.append(fail(cli_texts.registry_unknown_revision(where, revision)))
    return found, state != MISSING


def database_host_findings(settings: Settings) -> list[Finding]:
    """For a multi-host PostgreSQL URL: each host's role now, a standby's lag, and whether exactly
    one host accepts writes (none: uploads are refused; two: a split brain)."""
    from gateway.registry import replication

    if not replication.is_multi_host(settings.database_url):
        return []
    try:
        hosts = replication.host_states(settings.database_url)
    except ModuleNotFoundError:  # no psycopg: the settings' findings already name the extra
        return []
    found = [_host_finding(host) for host in hosts]
    primaries = [host.address for host in hosts if host.role == replication.PRIMARY]
    if not primaries:
        found.append(fail(check_texts.database_no_primary(len(hosts))))
    elif len(primaries) > 1:
        found.append(fail(check_texts.database_two_primaries(primaries)))
    return found


def _host_finding(host: HostState) -> Finding:
    from gateway.registry import replication

    if host.role == replication.PRIMARY:
        return ok(check_texts.database_host_primary(host.address, host.standbys))
    if host.role == replication.STANDBY:
        if host.receiving not in ("streaming", replication.HIDDEN):
            return fail(check_texts.database_host_standby_detached(host.address, host.receiving))
        return ok(check_texts.database_host_standby(host.address, host.receiving, host.replay_bytes,
                                                 host.last_replay_age))
    return fail(check_texts.database_host_unreachable(host.address, host.error or "no answer"))


def secret_findings(settings: Settings, registry_readable: bool) -> list[Finding]:
    from gateway.tokens import TokenBox, key_file

    path = key_file(settings)
    try:
        box = TokenBox.from_settings(settings)
    except ConfigError as exc:
        return [fail(str(exc))]
    if not registry_readable:
        return [ok(check_texts.secret_key_present(path or "secret_key"))]
    from gateway.registry import Registry

    registry = Registry.from_url(settings.database_url)
    try:
        sealed = [ciphertext for _id, ciphertext in registry.accounts.token_ciphertexts()]
    finally:
        registry.close()
    failing = sum(not box.opens(ciphertext) for ciphertext in sealed)
    if failing:
        return [fail(check_texts.tokens_unopenable(failing, len(sealed), path or "secret_key"))]
    return [ok(check_texts.tokens_open(len(sealed)))]


def upstream_findings(settings: Settings, *, offline: bool = False) -> list[Finding]:
    url = mask_url(settings.upstream_url) or ""
    cleartext = insecure_upstream(settings)
    if cleartext:
        return [fail(cleartext)]
    bundle = settings.upstream_ca_bundle
    if bundle and not Path(bundle).is_file():
        return [fail(check_texts.upstream_ca_bundle_missing(bundle))]
    if offline:
        return [ok(check_texts.upstream_not_contacted(url))]
    return [probe_upstream(settings.upstream_url, bundle, url)]


def index_findings(settings: Settings) -> list[Finding]:
    """A plain-http index_url: the replicas and `evidence refresh` refuse to read it."""
    if urlsplit(settings.index_url).scheme.lower() != "https":
        return [fail(index_not_https(mask_url(settings.index_url) or ""))]
    return []


def probe_upstream(address: str, bundle: str | None, shown: str) -> Finding:
    """One real HEAD request: a verified TLS handshake and any HTTP status count as reachable."""
    import requests

    try:
        with requests.Session() as session:
            session.trust_env = False  # the gateway's own client ignores proxy variables too
            answer = session.head(address, verify=bundle or True, timeout=UPSTREAM_CHECK_SECONDS,
                                  allow_redirects=False)
    except requests.exceptions.SSLError:
        return fail(check_texts.upstream_check_certificate(shown, bundle))
    except requests.RequestException as exc:
        return fail(check_texts.upstream_check_unreachable(shown, short_reason(exc)))
    return ok(check_texts.upstream_check_ok(shown, answer.status_code))


def short_reason(exc: Exception) -> str:
    """The useful end of a requests error ('Connection refused', 'timed out', ...)."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found.group(1).strip()
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return f"no answer within {UPSTREAM_CHECK_SECONDS:.0f} s"
    return type(exc).__name__


def run_checks(loaded: Loaded, *, offline: bool = False) -> list[Finding]:
    """Every finding, in the order an operator fixes things; `offline`: the upstream is not
    contacted (an upstream outage must not keep a replica from starting)."""
    settings = loaded.settings
    found = settings_findings(loaded)
    found += mode_findings(loaded)
    found += host_key_findings(settings)
    registry, readable = registry_findings(settings)
    found += registry
    found += database_host_findings(settings)
    found += secret_findings(settings, readable)
    found += upstream_findings(settings, offline=offline)
    found += index_findings(settings)
    return _once(found)


def _once(found: list[Finding]) -> list[Finding]:
    """Each finding once: a missing driver is both a settings problem and why the registry
    cannot be read."""
    return list(dict.fromkeys(found))


# -- check --show ---------------------------------------------------------------------------------
def render_value(value: object) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(str(value), ensure_ascii=False)


def show_lines(loaded: Loaded) -> list[str]:
    """`name = value  # source` for every setting, secrets masked (like `sshd -T`)."""
    lines = []
    if loaded.config_path is not None:
        lines.append(f"# configuration file: {loaded.config_path}")
    for name in sorted(vars(loaded.settings)):
        value = shown_value(name, getattr(loaded.settings, name))
        lines.append(f"{name} = {render_value(value)}  # {loaded.sources.get(name, 'default')}")
    return lines
