"""`pypissh-gateway`: run and operate the SSH gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway import check_texts, cli_texts
from gateway.cliutil import (
    Context,
    confirm_irreversible,
    database_error_detail,
    database_name,
    global_options,
    pass_context,
    reason_option,
    require_registry,
    run,
    setup_logging,
    yes_option,
)
from gateway.errors import ConfigError
from gateway.settings import Loaded, Settings, insecure_upstream
from gateway.ssh import hostkeys

if TYPE_CHECKING:
    from gateway.checks import Finding


@click.group("pypissh-gateway", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pypissh-gateway")
@global_options
def cli() -> None:
    """The SSH gateway that carries legacy pypissh uploads to the modern upload API.

    Settings come from flags, PYPISSH_<NAME> environment variables, the TOML file and built-in
    defaults, in that order.
    """


@cli.command()
@click.option("--listen", metavar="HOST:PORT", help="Address to accept SSH connections on.")
@click.option("--upstream-url", metavar="URL", help="The HTTPS upload API to forward to.")
@click.option("--database-url", metavar="URL", help="SQLAlchemy URL of the shared registry.")
@click.option("--health-listen", metavar="HOST:PORT", help="Address of /healthz, /readyz and /metrics.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes sharing the port (SO_REUSEPORT); default 1, about one per core.")
@click.option("--insecure-modes", is_flag=True,
              help="Start even when file modes are too open (what `check` fails); each is logged as a warning.")
@click.option("--worker-index", type=int, default=None, hidden=True)
@pass_context
def serve(obj: Context, listen: str | None, upstream_url: str | None, database_url: str | None,
          health_listen: str | None, workers: int | None, insecure_modes: bool, worker_index: int | None) -> None:
    """Accept legacy uploads over SSH and forward them upstream.

    Refuses to start, in one line, on what `check` fails before it connects anywhere: a plain-http
    upstream, a missing upstream_ca_bundle, no registry, no host keys or secret key, a stored token
    the secret key does not open, file modes as sshd's StrictModes judges them (private keys,
    secret key, registry, a config file holding a password: owner only; home and key folders: not
    writable by others; --insecure-modes starts anyway, with a warning for each), or a listen port
    that another process holds. SIGTERM drains: readiness fails, no new connections are accepted,
    uploads in flight get drain_seconds to finish, then the process exits. SIGHUP reopens log_file
    (after logrotate) and reads the secret keys and host keys again, without dropping a session.
    """
    # SIGHUP reopens log_file once the event loop runs (gateway/runtime/hangup.py); until then it must
    # not end the process, as its default action would.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    loaded = obj.loaded(listen=listen, upstream_url=upstream_url, database_url=database_url,
                        health_listen=health_listen, workers=workers)
    settings = loaded.settings
    setup_logging(settings.log_level, settings.log_format, settings.log_file)
    refuse_to_serve(loaded, insecure_modes=insecure_modes, worker=worker_index is not None)
    try:
        _serve(obj, settings, worker_index, upstream_url, database_url, insecure_modes)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def refuse_to_serve(loaded: Loaded, *, insecure_modes: bool = False, worker: bool = False) -> None:
    """Stop with one line before listening when the replica could not work safely: a cleartext
    upstream, a missing CA bundle, no registry, no host keys, no secret key, stored tokens it
    cannot open, file modes `check` fails (unless `insecure_modes`), a port another process holds."""
    from gateway import checks
    from gateway.ssh.listener import port_held_by_another

    settings = loaded.settings
    cleartext = insecure_upstream(settings)
    if cleartext:
        raise click.ClickException(cleartext)
    if settings.upstream_ca_bundle and not Path(settings.upstream_ca_bundle).is_file():
        raise click.ClickException(check_texts.upstream_ca_bundle_missing(settings.upstream_ca_bundle))
    _refuse_open_modes(checks.mode_findings(loaded), insecure_modes, worker)
    require_registry(settings)
    try:
        hostkeys.load(settings.host_key_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    tokens = [finding for finding in checks.secret_findings(settings, registry_readable=True) if not finding.ok]
    if tokens:
        raise click.ClickException(tokens[0].text)
    if not worker and settings.listen_port and port_held_by_another(settings.listen_host, settings.listen_port):
        raise click.ClickException(cli_texts.listen_taken(settings.listen))


def _refuse_open_modes(findings: Iterable[Finding], insecure_modes: bool, worker: bool) -> None:
    """Modes too open: the first stops `serve`; with --insecure-modes each is a warning in the log
    (once, by the supervisor or the single process, not again by every worker)."""
    import logging

    failures = [finding.text for finding in findings if not finding.ok]
    if not failures:
        return
    if not insecure_modes:
        raise click.ClickException(cli_texts.serve_modes_refused(failures[0], len(failures) - 1))
    if not worker:
        log = logging.getLogger("gateway")
        for text in failures:
            log.warning("%s", cli_texts.serving_with_open_modes(text))


def _serve(obj: Context, settings: Settings, worker_index: int | None, upstream_url: str | None,
           database_url: str | None, insecure_modes: bool) -> None:
    if worker_index is not None:
        from gateway.runtime.replica import run_replica

        asyncio.run(run_replica(settings, serve_health=False, supervised=True))
    elif settings.workers > 1:
        from gateway.runtime.supervisor import Supervisor

        def worker_command(index: int, listen_at: str) -> list[str]:
            argv = [sys.executable, "-m", "gateway", *obj.global_args()]
            argv += ["serve", "--listen", listen_at, "--worker-index", str(index)]
            for flag, value in (("--upstream-url", upstream_url), ("--database-url", database_url)):
                if value:
                    argv += [flag, value]
            if insecure_modes:
                argv.append("--insecure-modes")
            return argv

        sys.exit(asyncio.run(Supervisor(settings, worker_command, settings.workers).run()))
    else:
        from gateway.runtime.replica import run_replica

        asyncio.run(run_replica(settings))


@cli.command()
@click.option("--force", is_flag=True,
              help="Replace the existing host keys (clients will see a changed host key); the old ones are "
                   "kept beside them as *.replaced-<UTC time>. Asks first; --yes in scripts.")
@click.option("--next", "next_keys", is_flag=True,
              help="Rotation step 1: add the next keys beside the current ones; clients learn them.")
@click.option("--promote", is_flag=True,
              help="Rotation step 2: make the next keys current; the old ones become *.retired.")
@yes_option
@reason_option
@pass_context
def keygen(obj: Context, force: bool, next_keys: bool, promote: bool, yes: bool) -> None:
    """Create the host keys (ed25519, and RSA for old clients) in host_key_dir, and the secret key
    file that seals stored API tokens when it is missing; or rotate the host keys.

    Files are written 0600, new folders 0700; nothing that exists is overwritten without --force
    (host keys only: a new secret key could not open the tokens already stored).

    Rotation: `keygen --next`, copy the folder to every replica and reload them (SIGHUP); wait
    while clients with UpdateHostKeys learn the new keys; then `keygen --promote`, copy, reload.

    --force, --next and --promote are recorded in the admin journal (`pypissh-migrate audit`)
    when the registry exists; without one they are done all the same, and say so.
    """
    settings = obj.settings()
    if next_keys and promote:
        raise click.UsageError("--next and --promote are separate steps of a rotation; run one at a time")
    try:
        if promote:
            changed = _promote(settings)
        else:
            secret = None if next_keys else _secret_key_to_create(settings)  # refused before anything is written
            changed = _generate_host_keys(settings, force=force, next_keys=next_keys, yes=yes)
            _create_secret_key(secret)
        current = hostkeys.fingerprints(settings.host_key_dir)
        for line in current:
            click.echo(f"  {line}")
        if changed and (promote or next_keys or force):
            step = "promote" if promote else ("next" if next_keys else "replace")
            _journal_host_keys(obj, settings, {"step": step, "files": changed, "fingerprints": current})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(cli_texts.cannot_write(exc.filename or settings.host_key_dir, exc.strerror,
                                                         "host_key_dir and secret_key_file")) from None


def _promote(settings: Settings) -> list[str]:
    """Promote the next keys; returns the renames done, as `old -> new` file names."""
    moves = hostkeys.promote(settings.host_key_dir)
    for old, new in moves:
        click.echo(f"moved {old} -> {new}")
    if not moves:
        click.echo(f"no next keys in {settings.host_key_dir}/; run `pypissh-gateway keygen --next` first")
    return [f"{Path(old).name} -> {Path(new).name}" for old, new in moves]


def _journal_host_keys(obj: Context, settings: Settings, change: dict) -> None:
    """Record a host-key change in the admin journal, after it (it is a change of files, not of
    the registry). Without a registry of the current schema it is still done, and says so."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.registry import Registry
    from gateway.registry.audit import HOST_KEYS
    from gateway.registry.migrate_db import CURRENT, schema_state

    try:
        current = schema_state(settings.database_url)[0] == CURRENT
    except SQLAlchemyError:
        current = False
    if not current:
        click.echo(cli_texts.journal_needs_registry(database_name(settings)))
        return
    registry = Registry.from_url(settings.database_url)
    try:
        registry.audit.record(obj.actor(), target_kind=HOST_KEYS, target=settings.host_key_dir, after=change)
    finally:
        registry.close()


