"""The README says what the commands do: its quick start runs as written, and every command and
option of its commands table exists (`--help` of each). A renamed command or option, or a quick
start that stopped working, fails here rather than on an operator's first day.

The install recipe is run by tests/test_distribution.py (the wheel, the constraints).
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from testbed import SOURCE_ROOT
from tests.cli import environment, run_cli

README = (SOURCE_ROOT / "README.md").read_text()
TOKEN = "pypi-AgEIcHlwaS5vcmcCJHJlYWRtZS1xdWljay1zdGFydC10b2tlbg"


def _block_after(heading: str) -> list[str]:
    """The command lines of the first ```sh block after `heading`, comments removed."""
    after = README.split(heading, 1)[1]
    block = after.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _table_rows(heading: str) -> list[str]:
    """The first cells of the markdown table after `heading`."""
    after = README.split(heading, 1)[1]
    rows = re.findall(r"^\| (.+?) \|", after.split("\n\n", 2)[1], re.MULTILINE)
    return [row for row in rows if row not in ("command", "---")]


def _commands_of(cell: str) -> list[tuple[list[str], list[str]]]:
    """(argv of the command, its options shown) for every command a table cell names:
    `pypissh-migrate accounts add/list` is two, `a`, `b ...` continue the program before them."""
    found = []
    program = None
    for shown in re.findall(r"`([^`]+)`", cell):
        words = shown.split()
        if words[0] in ("pypissh-gateway", "pypissh-migrate"):
            program, words = words[0], words[1:]
        assert program is not None, cell
        names = []
        for word in words:
            if word.startswith(("-", "[")) or word.isupper() or word == "...":
                break
            names.append(word)
        options = re.findall(r"(--[a-z-]+)", shown)
        *group, last = names
        for name in last.split("/"):
            found.append(([program, *group, name], options))
    return found


COMMANDS = [command for row in _table_rows("### Commands") for command in _commands_of(row)]


def test_the_commands_table_names_both_programs_and_many_commands():
    """The parser found the table: both programs and over 25 commands."""
    assert {argv[0] for argv, _ in COMMANDS} == {"pypissh-gateway", "pypissh-migrate"}
    assert len(COMMANDS) > 25


@pytest.mark.parametrize("argv,options", COMMANDS, ids=[" ".join(argv[1:]) for argv, _ in COMMANDS])
def test_every_command_of_the_table_exists_with_the_options_shown(argv, options, tmp_path):
    """`--help` of the command succeeds and lists every option the table shows for it."""
    done = run_cli(*argv, "--help", env=environment(PYPISSH_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    for option in options:
        assert option in done.stdout, (argv, option)


def test_the_quick_start_runs_as_written(tmp_path, upstream):
    """`## Running it`: every line but `serve` (which runs until stopped) succeeds as written, in a
    fresh home, with the user's key and token files where the lines name them; `check` finds
    nothing to fix (the testbed's TLS upload server standing in for the index)."""
    lines = _block_after("## Running it")
    assert lines[0] == "pypissh-gateway init" and lines[-1] == "pypissh-gateway serve"
    user = tmp_path / "alice"
    (user / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(user / ".ssh" / "id_ed25519")],
                   check=True)
    work = tmp_path / "work"
    work.mkdir()
    (work / "token.txt").write_text(TOKEN + "\n")
    env = environment(PYPISSH_HOME=str(tmp_path / "home"), PYPISSH_UPSTREAM_URL=upstream.url,
                      PYPISSH_UPSTREAM_CA_BUNDLE=str(upstream.ca_file))
    for line in lines[:-1]:
        argv = [word.replace("~alice", str(user)) for word in shlex.split(line)]
        done = run_cli(*argv, env=env, cwd=work)
        assert done.returncode == 0, (line, done.stdout + done.stderr)
        assert "Traceback" not in done.stderr
    checked = run_cli("pypissh-gateway", "check", env=env, cwd=work).stdout.splitlines()
    assert checked and all(line.startswith("[ok] ") for line in checked), checked
