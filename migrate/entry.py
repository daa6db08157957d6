"""The `pypissh-migrate` program: warnings routed to the log first, then the click CLI."""

from __future__ import annotations


def main() -> None:
    from gateway.warnings_to_log import send_warnings_to_log

    send_warnings_to_log()  # before migrate.cli imports the libraries that warn
    from migrate.cli import main as cli_main

    cli_main()
