"""SIGHUP to `serve`, as operators know it from sshd and nginx: log_file is reopened by its name
(after a logrotate-style rename the lines go to the new file), the secret keys are read again,
each said in the log, and neither a single process nor a supervisor with its workers stops."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli import copy_home, environment, prepare_home, program, run_cli
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A gateway set up by `init`."""
    return prepare_home(tmp_path_factory.mktemp("hangup") / "home", [(("pypissh-gateway", "init"), "")])


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.fixture
def serve(prepared, tmp_path):
    """Start `serve` on this test's copy of the prepared home, with a log_file (extra arguments
    after `serve`); stop it at the end. Yields the starter, the log and the home."""
    started: list[subprocess.Popen] = []
    log = tmp_path / "gw.log"
    home = copy_home(prepared, tmp_path)

    def _start(*args: str, ready: int = 1) -> subprocess.Popen:
        env = environment(PYPISSH_HOME=str(home), PYPISSH_LOG_FILE=str(log))
        proc = subprocess.Popen(program("pypissh-gateway", "serve", "--listen", "127.0.0.1:0", "--health-listen",
                                        "127.0.0.1:0", *args),
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append(proc)
        wait_until(lambda: _text(log).count(" listening on ") >= ready or proc.poll() is not None,
                   what="serve to listen", timeout=60)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        return proc

    yield _start, log, home
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
    start, log, _home = serve
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
    start, log, _home = serve
    proc = start("--workers", "2", ready=2)
    _old, new = _rotate_and_hang_up(proc, log, 3)
    assert new.count("SIGHUP: read 1 secret key(s) again") == 2  # each worker; the supervisor holds no tokens
    assert proc.poll() is None
    assert "exited with" not in new and "restarting" not in new.lower()
    proc.terminate()
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err


def test_sighup_during_an_upload_lets_it_finish(tmp_path, upstream, host_key_dir, user_keys, project_name):
    """SIGHUP while the upload server holds an upload: the upload still gets its 200 and is
    published, and the replica goes on serving."""
    from tests.helpers import serve_process, start_held_upload

    log = tmp_path / "gw.log"
    process = serve_process(tmp_path, upstream, host_key_dir, {"alice": user_keys["alice"]}, log_file=str(log))
    uploading = None
    try:
        uploading, _content = start_held_upload(process, user_keys["alice"], upstream, project_name, tmp_path,
                                                hold=3)
        log.rename(tmp_path / "gw.log.1")
        process.process.send_signal(signal.SIGHUP)
        out, _err = uploading.communicate(timeout=60)
        assert out.startswith(b"HTTP/1.0 200 "), out[:200]
        wait_until(lambda: "SIGHUP: reopened log_file" in _text(log), what="the reopened log")
        assert process.process.poll() is None
        assert project_name.lower().replace("-", "_") + "-1.0.tar.gz" in upstream.files()
        wait_until(lambda: "connection closed" in _text(log),  # the upload's own line, after the SIGHUP
                   what="the upload's line in the reopened log")
    finally:
        if uploading is not None and uploading.poll() is None:
            uploading.kill()
            uploading.communicate()
        process.stop()


def _served_host_key(port: int) -> str:
    """The ed25519 host key the gateway on `port` shows a new connection (ssh-keyscan)."""
    done = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(port), "127.0.0.1"], capture_output=True,
                          text=True, timeout=30)
    (line,) = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    return line.split()[2]


def test_sighup_serves_the_promoted_host_keys_to_new_connections(serve):
    """`keygen --next`, `keygen --promote`, SIGHUP: a new connection gets the promoted key, without
    a restart, and the log says which keys are served."""
    start, log, home = serve
    from testbed import free_port

    port = free_port()
    proc = start("--listen", f"127.0.0.1:{port}")  # the later --listen wins
    before = _served_host_key(port)
    env = environment(PYPISSH_HOME=str(home))
    for step in ("--next", "--promote"):
        done = run_cli("pypissh-gateway", "keygen", step, env=env)
        assert done.returncode == 0, done.stderr
    promoted = (home / "keys" / "ssh_host_ed25519_key.pub").read_text().split()[1]
    assert promoted != before
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: read the host keys again" in _text(log), what="the host keys read again")
    assert _served_host_key(port) == promoted
    assert proc.poll() is None
