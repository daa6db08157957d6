"""`pypissh-migrate`: administer accounts and keys, and retire the SSH upload path."""

from __future__ import annotations

import click

from gateway.cliutil import global_options, run
from gateway.lifecycle.schedule import ScheduleError, parse_utc
from migrate.commands import accounts, keys
from migrate.commands import guide, import_legacy, scan, secret
from migrate.commands import report
from migrate.commands.notify import notify
from migrate.commands.schedule import schedule


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pypissh-gateway")
@global_options
# Hidden: the test suite pins "now" with it so that nothing it checks depends on the date or the
# time of day it runs at. Admins rehearse dates with `schedule show --at` instead.
@click.option("--now", "fixed_now", metavar="TIME", hidden=True, help="Treat TIME (UTC) as the current time.")
def cli(fixed_now: str | None) -> None:
    """Administer the SSH gateway's accounts and keys and run its retirement.

    Settings come from flags, PYPISSH_<NAME> environment variables, the TOML file and built-in
    defaults, in that order.
    """
    if fixed_now is not None:
        obj = click.get_current_context().obj
        try:
            obj.fix_clock(parse_utc(fixed_now, obj.now()))
        except ScheduleError as exc:
            raise click.BadParameter(str(exc), param_hint="--now") from None


cli.add_command(accounts.accounts)
cli.add_command(keys.keys)
cli.add_command(schedule)
cli.add_command(notify)
cli.add_command(import_legacy.import_legacy)
cli.add_command(secret.rotate_secret)
cli.add_command(guide.guide)
cli.add_command(scan.scan)
cli.add_command(report.report)


def main() -> None:
    run(cli, "pypissh-migrate")


if __name__ == "__main__":
    main()
