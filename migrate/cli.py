"""`pypissh-migrate`: administer accounts and keys, and retire the SSH upload path."""

from __future__ import annotations

import click

from gateway import cli_texts
from gateway.cliutil import global_options, run
from gateway.errors import one_line
from migrate.commands import accounts, audit, evidence, guide, import_legacy, keys, prune, report, scan, secret
from migrate.commands.notify import notify
from migrate.commands.schedule import schedule


@click.group("pypissh-migrate", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pypissh-gateway")
@global_options
# No option sets the time: the journal and prune use the real clock (admins rehearse dates with
# `schedule show --at`); the test suite pins it from outside, through testbed/clock.py.
@click.option("--reason", metavar="TEXT",
              help="Why: recorded with every change this command makes in the admin journal (also an option "
                   "of each command that changes something).")
def cli(reason: str | None) -> None:
    """Administer the SSH gateway's accounts and keys and run its retirement.

    Settings come from flags, PYPISSH_<NAME> environment variables, the TOML file and built-in
    defaults, in that order. Every change is recorded in the admin journal (`audit`) with the OS
    user who made it and the --reason given.
    """
    obj = click.get_current_context().obj
    if reason is not None:
        obj.reason = one_line(reason, 500) or None
        if obj.reason is None:
            raise click.BadParameter(cli_texts.reason_empty(), param_hint="--reason")


cli.add_command(accounts.accounts)
cli.add_command(keys.keys)
cli.add_command(schedule)
cli.add_command(notify)
cli.add_command(import_legacy.import_legacy)
cli.add_command(secret.rotate_secret)
cli.add_command(guide.guide)
cli.add_command(scan.scan)
cli.add_command(report.report)
cli.add_command(evidence.evidence)
cli.add_command(audit.audit)
cli.add_command(prune.prune)


def main() -> None:
    run(cli, "pypissh-migrate")


if __name__ == "__main__":
    main()
