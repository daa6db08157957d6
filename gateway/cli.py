"""`pypissh-gateway`: run and operate the SSH gateway."""

from __future__ import annotations

import asyncio
import sys

import click

from gateway.cliutil import Context, ensure_schema, global_options, pass_context, setup_logging, setup_syslog
from gateway.errors import ConfigError
from gateway.ssh import hostkeys


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
@click.option("--health-listen", metavar="HOST:PORT", help="Address of /healthz, /readyz and /metrics.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes sharing the port (SO_REUSEPORT); default 1, about one per core.")
@click.option("--worker-index", type=int, default=None, hidden=True)
@pass_context
def serve(obj: Context, listen, upstream_url, database_url, health_listen, workers, worker_index) -> None:
    """Accept legacy uploads over SSH and forward them upstream.

    SIGTERM drains: readiness fails, no new connections are accepted, uploads in flight get
    drain_seconds to finish, then the process exits.
    """
    settings = obj.settings(listen=listen, upstream_url=upstream_url, database_url=database_url,
                            health_listen=health_listen, workers=workers)
    setup_logging(settings.log_level)
    ensure_schema(settings)
    try:
        hostkeys.load(settings.host_key_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        _serve(obj, settings, worker_index, upstream_url, database_url)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _serve(obj: Context, settings, worker_index: int | None, upstream_url: str | None,
           database_url: str | None) -> None:
    if worker_index is not None:
        from gateway.ops.replica import run_replica

        asyncio.run(run_replica(settings, serve_health=False, supervised=True))
    elif settings.workers > 1:
        from gateway.ops.supervisor import Supervisor

        def worker_command(index: int, listen_at: str) -> list[str]:
            argv = [sys.executable, "-m", "gateway"]
            if obj.config:
                argv += ["--config", obj.config]
            for pair in obj.pairs:
                argv += ["--set", pair]
            argv += ["serve", "--listen", listen_at, "--worker-index", str(index)]
            for flag, value in (("--upstream-url", upstream_url), ("--database-url", database_url)):
                if value:
                    argv += [flag, value]
            return argv

        sys.exit(asyncio.run(Supervisor(settings, worker_command, settings.workers).run()))
    else:
        from gateway.ops.replica import run_replica

        asyncio.run(run_replica(settings))


@cli.command()
@click.option("--force", is_flag=True, help="Replace existing keys (clients will see a changed host key).")
@click.option("--next", "next_keys", is_flag=True,
              help="Rotation step 1: add the next keys beside the current ones; clients learn them.")
@click.option("--promote", is_flag=True,
              help="Rotation step 2: make the next keys current; the old ones become *.retired.")
@pass_context
def keygen(obj: Context, force: bool, next_keys: bool, promote: bool) -> None:
    """Create the host keys (ed25519, and RSA for old clients) in host_key_dir, or rotate them.

    Rotation: `keygen --next`, copy the folder to every replica and restart them one by one; wait
    while clients with UpdateHostKeys learn the new keys; then `keygen --promote`, copy, restart.
    """
    settings = obj.settings()
    if next_keys and promote:
        raise click.UsageError("--next and --promote are separate steps of a rotation; run one at a time")
    if promote:
        moves = hostkeys.promote(settings.host_key_dir)
        for old, new in moves:
            click.echo(f"moved {old} -> {new}")
        if not moves:
            click.echo(f"no next keys in {settings.host_key_dir}/; run `pypissh-gateway keygen --next` first")
    else:
        written = hostkeys.generate(settings.host_key_dir, force=force, next_keys=next_keys)
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
    """Serve one session on stdin/stdout (OpenSSH's forced command for a key).

    Hands the session to the local replica over shim_socket (`serve` with openssh_mode = true),
    which runs it as over its own SSH server: a command in SSH_ORIGINAL_COMMAND (help, whoami,
    guide), else one legacy upload request on stdin. With no replica running the user is told so
    and nothing is published. With stdio_in_process = true the session runs in this process
    instead (no replica needed, about a second per session).
    """
    from gateway.entry import stdio_command

    settings = obj.settings()
    if not settings.stdio_in_process:
        sys.exit(stdio_command(settings, account, fingerprint))
    from gateway.ssh.stdio import run_stdio

    # stderr is the user's terminal here: operator logs go to syslog, never to the user.
    setup_syslog("WARNING")
    sys.exit(run_stdio(settings, account, fingerprint))


@cli.command("authorized-keys-command")
@click.argument("user")
@click.argument("key", required=False)
@click.argument("key_type", metavar="[TYPE]", required=False)
@click.option("--command", "executable", metavar="PATH", default=None,
              help="Absolute path of pypissh-gateway for the forced command (default: this program).")
@pass_context
def authorized_keys_command(obj: Context, user: str, key: str | None, key_type: str | None,
                            executable: str | None) -> None:
    """Print the authorized_keys line for a presented key (sshd's AuthorizedKeysCommand).

    In sshd_config: `AuthorizedKeysCommand /abs/path/pypissh-gateway [--config FILE]
    authorized-keys-command %u %k %t`. Prints a `restrict,command="... stdio --account NAME"` line
    for an active key of an enabled account, and nothing for any other key or user. Asks the
    local replica (shim_socket) first, else reads the registry.
    """
    from gateway.entry import authorized_keys_command as run

    settings = obj.settings()
    sys.exit(run(settings, obj.config, obj.pairs, user, key, key_type, executable))


def main() -> None:
    cli(prog_name="pypissh-gateway")


if __name__ == "__main__":
    main()