def _generate_host_keys(settings: Settings, *, force: bool, next_keys: bool, yes: bool) -> list[str]:
    """Write the host keys; returns the names of the files written."""
    folder = settings.host_key_dir
    if force and not next_keys and hostkeys.existing(folder):
        confirm_irreversible(cli_texts.confirm_replace_host_keys(folder), "replacing the host keys", yes)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        for old, backup in hostkeys.back_up(folder, stamp):
            click.echo(cli_texts.host_keys_backed_up(old, backup))
    written = hostkeys.generate(folder, next_keys=next_keys)
    for path in written:
        click.echo(cli_texts.wrote_file(path, "host key, mode 0600"))
    if not written:
        click.echo(cli_texts.host_keys_exist(folder))
    return [Path(path).name for path in written]


def _secret_key_to_create(settings: Settings) -> Path | None:
    """The key file to create: the one the settings name, when it is missing. Refused while the
    registry holds tokens (they were sealed under another key, which a new one could never open)."""
    from gateway.tokens import key_file

    path = key_file(settings)
    if path is None:
        return None  # secret_key is given inline
    if path.exists():
        click.echo(cli_texts.already_there(path, "secret key"))
        return None
    sealed = _stored_token_count(settings)
    if sealed:
        raise click.ClickException(cli_texts.secret_key_refused(path, database_name(settings), sealed))
    return path


