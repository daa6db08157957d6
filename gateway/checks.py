"""What `pypissh-gateway check` looks at, one finding per line, each failure with its fix.

The settings' own problems (impossible numbers, unknown schemes, health_listen on listen), the
config file's mode, the host keys and their modes, the registry and its file mode, the secret key,
its file mode and whether it opens every stored token, and the upstream: HTTPS, the CA bundle, and
a real request (TLS handshake with the configured CA, then any HTTP answer). `show_lines` is
`check --show`: every effective setting with its source, secrets masked.
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway import messages
from gateway.errors import ConfigError
from gateway.settings import Loaded, Settings, insecure_upstream, mask_url, shown_value
from gateway.ssh import hostkeys

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
        return [fail(messages.file_mode_too_open(what, path, mode))]
    return []


# -- the parts ------------------------------------------------------------------------------------
def settings_findings(loaded: Loaded) -> list[Finding]:
    found = [fail(problem) for problem in loaded.problems]
    if loaded.config_path is not None:
        mode = mode_of(loaded.config_path)
        if mode is not None and mode & WRITABLE_BY_OTHERS:
            found.append(fail(messages.config_writable_by_others(loaded.config_path, mode)))
    return found


def host_key_findings(settings: Settings) -> list[Finding]:
    try:
        found = [ok(messages.host_keys_ok(hostkeys.fingerprints(settings.host_key_dir)))]
    except ConfigError as exc:
        found = [fail(str(exc))]
    for path in hostkeys.private_key_files(settings.host_key_dir):
        found += private_file("host private key", path)
    return found


def registry_findings(settings: Settings) -> tuple[list[Finding], bool]:
    """The registry's findings, and whether it can be read."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.registry.migrate_db import BEHIND, CURRENT, MISSING, head_revision, schema_state

    where = mask_url(settings.database_url) or ""
    try:
        state, revision = schema_state(settings.database_url)
    except SQLAlchemyError as exc:
        from gateway.cliutil import database_error_detail

        return [fail(messages.registry_unreachable(where, database_error_detail(exc)))], False
    found: list[Finding] = []
    if state == MISSING:
        found.append(fail(messages.registry_missing(where)))
    elif state == BEHIND:
        found.append(fail(messages.registry_behind(where, revision, head_revision())))
    elif state == CURRENT:
        found.append(ok(messages.database_ok(where)))
    else:
        found.append(fail(messages.registry_unknown_revision(where, revision)))
    database = settings.sqlite_path
    if database is not None:
        for suffix in ("", "-wal", "-shm"):
            found += private_file("registry file", Path(f"{database}{suffix}"))
    return found, state != MISSING


def secret_findings(settings: Settings, registry_readable: bool) -> list[Finding]:
    from gateway.tokens import TokenBox, key_file

    found: list[Finding] = []
    path = key_file(settings)
    if path is not None:
        found += private_file("secret key file", path)
    try:
        box = TokenBox.from_settings(settings)
    except ConfigError as exc:
        return [fail(str(exc)), *found]
    if not registry_readable:
        return [ok(messages.secret_key_present(path or "secret_key")), *found]
    from gateway.registry import Registry

    registry = Registry.from_url(settings.database_url)
    try:
        sealed = [ciphertext for _id, ciphertext in registry.accounts.token_ciphertexts()]
    finally:
        registry.close()
    failing = sum(not box.opens(ciphertext) for ciphertext in sealed)
    if failing:
        return [fail(messages.tokens_unopenable(failing, len(sealed), path or "secret_key")), *found]
    return [ok(messages.tokens_open(len(sealed))), *found]


def upstream_findings(settings: Settings) -> list[Finding]:
    url = mask_url(settings.upstream_url) or ""
    cleartext = insecure_upstream(settings)
    if cleartext:
        return [fail(cleartext)]
    bundle = settings.upstream_ca_bundle
    if bundle and not Path(bundle).is_file():
        return [fail(messages.upstream_ca_bundle_missing(bundle))]
    return [probe_upstream(settings.upstream_url, bundle, url)]


def index_findings(settings: Settings) -> list[Finding]:
    """A plain-http index_url: the replicas and `evidence refresh` refuse to read it."""
    if urlsplit(settings.index_url).scheme.lower() != "https":
        return [fail(messages.index_not_https(mask_url(settings.index_url) or ""))]
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
        return fail(messages.upstream_check_certificate(shown, bundle))
    except requests.RequestException as exc:
        return fail(messages.upstream_check_unreachable(shown, short_reason(exc)))
    return ok(messages.upstream_check_ok(shown, answer.status_code))


def short_reason(exc: Exception) -> str:
    """The useful end of a requests error ('Connection refused', 'timed out', ...)."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found.group(1).strip()
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return f"no answer within {UPSTREAM_CHECK_SECONDS:.0f} s"
    return type(exc).__name__


def run_checks(loaded: Loaded) -> list[Finding]:
    """Every finding, in the order an operator fixes things."""
    settings = loaded.settings
    found = settings_findings(loaded)
    found += host_key_findings(settings)
    registry, readable = registry_findings(settings)
    found += registry
    found += secret_findings(settings, readable)
    found += upstream_findings(settings)
    found += index_findings(settings)
    return found


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
