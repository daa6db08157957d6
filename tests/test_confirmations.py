"""Commands that cannot be taken back ask on a terminal and take --yes in scripts: `keygen --force`
over existing keys (the old ones kept beside them), `schedule pause`, a sunset moved earlier,
`rotate-secret --retire-old`. Without a terminal and without --yes they refuse and change nothing.

The real console scripts run in processes of their own; "a terminal" is a pseudo-terminal.
"""

from __future__ import annotations

import datetime as dt
import os
import pty
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from gateway.ssh import hostkeys
from tests.cli import copy_home, environment, home_registry, prepare_home, program

TOKEN = "pypi-AgEIcHlwaS5vcmcCJGNvbmZpcm0tdGVzdC10b2tlbg"
UTC = dt.timezone.utc


def utc_day(days: int) -> str:
    when = dt.datetime.now(UTC).replace(hour=14, minute=0, second=0, microsecond=0) + dt.timedelta(days=days)
    return when.strftime("%Y-%m-%d %H:%M")


def home_environment(home: Path) -> dict[str, str]:
    return environment(PYPISSH_HOME=str(home))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A gateway after `init`, with a token stored, a sunset in 60 days, and a secret key rotation
    at step 2 (two keys in the file)."""
    home = tmp_path_factory.mktemp("confirm") / "home"
    return prepare_home(home, [(("pypissh-gateway", "init"), ""), (("pypissh-migrate", "accounts", "add", "alice"), ""),
                               (("pypissh-migrate", "accounts", "set-token", "alice"), TOKEN + "\n"),
                               (("pypissh-migrate", "schedule", "set-sunset", utc_day(60)), ""),
                               (("pypissh-migrate", "rotate-secret", "--new-key-file", str(home / "new.key")), "")])


@pytest.fixture
def home(prepared, tmp_path) -> Path:
    return copy_home(prepared, tmp_path)


def _paused(home: Path) -> bool:
    registry = home_registry(home)
    try:
        return registry.schedule.current().pause is not None
    finally:
        registry.close()


def _sunset(home: Path) -> str:
    registry = home_registry(home)
    try:
        return registry.schedule.current().sunset.strftime("%Y-%m-%d %H:%M")
    finally:
        registry.close()


@dataclass(frozen=True)
class Irreversible:
    argv: tuple[str, ...]
    state: Callable[[Path], object]  # what the command changes
    action: str  # as the refusal names it


IRREVERSIBLE = {
    "keygen-force": Irreversible(("pypissh-gateway", "keygen", "--force"),
                                 lambda home: (home / "keys" / "ssh_host_ed25519_key").read_bytes(),
                                 "replacing the host keys"),
    "schedule-pause": Irreversible(("pypissh-migrate", "schedule", "pause"), _paused, "pausing every upload"),
    "sunset-earlier": Irreversible(("pypissh-migrate", "schedule", "set-sunset", utc_day(30)), _sunset,
                                   "moving the sunset earlier"),
    "retire-old-keys": Irreversible(("pypissh-migrate", "rotate-secret", "--retire-old"),
                                    lambda home: (home / "secret.key").read_text(), "dropping the old secret keys"),
}


def on_terminal(argv: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run `argv` on a pseudo-terminal, answer its question with `answer`, and return the exit
    status and everything it wrote."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True)
    os.close(terminal)
    output = b""
    answered = False
    deadline = time.monotonic() + 60  # bounds a failure only
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"[y/N]:" in output:
            os.write(controller, answer.encode() + b"\n")
            answered = True
    os.close(controller)
    return process.wait(30), output.decode(errors="replace")


@pytest.mark.parametrize("name", list(IRREVERSIBLE))
def test_in_a_script_without_yes_it_refuses_and_changes_nothing(name, home):
    """No terminal, no --yes: one line asking for --yes, exit 1, nothing changed."""
    case = IRREVERSIBLE[name]
    before = case.state(home)
    done = subprocess.run(program(*case.argv), env=home_environment(home), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (f"Error: {case.action} needs a confirmation: run the command on a "
                                            "terminal to answer, or add --yes in a script")
    assert case.state(home) == before


@pytest.mark.parametrize("name", list(IRREVERSIBLE))
def test_in_a_script_yes_does_it(name, home):
    """--yes: done without a question."""
    case = IRREVERSIBLE[name]
    before = case.state(home)
    done = subprocess.run(program(*case.argv, "--yes"), env=home_environment(home), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert case.state(home) != before


@pytest.mark.parametrize("name", list(IRREVERSIBLE))
def test_on_a_terminal_it_asks_and_no_means_no(name, home):
    """On a terminal the question comes; answering no aborts with nothing changed, yes does it."""
    case = IRREVERSIBLE[name]
    before = case.state(home)
    code, output = on_terminal(program(*case.argv), home_environment(home), "n")
    assert code == 1 and "[y/N]:" in output and "Aborted!" in output
    assert case.state(home) == before
    code, output = on_terminal(program(*case.argv), home_environment(home), "y")
    assert code == 0, output
    assert case.state(home) != before


def test_replaced_host_keys_are_kept_beside_the_new_ones(home):
    """keygen --force --yes keeps the old keys as *.replaced-<UTC time> (not served) and writes new ones."""
    folder = home / "keys"
    old = {name: (folder / name).read_bytes() for name in hostkeys.PRIMARY}
    done = subprocess.run(program("pypissh-gateway", "keygen", "--force", "--yes"), env=home_environment(home),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name, content in old.items():
        (backup,) = folder.glob(f"{name}.replaced-*Z")
        assert backup.read_bytes() == content and (folder / name).read_bytes() != content
        assert f"kept the old key {folder / name} as {backup}" in done.stdout
        assert (folder / f"{name}.pub.replaced-{backup.name.rsplit('-', 1)[1]}").exists()
    assert len(hostkeys.load(folder)) == 2  # only the new keys are served