def _create_secret_key(path: Path | None) -> None:
    from gateway.tokens import create_key_file

    if path is not None and create_key_file(path):
        click.echo(cli_texts.wrote_file(path, "secret key for stored API tokens, mode 0600"))


def _stored_token_count(settings: Settings) -> int:
    """Tokens in the registry (0 when there is no registry yet)."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.registry import Registry
    from gateway.registry.migrate_db import MISSING, schema_state

    try:
        if schema_state(settings.database_url)[0] == MISSING:
            return 0
        registry = Registry.from_url(settings.database_url)
        try:
            return len(registry.accounts.token_ciphertexts())
        finally:
            registry.close()
    except SQLAlchemyError as exc:
        raise click.ClickException(cli_texts.registry_unreachable(database_name(settings),
                                                                 database_error_detail(exc))) from None


@cli.group()
def db() -> None:
    """Manage the registry's schema."""


@db.command("upgrade")
@reason_option
@pass_context
def db_upgrade(obj: Context) -> None:
    """Create or migrate the registry's tables to the current schema.

    A new SQLite registry is made 0600, its folder (home, by default) 0700 when missing. A change
    of schema is recorded in the admin journal.
    """
    settings = obj.settings()
    _upgrade(settings, obj)


def _upgrade(settings: Settings, obj: Context) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.registry.migrate_db import head_revision, schema_state, upgrade

    try:
        before = schema_state(settings.database_url)[1]
        upgrade(settings.database_url)  # a SQLite file's folder (home, by default) is made 0700
    except SQLAlchemyError as exc:
        raise click.ClickException(cli_texts.registry_unreachable(database_name(settings),
                                                                 database_error_detail(exc))) from None
    except OSError as exc:
        raise click.ClickException(cli_texts.registry_unreachable(
            database_name(settings), f"{exc.strerror} ({exc.filename})")) from None
    if before != head_revision():
        _journal_schema(obj, settings, before, head_revision())
    click.echo(f"database at revision {head_revision()}: {database_name(settings)}")


