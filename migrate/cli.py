"""`pypissh-migrate`: administer accounts and keys, and retire the SSH upload path."""

from __future__ import annotations

import click

from gateway.cliutil import global_options, run
from migrate.commands import accounts, keys
from migrate.commands import guide, import_legacy, scan, secret
from migrate.commands import report
from migrate.commands.notify import notify
from migrate.commands.schedule import schedule


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pypissh-gateway")
@global_options
def cli() -> None:
    """Administer the SSH gateway's accounts and keys and run its retirement.

    Settings come from flags, PYPISSH_<NAME> environment variables, the TOML file and built-in
    defaults, in that order.
    """


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
