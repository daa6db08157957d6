"""The time-sensitive test modules pass at any hour of any day: each run below is a pytest process
whose wall clock Debian's `faketime` (libfaketime) sets to a given UTC time, some of them in a
local time zone far from UTC.

Only modules that start no servers run here: libfaketime reaches every child process. The
monotonic clock stays real (FAKETIME_DONT_FAKE_MONOTONIC=1): timed waits in threads and event
loops count on it, and faking it makes them hang.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FAKETIME = shutil.which("faketime")

# The modules whose code under test reads the wall clock: the admin commands (schedule, notify,
# report) and the notices. tests/test_schedule.py is left out: every function it covers takes
# `now` as an argument, so the clock never reaches it (and its property tests are the slowest to
# load).
MODULES = (
    "tests/test_schedule_cli.py",
    "tests/test_notices.py",
    "tests/test_report.py",
    "tests/test_notify.py",
)
# Left out, none of them about dates: the PostgreSQL variants (the same logic as SQLite, slower),
# the concurrent-sender race and the TLS mail transports. The killed-run test and the report into
# a pipe wait on a child with a timeout (Popen.wait, subprocess.run), whose time.sleep()
# libfaketime 0.9.10 breaks (EINVAL from clock_nanosleep) when the monotonic clock is not faked.
NOT_ABOUT_TIME = ("not postgresql and not two_runs_at_once and not secure_transports and not killed_run "
                  "and not into_a_pipe")

TODAY = dt.datetime.now(dt.timezone.utc).date().isoformat()


@dataclass(frozen=True)
class Moment:
    when: str  # UTC
    zone: str = "UTC"  # the process's local time zone

    @property
    def label(self) -> str:
        return f"{self.when} UTC as {self.zone}"


MOMENTS = (
    Moment(f"{TODAY} 00:30:00"),
    Moment(f"{TODAY} 06:00:00", "America/Anchorage"),
    Moment(f"{TODAY} 13:59:00"),
    Moment(f"{TODAY} 14:01:00", "Pacific/Kiritimati"),
    Moment(f"{TODAY} 23:59:00"),
    Moment("2027-12-31 23:59:00"),  # the last minute of a month and of a year
)


def _run_at(moment: Moment, basetemp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TZ=moment.zone, FAKETIME_DONT_FAKE_MONOTONIC="1")
    command = [
        FAKETIME, f"{moment.when} UTC", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-p", "no:hypothesispytest", f"--basetemp={basetemp}", "-k", NOT_ABOUT_TIME, *MODULES,
    ]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=280)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[Moment, subprocess.CompletedProcess]:
    if FAKETIME is None:
        pytest.skip("Debian's faketime is not installed (./dev test installs it)")
    folder = tmp_path_factory.mktemp("faketime")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {moment: pool.submit(_run_at, moment, folder / f"run{number}")
                   for number, moment in enumerate(MOMENTS)}
        return {moment: future.result() for moment, future in futures.items()}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: f"{m.when[11:16]}-{m.when[:10]}-{m.zone.split('/')[-1]}")
def test_time_sensitive_modules_pass_at(runs, moment):
    """The schedule CLI, notice, report and notify tests pass with the clock at this UTC time."""
    result = runs[moment]
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    assert result.returncode == 0, f"at {moment.label}:\n{tail}"
    assert " passed" in result.stdout and " failed" not in result.stdout, tail


def test_the_clock_really_is_set():
    """faketime sets the clock the modules see: the same command prints the faked UTC time."""
    if FAKETIME is None:
        pytest.skip("Debian's faketime is not installed (./dev test installs it)")
    env = dict(os.environ, TZ="Pacific/Kiritimati", FAKETIME_DONT_FAKE_MONOTONIC="1")
    code = "import datetime as d; print(d.datetime.now(d.timezone.utc).strftime('%Y-%m-%d %H:%M'))"
    shown = subprocess.run([FAKETIME, "2027-12-31 23:59:00 UTC", sys.executable, "-c", code], env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert shown == "2027-12-31 23:59"
