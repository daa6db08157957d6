"""The lines `pypissh-gateway check` prints: one per finding, each with its fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Standby(Protocol):
    """One standby as its primary sees it (registry/replication.py:StandbyLag)."""

    @property
    def client(self) -> str: ...
    @property
    def state(self) -> str | None: ...
    @property
    def sync_state(self) -> str | None: ...
    @property
    def replay_bytes(self) -> int | None: ...
    @property
    def replay_seconds(self) -> float | None: ...


# -- check: one line per problem, each with its fix -----------------------------------------------
def file_mode_too_open(what: str, path: object, mode: int) -> str:
    return f"{what} {path} has mode {mode:04o}, open to group or others; run chmod 600 {path}"


def config_writable_by_others(path: object, mode: int) -> str:
    return f"configuration file {path} has mode {mode:04o}, writable by group or others; run chmod go-w {path}"


def config_password_readable(path: object, mode: int) -> str:
    return (f"configuration file {path} has mode {mode:04o} and holds a password (in database_url, smtp_url or "
            f"secret_key); run chmod 600 {path}, or set the secret by its PYPISSH_* variable instead")


def folder_writable_by_others(what: str, path: object, mode: int) -> str:
    return (f"{what} {path} has mode {mode:04o}, writable by group or others, who could replace the keys in it; "
            f"run chmod go-w {path}")


def upstream_not_contacted(url: str) -> str:
    return f"upstream {url} not contacted (--offline); `pypissh-gateway check` tries it for real"


def upstream_ca_bundle_missing(path: object) -> str:
    return (f"upstream_ca_bundle {path} does not exist; point it at the CA file that signed the "
            "upstream's certificate, or remove the setting to use the system CAs")


def upstream_check_certificate(url: str, bundle: object) -> str:
    return (f"upstream {url} presented a certificate that {bundle or 'the system CAs'} cannot verify; "
            "set upstream_ca_bundle to the CA file that signed it")


def upstream_check_unreachable(url: str, detail: str) -> str:
    return f"upstream {url} is unreachable ({detail}); check upstream_url, DNS and the firewall"


def upstream_check_ok(url: str, status: int) -> str:
    return f"upstream {url} answered HTTP {status} over verified TLS"


def tokens_unopenable(count: int, total: int, where: object) -> str:
    return (f"{count} of {total} stored token(s) do not open with the secret key in {where}; set "
            "secret_key_file to the key they were sealed with, or store them again with "
            "`pypissh-migrate accounts set-token NAME`")


def secret_key_present(where: object) -> str:
    return f"secret key in {where} (no registry to check its tokens against)"


def tokens_open(total: int) -> str:
    return f"secret key opens all {total} stored token(s)"


def database_ok(database: str) -> str:
    return f"registry at {database}: reachable, schema current"


def _bytes(count: int | None) -> str:
    return "? bytes" if count is None else f"{count} bytes"


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} s"


def database_host_primary(address: str, standbys: Sequence[Standby]) -> str:
    if not standbys:
        return f"database host {address}: the primary (accepts writes); no standby is streaming from it"
    seen = "; ".join(_standby_seen(s) for s in standbys)
    if len(standbys) == 1:
        return f"database host {address}: the primary (accepts writes); standby: {seen}"
    return f"database host {address}: the primary (accepts writes); {len(standbys)} standbys: {seen}"


MONITOR_HINT = "grant pg_monitor to the registry's role to see it"


def _standby_seen(standby: Standby) -> str:
    if standby.state is None:  # pg_stat_replication hides the details from other roles
        return f"{standby.client} connected (its state and lag are hidden: {MONITOR_HINT})"
    if standby.replay_seconds is None:
        return (f"{standby.client} {standby.state} ({standby.sync_state or '?'}), "
                f"{_bytes(standby.replay_bytes)} not yet replayed")
    return (f"{standby.client} {standby.state} ({standby.sync_state or '?'}), {_bytes(standby.replay_bytes)} not yet "
            f"replayed, replay lag {_seconds(standby.replay_seconds)}")


def database_host_standby(address: str, receiving: str, replay_bytes: int | None,
                          last_replay_age: float | None) -> str:
    if receiving != "streaming":
        return database_host_standby_not_streaming(address, receiving, replay_bytes, last_replay_age)
    if last_replay_age is None:
        return (f"database host {address}: a standby (read-only), streaming; {_bytes(replay_bytes)} received "
                "but not yet replayed")
    return (f"database host {address}: a standby (read-only), streaming; {_bytes(replay_bytes)} received "
            f"but not yet replayed, last replayed commit {_seconds(last_replay_age)} old (this grows too while "
            "the primary is idle)")


def database_host_standby_not_streaming(address: str, receiving: str, replay_bytes: int | None,
                                        last_replay_age: float | None) -> str:
    if last_replay_age is None:
        return (f"database host {address}: a standby (read-only), WAL receiver {receiving} ({MONITOR_HINT}); "
                f"{_bytes(replay_bytes)} received but not yet replayed")
    return (f"database host {address}: a standby (read-only), WAL receiver {receiving} ({MONITOR_HINT}); "
            f"{_bytes(replay_bytes)} received but not yet replayed, last replayed commit "
            f"{_seconds(last_replay_age)} old (this grows too while the primary is idle)")


def database_host_standby_detached(address: str, receiver: str | None) -> str:
    return (f"database host {address}: a standby (read-only) that receives no WAL "
            f"(WAL receiver: {receiver or 'not running'}); if its primary is lost, promote it "
            "(your HA manager does; by hand: SELECT pg_promote() on it), else check its primary_conninfo")


def database_host_unreachable(address: str, detail: str) -> str:
    return (f"database host {address}: unreachable ({detail}); the registry has one server fewer to fail "
            "over to until it runs again (after a failover: rebuilt as a standby of the new primary)")


def database_no_primary(count: int) -> str:
    return (f"none of the {count} database hosts accepts writes, so logins and uploads are refused: "
            "promote the standby (your HA manager does; by hand: SELECT pg_promote() on it)")


def database_two_primaries(addresses: list[str]) -> str:
    return (f"{len(addresses)} database hosts accept writes ({', '.join(addresses)}); the gateway writes to "
            f"the first of them in database_url, so the others have diverged: stop them and rebuild each as "
            "a standby of the primary (pg_rewind or pg_basebackup) before starting it again")


def host_keys_ok(lines: list[str]) -> str:
    return "host keys: " + ", ".join(lines)
