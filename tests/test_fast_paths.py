"""What the performance work changed (bench/RESULTS.md): the key cache answered on the event loop,
the session reader's chunking and back-pressure, the cipher OpenSSH negotiates, a large upload
that exercises the back-pressure end to end, and the OpenSSH mode's per-login commands, which
import none of the heavy libraries and read their settings as the full reader does."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway.loginsettings import LOGIN_FIELDS, load_login_settings
from gateway.registry import Identity
from gateway.settings import Settings, load
from gateway.ssh import session
from gateway.keycache import KeyCache
from testbed.legacyrequests import make_sdist, python3_upload
from tests.helpers import recorded_events, register_account


class _CountingLookup:
    """Counts lookups; the cache is what is under test, not the database."""

    def __init__(self, identity: Identity | None):
        self.identity = identity
        self.calls = 0

    def __call__(self, fingerprint: str) -> Identity | None:
        self.calls += 1
        return self.identity


class _Flow:
    """Records pause/resume calls, as the connection would receive them."""

    def __init__(self):
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


IDENTITY = Identity(7, "alice", None, False, "SHA256:abc", None, None, None)


def test_cached_answers_only_fresh_entries_without_the_database():
    """KeyCache.cached: a miss before any lookup, a hit within the TTL, a miss once it expired."""
    now = [100.0]
    registry = _CountingLookup(IDENTITY)
    lookup = KeyCache(registry, 5.0, clock=lambda: now[0])
    assert lookup.cached("SHA256:abc") == (False, None)
    assert lookup.identity("SHA256:abc") == IDENTITY
    assert lookup.cached("SHA256:abc") == (True, IDENTITY)
    now[0] += 6
    assert lookup.cached("SHA256:abc") == (False, None)
    assert registry.calls == 1


def test_cached_remembers_unknown_keys_too():
    """An unknown key looked up once is answered from the cache (None) until it expires."""
    lookup = KeyCache(_CountingLookup(None), 5.0, clock=lambda: 0.0)
    lookup.identity("SHA256:nobody")
    assert lookup.cached("SHA256:nobody") == (True, None)


def test_reader_joins_and_splits_chunks_up_to_the_read_size():
    """Reads return at most max_bytes, joining small chunks and splitting a large one, in order."""
    reader = session.ChannelReader(None, None)  # type: ignore[arg-type]
    reader._flow = _Flow()
    for chunk in (b"ab", b"cdef", b"ghijklmnop"):
        reader.feed(chunk)
    reader.feed_eof()

    async def drain() -> list[bytes]:
        out = []
        while data := await reader.read(5):
            out.append(data)
        return out

    assert asyncio.run(drain()) == [b"abcde", b"fghij", b"klmno", b"p"]


def test_reader_pauses_at_high_water_and_resumes_below_half():
    """Input past HIGH_WATER pauses the client; reading below half of it resumes; stop() resumes."""
    flow = _Flow()
    reader = session.ChannelReader(None, None)  # type: ignore[arg-type]
    reader._flow = flow
    piece = b"x" * (session.HIGH_WATER // 4)
    for _ in range(4):
        reader.feed(piece)
    assert flow.calls == ["pause"]
    asyncio.run(reader.read(len(piece)))
    assert flow.calls == ["pause"]
    asyncio.run(reader.read(2 * len(piece)))
    assert flow.calls == ["pause", "resume"]
    for _ in range(4):
        reader.feed(piece)
    reader.stop()
    assert flow.calls == ["pause", "resume", "pause", "resume"]
    for _ in range(8):
        reader.feed(piece)  # after the answer: dropped, and the client is never paused again
    assert flow.calls == ["pause", "resume", "pause", "resume"]


def test_openssh_negotiates_aes_not_chacha20(alice, ssh_client):
    """OpenSSH's first choice, chacha20-poly1305, is not offered; the session runs on AES."""
    client = ssh_client()
    result = subprocess.run([*client.argv("-T", "-l", "submit", log_level="DEBUG1"), "127.0.0.1", "whoami"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ciphers = [line for line in result.stderr.splitlines() if "cipher:" in line]
    assert ciphers and all("aes" in line and "chacha" not in line for line in ciphers), ciphers


def test_upload_many_times_the_buffer_arrives_intact(gateway, ssh_client, user_key, upstream, project_name):
    """An upload of 24 MiB (many times HIGH_WATER, so the reader pauses and resumes the client's
    connection over and over) reaches the upstream byte for byte."""
    register_account(gateway, "alice", user_key, token=upstream.token)
    sdist = make_sdist(project_name, "1.0", pad=os.urandom(24 * 1024 * 1024))
    request = python3_upload(project_name, "1.0", sdist)
    result = ssh_client().run(data=request, timeout=120)
    assert result.stdout.startswith(b"HTTP/1.0 200"), result.stdout[:200] + result.stderr[-300:]
    stored = {name: digest for name, digest in upstream.files().items() if name.endswith(".tar.gz")}
    expected = f"{project_name.lower().replace('-', '_')}-1.0.tar.gz"
    assert stored[expected] == hashlib.sha256(sdist).hexdigest()


def test_record_event_stores_the_event_and_the_keys_last_use(gateway, user_key):
    """record_event (statements built once, values bound per call) writes the event row and sets
    the key's last_used_at; identity_for_key finds the key by fingerprint."""
    import datetime as dt

    from gateway.registry import UploadEvent

    register_account(gateway, "alice", user_key)
    registry = gateway.registry
    identity = registry.keys.identity_for_key(user_key.fingerprint)
    assert identity is not None and identity.account_name == "alice"
    assert registry.keys.identity_for_key("SHA256:" + "B" * 43) is None
    at = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    for project in ("first", "second"):
        registry.events.record(UploadEvent(at=at, outcome="forwarded", account_id=identity.account_id,
                                          account_name="alice", key_fingerprint=user_key.fingerprint,
                                          project=project, size=10))
    assert [e.project for e in recorded_events(registry, account_name="alice")] == ["first", "second"]
    assert registry.keys.find_key(user_key.fingerprint).last_used_at == at



# -- the OpenSSH mode's per-login commands ------------------------------------------------------
HEAVY = {"click", "sqlalchemy", "asyncssh", "cryptography", "jinja2", "rich"}
# Runs one command line through the console script's entry point and reports what it imported.
IMPORTS_PROBE = """
import json, sys
out, sys.argv = sys.argv[1], ["pypissh-gateway", *sys.argv[2:]]
from gateway.entry import main
try:
    main()
except SystemExit:
    pass
with open(out, "w") as handle:
    json.dump(sorted(sys.modules), handle)
"""


def _imported(tmp_path, *argv: str, stdin: bytes = b"", **env: str) -> set[str]:
    out = tmp_path / f"modules-{len(list(tmp_path.iterdir()))}.json"
    subprocess.run([sys.executable, "-c", IMPORTS_PROBE, str(out), *argv], input=stdin, capture_output=True,
                   timeout=60, env={**{k: v for k, v in os.environ.items() if not k.startswith("PYPISSH_")}, **env})
    return set(json.loads(out.read_text()))


@pytest.fixture
def openssh_replica(start_gateway, make_settings, user_key):
    folder = Path(tempfile.mkdtemp(prefix="shim-"))
    harness = start_gateway(make_settings(openssh_mode=True, shim_socket=str(folder / "shim.sock"),
                                          shim_user=pwd.getpwuid(os.geteuid()).pw_name,
                                          authorized_keys_file=str(folder / "authorized_keys")))
    register_account(harness, "alice", user_key)
    yield harness
    shutil.rmtree(folder, ignore_errors=True)


def test_login_commands_import_no_heavy_library(openssh_replica, user_key, tmp_path):
    """authorized-keys-command and stdio (answered by the replica, or with no replica at all) import
    neither click, SQLAlchemy, asyncssh, cryptography, jinja2 nor rich, nor the full settings."""
    from gateway.ssh.keyfile import KeyFileWriter

    KeyFileWriter(openssh_replica.settings, openssh_replica.registry).update()
    kind, blob = user_key.public_line.split()[:2]
    config = tmp_path / "config.toml"
    config.write_text(f'shim_socket = "{openssh_replica.settings.shim_socket}"\n'
                      f'authorized_keys_file = "{openssh_replica.settings.authorized_keys_file}"\n')
    stdio = ("--config", str(config), "stdio", "--account", "alice", "--fingerprint", user_key.fingerprint)
    runs = {
        "key": _imported(tmp_path, "--config", str(config), "authorized-keys-command", "submit", blob, kind),
        "whoami, replica": _imported(tmp_path, *stdio, SSH_ORIGINAL_COMMAND="whoami"),
        "upload, replica": _imported(tmp_path, *stdio, stdin=b"GET /?:action=list_classifiers HTTP/1.0\r\n\r\n"),
        "upload, no replica": _imported(tmp_path, "--set", "shim_socket=/nonexistent.sock", *stdio,
                                        stdin=b"GET /?:action=list_classifiers HTTP/1.0\r\n\r\n"),
    }
    for what, modules in runs.items():
        assert "gateway.entry" in modules, what  # the probe ran the command
        assert {name.split(".")[0] for name in modules} & HEAVY == set(), what
        assert "gateway.settings" not in modules, what
    assert "gateway.ssh.keycommand" in runs["key"]


def test_package_inits_import_nothing_heavy():
    """`gateway`, `gateway.ssh` and `gateway.registry` import no heavy library on their own."""
    probe = "import json, sys, gateway, gateway.ssh, gateway.registry; print(json.dumps(sorted(sys.modules)))"
    modules = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                        check=True).stdout)
    assert {name.split(".")[0] for name in modules} & (HEAVY | {"psycopg"}) == set()


