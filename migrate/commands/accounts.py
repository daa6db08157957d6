"""`pypissh-migrate accounts`: the people behind the keys."""

from __future__ import annotations

import sys
from typing import IO, Any

import click

from gateway.cliutil import Context, pass_context, reason_option
from gateway.errors import ConfigError
from gateway.registry import Account, AdminInputError, KeyRecord
from gateway.tokens import TokenBox, check_token_shape
from migrate.output import TEXT_FORMATS, console, emit_csv, emit_json, format_option, print_table, table, when

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
def add(obj: Context, name: str, email: str | None, exempt: bool, note: str | None, token_file: IO[str] | None) -> None:
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
    except (AdminInputError, ConfigError) as exc:
        _fail(exc)
    click.echo(f"added account '{account.name}'" + (" (exempt)" if account.exempt else "")
               + (", token stored (encrypted)" if token_file else ""))
    steps = [f"`pypissh-migrate keys add {account.name} KEY.pub`"]
    if not token_file:
        steps.append(f"`pypissh-migrate accounts set-token {account.name} --token-file FILE`")
    click.echo("next: " + " and ".join(steps))


def _status(account: Account) -> str:
    return "disabled" if account.disabled else ("exempt" if account.exempt else "active")


ACCOUNT_COLUMNS = ["account", "email", "keys", "token", "status", "exempt", "disabled", "created"]


@accounts.command("list")
@format_option()
@pass_context
def list_(obj: Context, fmt: str) -> None:
    """List accounts with their key count and token state."""
    registry = obj.registry()
    keys_by_account: dict[int, int] = {}
    for key in registry.keys.list_keys(include_revoked=False):
        keys_by_account[key.account_id] = keys_by_account.get(key.account_id, 0) + 1
    rows = [{"account": a.name, "email": a.email, "keys": keys_by_account.get(a.id, 0),
             "token": "stored" if a.has_token else None, "status": _status(a), "exempt": a.exempt,
             "disabled": a.disabled, "created": a.created_at} for a in registry.accounts.list_accounts()]
    if fmt == "json":
        return emit_json(rows)
    if fmt == "csv":
        return emit_csv(ACCOUNT_COLUMNS, rows)
    out = table(None, ["account", "email", "keys", "token", "status", "created"])
    for row in rows:
        out.add_row(row["account"], row["email"] or "-", str(row["keys"]), row["token"] or "-", row["status"],
                    when(row["created"]))
    print_table(out, whole=("account", "email"))


@accounts.command("show")
@click.argument("name")
@format_option(TEXT_FORMATS)
@pass_context
def show(obj: Context, name: str, fmt: str) -> None:
    """Show account NAME: keys, token state, last use, projects uploaded through the gateway."""
    registry = obj.registry()
    try:
        account = registry.accounts.get_account(name)
    except AdminInputError as exc:
        _fail(exc)
    activity = registry.events.account_activity(account.id)
    if fmt == "json":
        return emit_json(_account_data(account, activity, registry.keys.list_keys(account.name)))
    console.print(f"[bold]{account.name}[/bold]  email: {account.email or '-'}")
    console.print(f"status: {'disabled' if account.disabled else 'active'}"
                  + (", exempt from brownouts and sunset" if account.exempt else ""))
    console.print(f"token: {'stored ' + when(account.token_set_at) if account.has_token else 'none stored'}")
    console.print(f"last use: {when(activity['last_use'])}")
    if account.note:
        console.print(f"note: {account.note}", markup=False)
    keys_table = table("keys", ["fingerprint", "type", "comment", "added", "last used", "state"])
    for key in registry.keys.list_keys(account.name):
        state = f"revoked {when(key.revoked_at)}" if key.revoked_at else ("weak" if key.weak else "active")
        keys_table.add_row(key.fingerprint, f"{key.algorithm} {key.bits or ''}".strip(), key.comment or "-",
                           when(key.created_at), when(key.last_used_at), state)
    print_table(keys_table)
    projects = table("projects uploaded through the gateway", ["project", "uploads", "last"])
    for project in activity["projects"]:
        projects.add_row(project["name"], str(project["uploads"]), when(project["last"]))
    print_table(projects, whole=("project",))


def _account_data(account: Account, activity: dict[str, Any], keys: list[KeyRecord]) -> dict[str, object]:
    """`accounts show --format json`: the account, its keys and its use (never the token)."""
    from migrate.commands.keys import key_data

    return {
        "account": account.name, "email": account.email, "status": _status(account), "exempt": account.exempt,
        "disabled": account.disabled, "token": "stored" if account.has_token else None,
        "token_set_at": account.token_set_at, "created": account.created_at, "note": account.note,
        "last_use": activity["last_use"],
        "keys": [key_data(key) for key in keys],
        "projects": [{"project": p["name"], "uploads": p["uploads"], "last": p["last"]}
                     for p in activity["projects"]],
    }


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
    except AdminInputError as exc:
        _fail(exc)
    click.echo(f"account '{account.name}' updated: email {account.email or '-'}, "
               + ("exempt from brownouts and the sunset" if account.exempt else "not exempt"))


def _set_flag(obj: Context, name: str, **values: bool) -> None:
    try:
        obj.registry().accounts.update_account(name, audit=obj.actor(), **values)
    except AdminInputError as exc:
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
def set_token(obj: Context, name: str, token_file: IO[str], clear: bool) -> None:
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
    except (AdminInputError, ConfigError) as exc:
        _fail(exc)
    click.echo(f"token stored for '{name}' (encrypted); uploads through the gateway use it from now on")
