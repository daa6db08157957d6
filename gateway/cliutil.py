"""What both command-line tools share: global options, the settings they build, the registry they
open (never create), confirmations of what cannot be undone, and one-line errors."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gateway import cli_texts
from gateway.errors import ConfigError
from gateway.settings import Loaded, Settings, load_all, mask_url

if TYPE_CHECKING:
    from gateway.registry import Registry

R = TypeVar("R")


def wall_clock() -> dt.datetime:
    """The current UTC time, the only clock of the commands: the admin journal's rows, prune's
    cut-offs and what is due are stamped with real time, and no option or variable changes it."""
    from gateway.registry import utcnow

    return utcnow()


class Context:
    def __init__(self, config: str | None, pairs: tuple[str, ...], home: str | None = None):
        self.config = config
        self.pairs = pairs
        self.home = home
        self._registry: Registry | None = None
        self._loaded: dict[Any, Loaded] = {}
        self._warned = False
        # Why the change is made (--reason), recorded with it in the admin journal.
        self.reason: str | None = None
        # Where warnings about the environment go: stderr, except where stderr is a user's terminal.
        self.warn: Callable[[str], None] = lambda line: click.echo(line, err=True)

    def now(self) -> dt.datetime:
        """The current UTC time for this command (`wall_clock`)."""
        return wall_clock()

    def overrides(self, **flags: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for pair in self.pairs:
            name, sep, value = pair.partition("=")
            if not sep:
                raise click.ClickException(cli_texts.settings_usage(pair))
            values[name.strip()] = value
        if self.home is not None:
            values["home"] = self.home
        values.update({k: v for k, v in flags.items() if v is not None})
        return values

    def loaded(self, *, strict: bool = True, **flags: Any) -> Loaded:
        """The settings with their sources; `strict=False` collects every problem instead of
        stopping at the first (for `check`)."""
        key = (strict, tuple(sorted((k, str(v)) for k, v in flags.items())))
        if key not in self._loaded:
            try:
                self._loaded[key] = load_all(self.config, overrides=self.overrides(**flags), strict=strict)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
            if not self._warned:
                self._warned = True
                for line in self._loaded[key].warnings:
                    self.warn(line)
        return self._loaded[key]

    def settings(self, **flags: Any) -> Settings:
        return self.loaded(**flags).settings

    def registry(self):
        """The registry: it must exist and have the current schema (only `db upgrade` and `init`
        create or migrate one)."""
        if self._registry is None:
            from gateway.registry import Registry

            settings = self.settings()
            require_registry(settings)
            self._registry = Registry.from_url(settings.database_url)
        return self._registry

    def close(self) -> None:
        """Close the registry's pooled database connections, if this command opened the registry.
        Without this every command left its connections for the garbage collector to find."""
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    def actor(self):
        """Who is making this command's changes, for the admin journal (gateway/registry/audit.py):
        the OS user of the effective uid (and the user sudo ran it for, when it did), the machine,
        the command, --reason, and the command's clock."""
        import os
        import pwd
        import socket

        from gateway.registry.audit import Actor

        uid = os.geteuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = f"uid {uid}"
        sudo = os.environ.get("SUDO_USER")  # set by sudo: whose command this was
        if sudo and sudo != user:
            user = f"{user} (sudo by {sudo})"
        ctx = click.get_current_context(silent=True)
        command = ctx.command_path if ctx is not None else "?"
        return Actor(user=user, host=socket.gethostname(), command=command, reason=self.reason, at=self.now())

    def global_args(self) -> list[str]:
        """The global options again, for a child process of ours (workers, OpenSSH's command=)."""
        import os

        args = ["--config", os.path.abspath(self.config)] if self.config else []
        if self.home is not None:
            args += ["--home", self.home]
        return args + [arg for pair in self.pairs for arg in ("--set", pair)]


pass_context = click.make_pass_decorator(Context)


def global_options(func: Callable[..., R]) -> Callable[..., R]:
    @click.option("--config", "config", metavar="PATH", envvar="PYPISSH_CONFIG",
                  help="TOML settings file (also PYPISSH_CONFIG). Relative paths in it resolve against its folder.")
    @click.option("--home", "home", metavar="DIR", type=click.Path(file_okay=False, resolve_path=True),
                  help="State directory (also PYPISSH_HOME; default ~/.local/share/pypissh-gateway): relative "
                       "paths from defaults, environment and flags resolve against it.")
    @click.option("--set", "pairs", metavar="NAME=VALUE", multiple=True,
                  help="Override one setting, e.g. --set database_url=postgresql://... (repeatable).")
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, config: str | None, home: str | None, pairs: tuple[str, ...],
                **kwargs: object) -> R:
        ctx.obj = Context(config, pairs, home)
        ctx.call_on_close(ctx.obj.close)  # after the subcommand, whether it succeeded or not
        return func(**kwargs)

    return wrapper


