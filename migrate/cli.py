"""`pypissh-migrate`: administer accounts and keys, and retire the SSH upload path."""

from __future__ import annotations

import click

from gateway.cliutil import global_options
from migrate.commands import accounts, keys


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


def main() -> None:
    cli(prog_name="pypissh-migrate")


if __name__ == "__main__":
    main()