def test_login_fields_are_the_settings_fields():
    """Every setting the light reader knows is a `Settings` field of the same type and default."""
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    for name, (kind, default) in LOGIN_FIELDS.items():
        assert (fields[name].type, fields[name].default) == (kind, default), name


def test_light_reader_agrees_with_the_full_reader(tmp_path):
    """For a file, the environment and flags together, both readers give the same values; relative
    paths in the file too (wherever they resolve, they must resolve alike)."""
    config = tmp_path / "config.toml"
    config.write_text('[pypissh]\nssh_user = "uploads"\nshim_socket = "run/file.sock"\nread_timeout = 12\n'
                      'openssh_mode = true\nauthorized_keys_file = "keys/authorized_keys"\n'
                      'listen = "127.0.0.1:2200"\n'
                      'database_url = "sqlite:///state/registry.sqlite3"\n')
    environ = {"PYPISSH_SHIM_SOCKET": "/run/env.sock", "PYPISSH_MAX_UPLOAD_BYTES": "1000",
               "PYPISSH_DATABASE_URL": "sqlite:////var/lib/x.sqlite3"}
    overrides = {"database_url": "sqlite:////flag.sqlite3", "authorized_keys_file": "/flag/authorized_keys"}
    for args in ((None, {}, {}), (str(config), {}, {}), (str(config), environ, {}), (str(config), environ, overrides)):
        light = load_login_settings(*args)
        full = load(*args)
        assert {name: getattr(light, name) for name in LOGIN_FIELDS} == {
            name: getattr(full, name) for name in LOGIN_FIELDS}, args
