"""`authorized_keys_file`: the replica keeps a file of authorized_keys lines for sshd to grep, each
running the shim as a file (gateway/ssh/keyfile.py). The sshd end to end runs are in
tests/test_openssh_mode.py (parameter "key-file")."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway.registry import Registry
from gateway.settings import Settings, problems
from gateway.ssh import shim
from gateway.ssh.keyfile import HEADER, SHIMEXEC, KeyFileWriter
from tests.helpers import register_account, serve_process, wait_until

# What the shim run as a file may import besides the interpreter's own start-up modules.
SHIM_IMPORTS = {"os", "posixpath", "genericpath", "stat", "_stat", "_collections_abc", "_socket", "select",
                "__future__", "struct", "_struct", "gateway", "gateway.ssh", "gateway.ssh.shim",
                "gateway.ssh.shimwire"}


@pytest.fixture
def socket_dir():
    folder = Path(tempfile.mkdtemp(prefix="keyfile-"))  # short: a UNIX socket's path is limited
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def keyfile_settings(make_settings, socket_dir):
    return make_settings(openssh_mode=True, shim_socket=str(socket_dir / "shim.sock"),
                         shim_user=pwd.getpwuid(os.geteuid()).pw_name,
                         authorized_keys_file=str(socket_dir / "authorized_keys"), key_cache_seconds=0.2)


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_one_line_per_active_key_running_the_shim(start_gateway, keyfile_settings, user_keys):
    """Active keys of enabled accounts only (not a revoked key, not a disabled account's), each with
    a forced command that starts the shim isolated and without site, carrying every value it needs."""
    harness = start_gateway(keyfile_settings)
    register_account(harness, "alice", user_keys["alice"])
    register_account(harness, "bob", user_keys["bob"])
    harness.registry.accounts.update_account("bob", disabled=True)
    register_account(harness, "carol", user_keys["mallory"])
    harness.registry.keys.revoke_key(user_keys["mallory"].fingerprint)
    assert KeyFileWriter(keyfile_settings, harness.registry).update() is True

    path = Path(keyfile_settings.authorized_keys_file)
    assert path.read_text().startswith(HEADER)
    expected = {}
    for name in ("alice",):
        key = user_keys[name]
        command = shlex.join([sys.executable, "-I", "-S", SHIMEXEC,
                              "--socket", keyfile_settings.shim_socket, "--account", name,
                              "--fingerprint", key.fingerprint, "--read-timeout", str(keyfile_settings.read_timeout),
                              "--max-upload-bytes", str(100 * 1024 * 1024)])
        expected[key.fingerprint] = f'restrict,command="{command}" ' + " ".join(key.public_line.split()[:2])
    assert _lines(path) == [expected[fp] for fp in sorted(expected)]
    assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_rewritten_only_when_the_keys_change(start_gateway, keyfile_settings, user_keys):
    """No change, no write (the same file stays); a revocation replaces the file in one rename."""
    harness = start_gateway(keyfile_settings)
    register_account(harness, "alice", user_keys["alice"])
    writer = KeyFileWriter(keyfile_settings, harness.registry)
    path = Path(keyfile_settings.authorized_keys_file)
    assert writer.update() is True
    first = path.stat().st_ino
    assert writer.update() is False
    # A new replica finds the file as it would write it: nothing to do either.
    assert KeyFileWriter(keyfile_settings, harness.registry).update() is False
    assert path.stat().st_ino == first
    harness.registry.keys.revoke_key(user_keys["alice"].fingerprint)
    assert writer.update() is True
    assert path.stat().st_ino != first and _lines(path) == []
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".authorized_keys")] == []


def test_a_check_reads_the_keys_only_when_their_signature_changed(start_gateway, keyfile_settings, user_keys,
                                                                  monkeypatch):
    """A check with no change is one aggregate query; a revocation, or every FULL_CHECK_EVERY-th
    check (for edits the signature cannot see), reads the keys again."""
    from sqlalchemy import event, text

    from gateway.ssh import keyfile

    monkeypatch.setattr(keyfile, "FULL_CHECK_EVERY", 4)
    harness = start_gateway(keyfile_settings)
    register_account(harness, "alice", user_keys["alice"])
    register_account(harness, "bob", user_keys["bob"])
    writer = KeyFileWriter(keyfile_settings, harness.registry)
    path = Path(keyfile_settings.authorized_keys_file)
    reads: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("SELECT accounts.name, ssh_keys.fingerprint, ssh_keys.public_key"):
            reads.append(statement)  # the writer's read of every active key

    event.listen(harness.registry.engine, "before_cursor_execute", count)
    try:
        assert writer.update() is True and len(reads) == 1  # check 1: the first read
        assert writer.update() is False and len(reads) == 1  # check 2: nothing changed, keys not read
        harness.registry.keys.revoke_key(user_keys["bob"].fingerprint)
        assert writer.update() is True and len(reads) == 2  # check 3: the signature changed
        assert [line.split()[-1] for line in _lines(path)] == [user_keys["alice"].public_line.split()[1]]
        # An edit the signature cannot see (the stored key text, by hand): found at check 4.
        with harness.registry.engine.begin() as conn:
            conn.execute(text("UPDATE ssh_keys SET public_key = :key WHERE fingerprint = :fp"),
                         {"key": " ".join(user_keys["mallory"].public_line.split()[:2]),
                          "fp": user_keys["alice"].fingerprint})
        assert writer.update() is True and len(reads) == 3
        assert [line.split()[-1] for line in _lines(path)] == [user_keys["mallory"].public_line.split()[1]]
    finally:
        event.remove(harness.registry.engine, "before_cursor_execute", count)


def test_the_line_runs_the_shim_and_the_replica_answers(start_gateway, keyfile_settings, user_keys):
    """The forced command of alice's line, run as sshd would run it, is served by the replica; the
    shim imports nothing but a few small standard modules and its own wire format."""
    harness = start_gateway(keyfile_settings)
    register_account(harness, "alice", user_keys["alice"])
    KeyFileWriter(keyfile_settings, harness.registry).update()
    (line,) = _lines(Path(keyfile_settings.authorized_keys_file))
    argv = shlex.split(re.match(r'restrict,command="(.*)" ssh-', line).group(1))
    env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": "whoami", "SSH_CONNECTION": "192.0.2.7 5555 127.0.0.1 22"}
    result = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True,
                            env=env, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "account:  alice" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    baseline = subprocess.run([argv[0], "-I", "-S", "-X", "importtime", "-c", "pass"], capture_output=True,
                              text=True, env=env, timeout=60)
    startup = {line.split("|")[-1].strip() for line in baseline.stderr.splitlines() if line.startswith("import time:")}
    assert imported - startup - {"module"} <= SHIM_IMPORTS, imported - startup


def test_script_usage_mistakes_get_one_line_and_status_2():
    """A forced command edited by hand into something the shim cannot use says what it needs."""
    script = SHIMEXEC
    for argv, problem in ((["--account", "alice"], "--socket and --account are required"),
                          (["--socket", "/x", "--account"], "every option takes a value"),
                          (["--socket", "/x", "--user", "alice"], "unknown option --user"),
                          (["--socket", "/x", "--account", "a", "--read-timeout", "soon"],
                           "--read-timeout and --max-upload-bytes take numbers")):
        result = subprocess.run([sys.executable, "-I", "-S", script, *argv], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.splitlines() == [f"shimexec.py: {problem}", shim.USAGE]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_serving_replica_keeps_the_file_current(socket_dir, upstream, host_key_dir, user_keys, workers):
    """`serve` with the file configured writes it at start and follows revocations and new keys
    within key_cache_seconds; under `--workers 2` the supervisor does."""
    key_file = socket_dir / "authorized_keys"
    proc = serve_process(socket_dir, upstream, host_key_dir, {"alice": user_keys["alice"]}, openssh_mode=True,
                         shim_socket=str(socket_dir / "shim.sock"), shim_user=pwd.getpwuid(os.geteuid()).pw_name,
                         authorized_keys_file=str(key_file), key_cache_seconds=0.2, workers=workers)
    try:
        def blobs() -> list[str]:
            return [line.split()[-1] for line in _lines(key_file)] if key_file.exists() else []

        alice = user_keys["alice"].public_line.split()[1]
        wait_until(lambda: blobs() == [alice], what="alice's key in the file")
        registry = Registry.from_url(proc.settings.database_url)
        registry.keys.revoke_key(user_keys["alice"].fingerprint)
        wait_until(lambda: blobs() == [], what="the revoked key gone from the file")
        registry.keys.restore_key(user_keys["alice"].fingerprint)
        wait_until(lambda: blobs() == [alice], what="the restored key back in the file")
        registry.close()
    finally:
        proc.stop()


def test_an_unreadable_registry_leaves_the_file_as_it_is(keyfile_settings, start_gateway, user_keys):
    """The registry gone: one warning, the last file kept for sshd, and the writer keeps trying."""
    harness = start_gateway(keyfile_settings)
    register_account(harness, "alice", user_keys["alice"])
    KeyFileWriter(keyfile_settings, harness.registry).update()
    path = Path(keyfile_settings.authorized_keys_file)
    before = path.read_text()
    broken = keyfile_settings.replace(database_url=f"sqlite:///{path.parent / 'missing' / 'registry.sqlite3'}")
    registry = Registry.from_url(broken.database_url)

    warnings: list[str] = []

    async def two_rounds() -> None:
        second = asyncio.Event()

        class Count(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                warnings.append(record.getMessage())
                if len(warnings) >= 2:
                    second.set()

        counter = Count(logging.WARNING)
        logging.getLogger("gateway.ssh.keyfile").addHandler(counter)
        task = asyncio.get_running_loop().create_task(KeyFileWriter(broken, registry).run())
        try:
            await asyncio.wait_for(second.wait(), timeout=10)
        finally:
            task.cancel()
            logging.getLogger("gateway.ssh.keyfile").removeHandler(counter)

    asyncio.run(two_rounds())
    registry.close()
    assert len(warnings) >= 2 and all("keeping the file as it is" in w for w in warnings)
    assert path.read_text() == before


def test_settings_problems_name_the_key_file_settings():
    """A key file without the OpenSSH mode, and a relative shim_python, are reported with what to do."""
    found = {p.setting: p.message for p in problems(Settings(authorized_keys_file="/tmp/keys", shim_python="python3"))}
    assert found["authorized_keys_file"] == ("authorized_keys_file is used only in the OpenSSH mode; "
                                             "set openssh_mode = true, or remove authorized_keys_file")
    assert found["shim_python"].startswith("shim_python must be an absolute path, not 'python3'")


def test_serve_refuses_a_key_file_in_a_missing_folder(socket_dir, upstream, host_key_dir, user_keys):
    """A folder that is not there stops `serve` at start with one line that says what to do."""
    missing = socket_dir / "no-such-folder" / "authorized_keys"
    with pytest.raises(RuntimeError) as info:
        serve_process(socket_dir, upstream, host_key_dir, {"alice": user_keys["alice"]}, openssh_mode=True,
                      shim_socket=str(socket_dir / "shim.sock"), shim_user=pwd.getpwuid(os.geteuid()).pw_name,
                      authorized_keys_file=str(missing))
    assert (f"Error: cannot write authorized_keys_file {missing}: {missing.parent} does not exist or is not "
            "writable by this user") in str(info.value)