def _journal_schema(obj: Context, settings: Settings, before: str | None, after: str | None) -> None:
    """Record a created or migrated schema, right after the migration (Alembic runs its own
    transactions)."""
    from gateway.registry import Registry
    from gateway.registry.audit import SCHEMA

    registry = Registry.from_url(settings.database_url)
    try:
        registry.audit.record(obj.actor(), target_kind=SCHEMA, target=database_name(settings),
                              before={"revision": before} if before else None, after={"revision": after})
    finally:
        registry.close()


def _make_home(settings: Settings) -> None:
    home = Path(settings.home)
    if home.is_dir():
        return
    try:
        home.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise click.ClickException(cli_texts.cannot_create_home(home, exc.strerror)) from None
    click.echo(cli_texts.created_home(home))


@cli.command()
@reason_option
@pass_context
def init(obj: Context) -> None:
    """Set up a new gateway: create home, the host keys, the secret key and the registry.

    The same as `keygen` then `db upgrade`; running it again changes nothing, and it never
    overwrites a key or a registry.
    """
    settings = obj.settings()
    secret = _secret_key_to_create(settings)
    _make_home(settings)
    try:
        _generate_host_keys(settings, force=False, next_keys=False, yes=False)
        _create_secret_key(secret)
    except OSError as exc:
        raise click.ClickException(cli_texts.cannot_write(exc.filename or settings.host_key_dir, exc.strerror,
                                                         "host_key_dir and secret_key_file")) from None
    _upgrade(settings, obj)
    click.echo(cli_texts.init_done(database_name(settings)))


@cli.command()
@click.option("--show", is_flag=True,
              help="Print every effective setting with its source (default, file, env, flag), secrets masked.")
@click.option("--offline", is_flag=True,
              help="Do not contact the upstream (the unit's ExecStartPre: an upstream outage must not keep "
                   "a replica down).")
@pass_context
def check(obj: Context, show: bool, offline: bool) -> None:
    """Check settings, file modes, host keys, the registry, the secret key against every stored
    token, and the upstream for real (TLS handshake with the configured CA, an HTTP answer).

    Prints one line per finding; each failure says how to fix it. Exit status 1 on any failure.
    """
    from gateway import checks

    loaded = obj.loaded(strict=False)
    if show:
        for line in checks.show_lines(loaded):
            click.echo(line)
        for problem in loaded.problems:
            click.echo(checks.fail(problem).line())
        sys.exit(1 if loaded.problems else 0)
    findings = checks.run_checks(loaded, offline=offline)
    for finding in findings:
        click.echo(finding.line())
    sys.exit(0 if all(finding.ok for finding in findings) else 1)


@cli.command()
@click.option("--account", required=True, help="The account the OpenSSH key line names.")
@click.option("--fingerprint", default=None, help="The key that authenticated (for the record).")
@pass_context
def stdio(obj: Context, account: str, fingerprint: str | None) -> None:
    """Serve one session on stdin/stdout (OpenSSH's forced command for a key).

    The shim: hands the session to the local replica over shim_socket (`serve` with openssh_mode =
    true), which runs it as over its own SSH server: a command in SSH_ORIGINAL_COMMAND (help,
    whoami, guide), else one legacy upload request on stdin. With no replica running the user is
    told so and nothing is published.
    """
    from gateway.logincommands import stdio_command

    sys.exit(stdio_command(obj.settings(), account, fingerprint))


@cli.command("authorized-keys-command")
@click.argument("user")
@click.argument("key", required=False)
@click.argument("key_type", metavar="[TYPE]", required=False)
@pass_context
def authorized_keys_command(obj: Context, user: str, key: str | None, key_type: str | None) -> None:
    """Print a presented key's line of authorized_keys_file (sshd's AuthorizedKeysCommand).

    In sshd_config: `AuthorizedKeysCommand /abs/path/pypissh-gateway [--config FILE]
    authorized-keys-command %u %k %t`. Prints the line the replica wrote for an active key of an
    enabled account, as `grep -F %k` on the file would, and nothing for any other key or user.
    """
    from gateway.logincommands import authorized_keys_command as run

    sys.exit(run(obj.settings(), user, key, key_type))


def main() -> None:
    run(cli, "pypissh-gateway")


if __name__ == "__main__":
    main()
