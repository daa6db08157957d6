"""SIGHUP to `serve`, as operators know it from sshd and nginx: log_file is reopened by its name
(after a logrotate-style rename the lines go to the new file), the secret keys are read again,
each said in the log, and neither a single process nor a supervisor with its workers stops."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli import environment, prepare_home, program
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A gateway set up by `init`."""
    return prepare_home(tmp_path_factory.mktemp("hangup") / "home", [(("pypissh-gateway", "init"), "")])


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.fixture
def serve(prepared, tmp_path):
    """Start `serve` with a log_file (extra arguments after `serve`); stop it at the end."""
    started: list[subprocess.Popen] = []
    log = tmp_path / "gw.log"

    def _start(*args: str, ready: int = 1) -> subprocess.Popen:
        env = environment(PYPISSH_HOME=str(prepared), PYPISSH_LOG_FILE=str(log))
        proc = subprocess.Popen(program("pypissh-gateway", "serve", "--listen", "127.0.0.1:0", "--health-listen",
                                        "127.0.0.1:0", *args),
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(proc)
        wait_until(lambda: _text(log).count(" listening on ") >= ready or proc.poll() is not None,
                   what="serve to listen", timeout=60)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        return proc

    yield _start, log
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=60)


def _rotate_and_hang_up(proc: subprocess.Popen, log: Path, processes: int) -> tuple[str, str]:
    """mv gw.log gw.log.1, SIGHUP; wait until each process said so in the new file."""
    rotated = log.with_name(log.name + ".1")
    log.rename(rotated)
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: _text(log).count(f"SIGHUP: reopened log_file {log}") >= processes,
               what="the log to be reopened", timeout=30)
    return _text(rotated), _text(log)


def test_sighup_reopens_the_log_file_of_a_single_process(serve):
    """After a rename and SIGHUP the process keeps running, says what it did in the new file, and
    its later lines (the drain on SIGTERM) go there, not to the renamed file."""
    start, log = serve
    proc = start()
    old, new = _rotate_and_hang_up(proc, log, 1)
    assert "SIGHUP" not in old
    assert "SIGHUP: read 1 secret key(s) again from " in new
    assert proc.poll() is None
    proc.terminate()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "drained" in _text(log) and "drained" not in _text(log.with_name("gw.log.1"))
    assert b"Traceback" not in err


def test_sighup_to_a_supervisor_reaches_every_worker_and_stops_none(serve):
    """Under `--workers 2` SIGHUP neither stops the supervisor nor its workers; the supervisor and
    both workers reopen the log."""
    start, log = serve
    proc = start("--workers", "2", ready=2)
    _old, new = _rotate_and_hang_up(proc, log, 3)
    assert new.count("SIGHUP: read 1 secret key(s) again") == 2  # each worker; the supervisor holds no tokens
    assert proc.poll() is None
    assert "exited with" not in new and "restarting" not in new.lower()
    proc.terminate()
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
