"""`pypissh-gateway`: run and operate the SSH gateway."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from gateway import hostkeys
from gateway.cliutil import Context, ensure_schema, global_options, pass_context, setup_logging
from gateway.errors import ConfigError
from gateway.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@pass_context
def serve(obj: Context, listen, upstream_url, database_url) -> None:
    """Accept legacy uploads over SSH and forward them upstream."""
    settings = obj.settings(listen=listen, upstream_url=upstream_url, database_url=database_url)
    setup_logging(settings.log_level)
    ensure_schema(settings)
    try:
        hostkeys.load(settings.host_key_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    from gateway.app import Gateway
    from gateway.sshserver import start_server

    gateway = Gateway.build(settings)
    server = await start_server(gateway)
    log = logging.getLogger("gateway")
    log.info("listening on %s for user %s, forwarding to %s", settings.listen, settings.ssh_user,
             settings.upstream_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping")
    server.close()
    await server.wait_closed()
    gateway.close()


@cli.command()
@click.option("--force", is_flag=True, help="Replace existing keys (clients will see a changed host key).")
@pass_context
def keygen(obj: Context, force: bool) -> None:
    """Create the host keys (ed25519, and RSA for old clients) in host_key_dir."""
    settings = obj.settings()
    written = hostkeys.generate(settings.host_key_dir, force=force)
    for path in written:
        click.echo(f"wrote {path}")
    if not written:
        click.echo(f"host keys already exist in {settings.host_key_dir}/ (use --force to replace them)")
    for line in hostkeys.fingerprints(settings.host_key_dir):
        click.echo(f"  {line}")


@cli.group()
def db() -> None:
    """Manage the registry's schema."""


@db.command("upgrade")
@pass_context
def db_upgrade(obj: Context) -> None:
    """Create or migrate the registry's tables to the current schema."""
    from gateway.registry.migrate_db import head_revision, upgrade

    settings = obj.settings()
    upgrade(settings.database_url)
    click.echo(f"database at revision {head_revision()}")


@cli.command()
@pass_context
def check(obj: Context) -> None:
    """Check settings, host keys, database and upstream reachability; exit non-zero on a problem."""
    from gateway.registry import Registry
    from gateway.registry.migrate_db import is_current
    from gateway.tokens import TokenBox

    settings = obj.settings()
    problems = 0

    def report(ok: bool, what: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        click.echo(f"[{'ok' if ok else 'FAIL'}] {what}")

    try:
        report(True, "host keys: " + ", ".join(hostkeys.fingerprints(settings.host_key_dir)))
    except ConfigError as exc:
        report(False, str(exc))
    try:
        Registry.from_url(settings.database_url).ping()
        report(is_current(settings.database_url), "database reachable" + (
            "" if is_current(settings.database_url) else "; schema not current: run `pypissh-gateway db upgrade`"))
    except Exception as exc:
        report(False, f"database {settings.database_url.split('@')[-1]}: {type(exc).__name__}")
    try:
        TokenBox.from_settings(settings, create=False)
        report(True, "secret key for stored tokens")
    except ConfigError as exc:
        report(False, str(exc))
    sys.exit(1 if problems else 0)


@cli.command()
@click.option("--account", required=True, help="The account the OpenSSH key line names.")
@click.option("--fingerprint", default=None, help="The key that authenticated (for the record).")
@pass_context
def stdio(obj: Context, account: str, fingerprint: str | None) -> None:
    """Serve one exchange on stdin/stdout (for OpenSSH's command= deployment)."""
    from gateway.stdio import run_stdio

    settings = obj.settings()
    setup_logging("WARNING")
    sys.exit(run_stdio(settings, account, fingerprint))


def main() -> None:
    cli(prog_name="pypissh-gateway")


if __name__ == "__main__":
    main()
