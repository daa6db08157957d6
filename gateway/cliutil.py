"""What both command-line tools share: global options and the settings they build."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sys
from typing import Callable

import click

from gateway.errors import ConfigError
from gateway.settings import Settings, load


class Context:
    def __init__(self, config: str | None, pairs: tuple[str, ...]):
        self.config = config
        self.pairs = pairs
        self._registry = None
        self._clock: Callable[[], dt.datetime] | None = None

    def now(self) -> dt.datetime:
        """The current UTC time for this command: the real clock unless one was fixed."""
        if self._clock is None:
            from gateway.registry import utcnow

            return utcnow()
        return self._clock()

    def fix_clock(self, when: dt.datetime) -> None:
        """Make `now()` answer `when` for the rest of this command (tests pin the date this way)."""
        self._clock = lambda: when

    def settings(self, **flags) -> Settings:
        overrides = {}
        for pair in self.pairs:
            name, sep, value = pair.partition("=")
            if not sep:
                raise click.UsageError(f"--set takes NAME=VALUE, not '{pair}'")
            overrides[name.strip()] = value
        overrides.update({k: v for k, v in flags.items() if v is not None})
        try:
            return load(self.config, overrides=overrides)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    def registry(self):
        """The registry, its schema brought up to date first when it is the embedded SQLite."""
        if self._registry is None:
            from gateway.registry import Registry

            from sqlalchemy.exc import OperationalError

            settings = self.settings()
            try:
                ensure_schema(settings)
            except OperationalError as exc:
                where = settings.database_url.rsplit("@", 1)[-1]
                raise click.ClickException(
                    f"cannot open the database {where}: {str(exc.orig).strip()[:200]}; check database_url"
                ) from None
            self._registry = Registry.from_url(settings.database_url)
        return self._registry


pass_context = click.make_pass_decorator(Context)


def global_options(func):
    @click.option("--config", "config", metavar="PATH", envvar="PYPISSH_CONFIG",
                  help="TOML settings file (also PYPISSH_CONFIG).")
    @click.option("--set", "pairs", metavar="NAME=VALUE", multiple=True,
                  help="Override one setting, e.g. --set database_url=postgresql://... (repeatable).")
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, config: str | None, pairs: tuple[str, ...], **kwargs):
        ctx.obj = Context(config, pairs)
        return func(**kwargs)

    return wrapper


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def ensure_schema(settings: Settings) -> None:
    from gateway.registry.migrate_db import is_current, upgrade

    if is_current(settings.database_url):
        return
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)  # the embedded default sets itself up
        return
    raise click.ClickException("the database schema is not current; run `pypissh-gateway db upgrade` first")


def setup_syslog(level: str) -> None:
    """Logging for a process whose stderr is a user's terminal (OpenSSH's stdio mode): to syslog
    when the machine has one, else nowhere."""
    import logging.handlers

    root = logging.getLogger()
    root.setLevel(level.upper())
    handler: logging.Handler = logging.NullHandler()
    try:
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter("pypissh-gateway[%(process)d]: %(levelname)s %(name)s: %(message)s"))
    except OSError:
        pass
    root.addHandler(handler)
