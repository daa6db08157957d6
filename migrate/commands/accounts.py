"""`pypissh-migrate accounts`: the people behind the keys."""

from __future__ import annotations

import sys

import click

from gateway.cliutil import Context, pass_context
from gateway.errors import ConfigError
from gateway.registry import RegistryError
from gateway.tokens import TokenBox, check_token_shape
from migrate.output import console, table, when


@click.group()
def accounts() -> None:
    """Add, list, show, disable and enable accounts; store their upstream API token."""


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


@accounts.command("add")
@click.argument("name")
@click.option("--email", help="Where notices and campaign emails go.")
@click.option("--exempt", is_flag=True, help="Keep uploading through brownouts and after the sunset.")
@click.option("--note", help="Free text for admins.")
@pass_context
def add(obj: Context, name: str, email: str | None, exempt: bool, note: str | None) -> None:
    """Add account NAME (the user's name on the index)."""
    try:
        account = obj.registry().add_account(name, email=email, exempt=exempt, note=note)
    except RegistryError as exc:
        _fail(exc)
    click.echo(f"added account '{account.name}'" + (" (exempt)" if account.exempt else ""))
    click.echo(f"next: `pypissh-migrate keys add {account.name} KEY.pub` and "
               f"`pypissh-migrate accounts set-token {account.name} --token-file FILE`")


@accounts.command("list")
@pass_context
def list_(obj: Context) -> None:
    """List accounts with their key count and token state."""
    registry = obj.registry()
    keys_by_account: dict[int, int] = {}
    for key in registry.list_keys(include_revoked=False):
        keys_by_account[key.account_id] = keys_by_account.get(key.account_id, 0) + 1
    out = table(None, ["account", "email", "keys", "token", "status", "created"])
    for account in registry.list_accounts():
        status = "disabled" if account.disabled else ("exempt" if account.exempt else "active")
        out.add_row(account.name, account.email or "-", str(keys_by_account.get(account.id, 0)),
                    "stored" if account.has_token else "-", status, when(account.created_at))
    console.print(out)


@accounts.command("show")
@click.argument("name")
@pass_context
def show(obj: Context, name: str) -> None:
    """Show account NAME: keys, token state, last use, projects uploaded through the gateway."""
    registry = obj.registry()
    try:
        account = registry.get_account(name)
    except RegistryError as exc:
        _fail(exc)
    activity = registry.account_activity(account.id)
    console.print(f"[bold]{account.name}[/bold]  email: {account.email or '-'}")
    console.print(f"status: {'disabled' if account.disabled else 'active'}"
                  + (", exempt from brownouts and sunset" if account.exempt else ""))
    console.print(f"token: {'stored ' + when(account.token_set_at) if account.has_token else 'none stored'}")
    console.print(f"last use: {when(activity['last_use'])}")
    keys_table = table("keys", ["fingerprint", "type", "comment", "added", "last used", "state"])
    for key in registry.list_keys(name):
        state = f"revoked {when(key.revoked_at)}" if key.revoked_at else ("weak" if key.weak else "active")
        keys_table.add_row(key.fingerprint, f"{key.algorithm} {key.bits or ''}".strip(), key.comment or "-",
                           when(key.created_at), when(key.last_used_at), state)
    console.print(keys_table)
    projects = table("projects uploaded through the gateway", ["project", "uploads", "last"])
    for project in activity["projects"]:
        projects.add_row(project["name"], str(project["uploads"]), when(project["last"]))
    console.print(projects)


def _set_flag(obj: Context, name: str, **values) -> None:
    try:
        obj.registry().update_account(name, **values)
    except RegistryError as exc:
        _fail(exc)


@accounts.command("disable")
@click.argument("name")
@pass_context
def disable(obj: Context, name: str) -> None:
    """Refuse every key of account NAME from now on."""
    _set_flag(obj, name, disabled=True)
    click.echo(f"account '{name}' disabled; its keys are refused within a few seconds on every replica")


@accounts.command("enable")
@click.argument("name")
@pass_context
def enable(obj: Context, name: str) -> None:
    """Accept account NAME's keys again."""
    _set_flag(obj, name, disabled=False)
    click.echo(f"account '{name}' enabled")


@accounts.command("set-token")
@click.argument("name")
@click.option("--token-file", type=click.File("r"), default="-", show_default=True,
              help="File holding the API token; '-' reads standard input. Never pass a token as an argument.")
@click.option("--clear", is_flag=True, help="Forget the stored token.")
@pass_context
def set_token(obj: Context, name: str, token_file, clear: bool) -> None:
    """Store account NAME's upstream API token, encrypted."""
    registry = obj.registry()
    try:
        if clear:
            registry.set_token_ciphertext(name, None)
            click.echo(f"token for '{name}' removed")
            return
        if token_file.name == "<stdin>" and sys.stdin.isatty():
            click.echo("paste the token, then press Enter:", err=True)
        token = check_token_shape(token_file.readline())
        box = TokenBox.from_settings(obj.settings(), create=True)
        registry.set_token_ciphertext(name, box.seal(token))
    except (RegistryError, ConfigError) as exc:
        _fail(exc)
    click.echo(f"token stored for '{name}' (encrypted); uploads through the gateway use it from now on")
