"""`pypissh-migrate accounts`: the people behind the keys."""

from __future__ import annotations

import sys
from typing import IO

import click

from gateway.cliutil import Context, pass_context, reason_option
from gateway.errors import ConfigError
from gateway.registry import RegistryError
from gateway.tokens import TokenBox, check_token_shape
from migrate.output import console, print_table, table, when

TOKEN_HELP = "File holding the upstream API token; '-' reads standard input."


@click.group()
def accounts() -> None:
    """Add, list, show, update, disable and enable accounts; store their upstream API token."""


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


def _refuse_token_argument(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """A token given as an argument lands in shell history and `ps`; refuse it without echoing it."""
    if value is not None:
        raise click.UsageError(
            "a token is never given on the command line (shell history and `ps` would show it); "
            "use --token-file FILE, or --token-file - and type or pipe it on standard input", ctx)


token_argument_guard = click.option(
    "--token", hidden=True, expose_value=False, callback=_refuse_token_argument, is_eager=True)


def read_token(source: IO[str]) -> str:
    """One token from `source` (its first line), shape-checked; it is never printed."""
    if getattr(source, "name", "") == "<stdin>" and sys.stdin.isatty():
        click.echo("paste the token, then press Enter:", err=True)
    return check_token_shape(source.readline())


@accounts.command("add")
@click.argument("name")
@click.option("--email", help="Where notices and campaign emails go.")
@click.option("--exempt", is_flag=True, help="Keep uploading through brownouts and after the sunset.")
@click.option("--note", help="Free text for admins.")
@click.option("--token-file", type=click.File("r"), help=TOKEN_HELP + " Optional.")
@token_argument_guard
@reason_option
@pass_context
def add(obj: Context, name: str, email: str | None, exempt: bool, note: str | None, token_file) -> None:
    """Add account NAME (the user's name on the index), optionally with its API token."""
    registry = obj.registry()
    try:
        sealed = None
        if token_file is not None:
            sealed = TokenBox.from_settings(obj.settings()).seal(read_token(token_file))
        actor = obj.actor()
        account = registry.accounts.add_account(name, email=email, exempt=exempt, note=note, audit=actor)
        if sealed is not None:
            registry.accounts.set_token_ciphertext(account.name, sealed, audit=actor)
    except (RegistryError, ConfigError) as exc:
        _fail(exc)
    click.echo(f"added account '{account.name}'" + (" (exempt)" if account.exempt else "")
               + (", token stored (encrypted)" if token_file else ""))
    steps = [f"`pypissh-migrate keys add {account.name} KEY.pub`"]
    if not token_file:
        steps.append(f"`pypissh-migrate accounts set-token {account.name} --token-file FILE`")
    click.echo("next: " + " and ".join(steps))


def _status(account) -> str:
    return "disabled" if account.disabled else ("exempt" if account.exempt else "active")


@accounts.command("list")
@pass_context
def list_(obj: Context) -> None:
    """List accounts with their key count and token state."""
    registry = obj.registry()
    keys_by_account: dict[int, int] = {}
    for key in registry.accounts.list_keys(include_revoked=False):
        keys_by_account[key.account_id] = keys_by_account.get(key.account_id, 0) + 1
    out = table(None, ["account", "email", "keys", "token", "status", "created"])
    for account in registry.accounts.list_accounts():
        out.add_row(account.name, account.email or "-", str(keys_by_account.get(account.id, 0)),
                    "stored" if account.has_token else "-", _status(account), when(account.created_at))
    print_table(out, whole=("account", "email"))


@accounts.command("show")
@click.argument("name")
@pass_context
def show(obj: Context, name: str) -> None:
    """Show account NAME: keys, token state, last use, projects uploaded through the gateway."""
    registry = obj.registry()
    try:
        account = registry.accounts.get_account(name)
    except RegistryError as exc:
        _fail(exc)
    activity = registry.events.account_activity(account.id)
    console.print(f"[bold]{account.name}[/bold]  email: {account.email or '-'}")
    console.print(f"status: {'disabled' if account.disabled else 'active'}"
                  + (", exempt from brownouts and sunset" if account.exempt else ""))
    console.print(f"token: {'stored ' + when(account.token_set_at) if account.has_token else 'none stored'}")
    console.print(f"last use: {when(activity['last_use'])}")
    if account.note:
        console.print(f"note: {account.note}", markup=False)
    keys_table = table("keys", ["fingerprint", "type", "comment", "added", "last used", "state"])
    for key in registry.accounts.list_keys(account.name):
        state = f"revoked {when(key.revoked_at)}" if key.revoked_at else ("weak" if key.weak else "active")
        keys_table.add_row(key.fingerprint, f"{key.algorithm} {key.bits or ''}".strip(), key.comment or "-",
                           when(key.created_at), when(key.last_used_at), state)
    print_table(keys_table)
    projects = table("projects uploaded through the gateway", ["project", "uploads", "last"])
    for project in activity["projects"]:
        projects.add_row(project["name"], str(project["uploads"]), when(project["last"]))
    print_table(projects, whole=("project",))


@accounts.command("update")
@click.argument("name")
@click.option("--email", help="New email address.")
@click.option("--exempt/--no-exempt", default=None, help="Exempt from brownouts and the sunset, or not.")
@click.option("--note", help="Free text for admins.")
@reason_option
@pass_context
def update(obj: Context, name: str, email: str | None, exempt: bool | None, note: str | None) -> None:
    """Change account NAME's email, exemption or note."""
    values = {k: v for k, v in {"email": email, "exempt": exempt, "note": note}.items() if v is not None}
    if not values:
        raise click.UsageError("nothing to change: give --email, --exempt/--no-exempt or --note")
    try:
        account = obj.registry().accounts.update_account(name, audit=obj.actor(), **values)
    except RegistryError as exc:
        _fail(exc)
    click.echo(f"account '{account.name}' updated: email {account.email or '-'}, "
               + ("exempt from brownouts and the sunset" if account.exempt else "not exempt"))


def _set_flag(obj: Context, name: str, **values) -> None:
    try:
        obj.registry().accounts.update_account(name, audit=obj.actor(), **values)
    except RegistryError as exc:
        _fail(exc)


@accounts.command("disable")
@click.argument("name")
@reason_option
@pass_context
def disable(obj: Context, name: str) -> None:
    """Refuse every key of account NAME from now on."""
    _set_flag(obj, name, disabled=True)
    click.echo(f"account '{name}' disabled; every replica refuses its keys within "
               f"{obj.settings().key_cache_seconds:.0f} s; `pypissh-migrate accounts enable {name}` undoes it")


@accounts.command("enable")
@click.argument("name")
@reason_option
@pass_context
def enable(obj: Context, name: str) -> None:
    """Accept account NAME's keys again."""
    _set_flag(obj, name, disabled=False)
    click.echo(f"account '{name}' enabled")


@accounts.command("set-token")
@click.argument("name")
@click.option("--token-file", type=click.File("r"), default="-", show_default=True,
              help=TOKEN_HELP + " Never pass a token as an argument.")
@click.option("--clear", is_flag=True, help="Forget the stored token.")
@token_argument_guard
@reason_option
@pass_context
def set_token(obj: Context, name: str, token_file, clear: bool) -> None:
    """Store account NAME's upstream API token, encrypted with the secret key."""
    registry = obj.registry()
    try:
        if clear:
            registry.accounts.set_token_ciphertext(name, None, audit=obj.actor())
            click.echo(f"token for '{name}' removed; uploads now need __token__ credentials from the client")
            return
        registry.accounts.get_account(name)
        token = read_token(token_file)
        registry.accounts.set_token_ciphertext(name, TokenBox.from_settings(obj.settings()).seal(token),
                                               audit=obj.actor())
    except (RegistryError, ConfigError) as exc:
        _fail(exc)
    click.echo(f"token stored for '{name}' (encrypted); uploads through the gateway use it from now on")