def database_name(settings: Settings) -> str:
    """The registry as a person may see it: its URL with any password masked."""
    return mask_url(settings.database_url) or ""


def database_error_detail(exc: Exception) -> str:
    """One line about a database error, without the driver's multi-line context."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (detail[0] if detail else type(exc).__name__)[:200]


def require_registry(settings: Settings) -> None:
    """Stop with one line unless the registry exists with the schema this version needs."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.registry.migrate_db import BEHIND, MISSING, UNKNOWN, head_revision, schema_state

    where = database_name(settings)
    try:
        state, revision = schema_state(settings.database_url)
    except SQLAlchemyError as exc:
        raise click.ClickException(cli_texts.registry_unreachable(where, database_error_detail(exc))) from None
    if state == MISSING:
        raise click.ClickException(cli_texts.registry_missing(where))
    if state == BEHIND:
        raise click.ClickException(cli_texts.registry_behind(where, revision, head_revision()))
    if state == UNKNOWN:
        raise click.ClickException(cli_texts.registry_unknown_revision(where, revision))


def confirm_irreversible(prompt: str, action: str, yes: bool) -> None:
    """Ask on a terminal; in a script (no terminal) only --yes lets it through."""
    if yes:
        return
    if sys.stdin.isatty():
        click.confirm(prompt, abort=True)
        return
    raise click.ClickException(cli_texts.needs_yes(action))


yes_option = click.option("--yes", is_flag=True, help="Do it without asking (for scripts).")


def _take_reason(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    from gateway.errors import one_line

    reason = one_line(value, 500)
    if not reason:
        raise click.BadParameter(cli_texts.reason_empty(), ctx=ctx, param_hint="--reason")
    obj = ctx.find_object(Context)
    if obj is not None:
        obj.reason = reason


reason_option = click.option(
    "--reason", metavar="TEXT", expose_value=False, callback=_take_reason,
    help="Why: recorded with the change in the admin journal (`pypissh-migrate audit`).")


def _take_late_pairs(ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> None:
    obj = ctx.find_object(Context)
    if value and obj is not None:
        obj.pairs = (*obj.pairs, *value)


def accept_set_after_commands(command: click.Command) -> None:
    """Let every command take `--set NAME=VALUE` after its name too (`serve --set listen=...`), as
    operators type it; it adds to the --set given before the command."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_set_after_commands(sub)
        return
    if any("--set" in param.opts for param in command.params):
        return
    command.params.append(click.Option(
        ["--set", "late_pairs"], metavar="NAME=VALUE", multiple=True, expose_value=False,
        callback=_take_late_pairs, help="Override one setting, as --set before the command does (repeatable)."))


def run(group: click.Group, prog_name: str) -> None:
    """Run a command-line tool: every error is one line on stderr, and a non-zero exit."""
    accept_set_after_commands(group)
    try:
        code = group.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else prog_name
        click.echo(f"Error: {cli_texts.usage_error(exc.format_message(), command)}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except PermissionError as exc:  # a state file of a gateway another user owns
        click.echo(f"Error: {permission_denied(exc, prog_name)}", err=True)
        sys.exit(1)
    except Exception as exc:  # a database failure mid-command (locked, gone): one line, not a traceback
        if not type(exc).__module__.startswith("sqlalchemy"):
            raise
        denied = _permission_cause(exc)
        if denied is not None:
            click.echo(f"Error: {permission_denied(denied, prog_name)}", err=True)
            sys.exit(1)
        click.echo(f"Error: {cli_texts.registry_failed(database_error_detail(exc))}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def permission_denied(exc: PermissionError, prog_name: str) -> str:
    """One line for a file this user may not open: its path, who owns it, the command again."""
    import shlex

    path = exc.filename or "a file of the gateway's home"
    command = shlex.join([prog_name, *sys.argv[1:]])
    return cli_texts.permission_denied(path, owner_of(path) if exc.filename else None, command)


def owner_of(path: str | os.PathLike[str]) -> str | None:
    """The user owning `path`, or its nearest folder this user can see (a folder it may not
    enter hides the files inside)."""
    import pwd
    from pathlib import Path

    for candidate in (Path(path), *Path(path).parents):
        try:
            uid = candidate.stat().st_uid
        except OSError:
            continue
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return f"uid {uid}"
    return None


def _permission_cause(exc: BaseException) -> PermissionError | None:
    """The PermissionError behind a wrapped error (SQLite cannot open a file in a closed folder)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PermissionError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def setup_logging(level: str, log_format: str = "text", log_file: str | None = None) -> None:
    """The log of a long-running command: `log_file` when set, else stderr; in `log_format`."""
    from gateway.ops import logformat

    try:
        logformat.configure(level, log_format, log_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
