"""No Python warning reaches a user's terminal as raw text: the commands send warnings to the log
at debug level (gateway/warnings_to_log.py), while in this suite every warning is an error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli import environment, run_cli

# A library that warns when it is imported, as asyncssh does under cryptography 51 ("DSA is
# deprecated"): for one command, `sitecustomize` makes the first import of click warn.
NOISY_IMPORT = """
import sys, warnings

class WarnOnImport:
    def find_spec(self, name, path, target=None):
        if name == "click":
            warnings.warn("click is deprecated on this machine", UserWarning)
        return None  # the usual finders import it

sys.meta_path.insert(0, WarnOnImport())
"""


@pytest.fixture
def noisy_environment(tmp_path):
    """The commands' environment with a library import that warns (see NOISY_IMPORT)."""
    (tmp_path / "sitecustomize.py").write_text(NOISY_IMPORT)
    return environment(PYTHONPATH=str(tmp_path), PYPISSH_HOME=str(tmp_path / "home"))


@pytest.mark.parametrize("argv", [("pypissh-gateway", "--version"), ("pypissh-migrate", "--version"),
                                  ("pypissh-gateway", "check", "--help"), ("pypissh-migrate", "report", "--help")])
def test_commands_print_no_library_warning(argv):
    """With the locked libraries (asyncssh imports DSA support that cryptography deprecates), a
    command's stderr is empty and its stdout is only its answer."""
    done = run_cli(*argv, env=environment())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "Warning" not in done.stdout


def test_warning_becomes_a_debug_log_line(tmp_path):
    """Routed warnings are debug lines of the `py.warnings` logger, once per place, never stderr text."""
    code = ("import logging, warnings\n"
            "from gateway.warnings_to_log import send_warnings_to_log\n"
            "send_warnings_to_log()\n"
            "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(levelname)s %(message)s')\n"
            "for _ in range(3):\n"
            "    warnings.warn('old API', DeprecationWarning, stacklevel=1)\n")
    script = tmp_path / "warns.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, "-W", "default", str(script)], capture_output=True, text=True,
                          env=environment(), timeout=60)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("py.warnings DEBUG ") and lines[0].endswith("DeprecationWarning: old API")


def test_a_library_warning_stays_off_the_terminal(noisy_environment):
    """A library that warns as it is imported leaves `--version`'s output clean; the same
    interpreter without our entry point does print the warning (the test's own control)."""
    control = subprocess.run([sys.executable, "-c", "import click"], capture_output=True, text=True,
                             env=noisy_environment, timeout=60)
    assert "click is deprecated on this machine" in control.stderr
    for name in ("pypissh-gateway", "pypissh-migrate"):
        done = run_cli(name, "--version", env=noisy_environment)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr
