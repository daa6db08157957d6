"""Running `pypissh-migrate` at a time of the test's choosing, so that nothing a test checks
depends on the date or the time of day it runs at.

The shipped commands have no way to set their time: every command reads `gateway.cliutil.
wall_clock`. The testbed replaces that function for the length of one run, in process or in a
process of its own, the way faketime replaces the system's clock:

    result = invoke_at("2027-03-01 10:00", cli, ["--set", ..., "prune", "--before", "400d", "--yes"])
    subprocess.run([*command_at(when), "--set", ..., "notify", ...], cwd=SOURCE_ROOT)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from typing import Any, Iterator, Sequence

from gateway import cliutil
from migrate.schedule_input import parse_utc


def as_time(when: str | dt.datetime) -> dt.datetime:
    """`when` as an aware UTC time: a datetime, or text as the admin tools read it."""
    if isinstance(when, dt.datetime):
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    return parse_utc(when, dt.datetime.now(dt.timezone.utc))


@contextlib.contextmanager
def pinned(when: str | dt.datetime) -> Iterator[dt.datetime]:
    """Within the block, the commands' clock answers `when`."""
    fixed = as_time(when)
    real = cliutil.wall_clock
    cliutil.wall_clock = lambda: fixed
    try:
        yield fixed
    finally:
        cliutil.wall_clock = real


def invoke_at(when: str | dt.datetime, command: Any, args: Sequence[str], **kwargs: Any):
    """click's CliRunner().invoke(command, args, **kwargs) with the clock pinned to `when`."""
    from click.testing import CliRunner

    with pinned(when):
        return CliRunner().invoke(command, list(args), **kwargs)


def command_at(when: str | dt.datetime) -> list[str]:
    """The argv prefix that runs `pypissh-migrate` in a process of its own at `when` (run it with
    the source tree as the current directory, or on PYTHONPATH)."""
    return [sys.executable, "-m", "testbed.clock", as_time(when).isoformat()]


def main(argv: Sequence[str]) -> None:
    when, *args = argv
    from migrate.cli import main as migrate_main

    sys.argv = ["pypissh-migrate", *args]
    with pinned(when):
        migrate_main()


if __name__ == "__main__":
    main(sys.argv[1:])
