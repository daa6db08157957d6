"""The hostile corpus (`testbed.hostile`) through real SSH sessions into one real gateway process.

Each case must get a clear 4xx reason, reach nothing upstream and leak no internals; after the
whole corpus the gateway's memory must not have grown with what it was sent, its spool must be
empty, and a real upload must still succeed.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gateway.registry import Registry
from testbed import hostile
from testbed.gatewayprocess import GatewayProcess
from testbed.sample import make_legacy_project, write_pypirc
from tests.conftest import SshClient
from tests.helpers import recorded_events, serve_process

PROJECT = "T-hostile-corpus"
CASES = {case.name: case for case in hostile.corpus(PROJECT)}
# What must never reach a client: Python internals, reprs, paths of the server.
INTERNALS = re.compile(rb"Traceback|File \"|/[\w./-]+\.py\b|Error\(|Exception|bytearray|\bb'|\berrno\b|/tmp/|site-packages")


@pytest.fixture(scope="module")
def hostile_gateway(tmp_path_factory, upstream, host_key_dir, user_keys):
    """One gateway process for the whole corpus, account alice on it: short read timeout (the
    stall and drip cases wait for it), its own spool directory (which must be empty afterwards)."""
    folder = tmp_path_factory.mktemp("hostile")
    spool = folder / "spool"
    spool.mkdir()
    process = serve_process(folder, upstream, host_key_dir, {"alice": user_keys["alice"]}, spool_dir=str(spool),
                            read_timeout=2.0, key_cache_seconds=0.5, log_level="INFO")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def corpus_client(hostile_gateway, user_keys, tmp_path_factory) -> SshClient:
    known = tmp_path_factory.mktemp("hostile-known") / "known_hosts"
    known.write_text(hostile_gateway.known_hosts_line())
    return SshClient(hostile_gateway, user_keys["alice"], known)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def baseline(hostile_gateway, corpus_client, upstream, tmp_path_factory):
    """One real upload first (imports, pools and caches warmed), then the RSS high-water mark is reset."""
    _legacy_upload(corpus_client, tmp_path_factory.mktemp("warmup"), "T-hostile-warmup")
    hostile_gateway.reset_peak_rss()
    upstream.clear_recordings()
    return {"rss": hostile_gateway.rss_kib(), "sent": 0}


def _legacy_upload(client: SshClient, folder, name: str) -> None:
    home = folder / "home"
    write_pypirc(home, "https://upload.pypi.org/legacy/", username="alice", password="old-password")
    project = make_legacy_project(folder / name, name=name, version="1.0")
    result = client.legacy(project, "sdist", "upload", home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Server response (200)" in result.stdout


def _send(client: SshClient, case: hostile.Case, timeout: float = 90) -> tuple[bytes, bytes]:
    """Send the case the way its mode says; returns the client's (stdout, stderr)."""
    if case.mode == "send":
        result = client.run(data=case.data, timeout=timeout)
        return result.stdout, result.stderr
    proc = subprocess.Popen([*client.argv("-T", "-l", client.user), "127.0.0.1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda name=name, stream=stream: out.__setitem__(name, stream.read()))
               for name, stream in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    assert proc.stdin is not None
    with proc:  # its pipes closed and the client reaped, however this ends
        try:
            if case.mode == "stall":  # some bytes, then silence with the session held open
                proc.stdin.write(case.data)
                proc.stdin.flush()
                proc.wait(timeout)
            else:  # drip: one byte at a time, slower than any real client, until the gateway gives up
                deadline = time.monotonic() + timeout
                for byte in case.data:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        break
                    proc.stdin.write(bytes([byte]))
                    proc.stdin.flush()
                    time.sleep(0.05)
                proc.wait(max(1.0, deadline - time.monotonic()))
        except BrokenPipeError:
            proc.wait(timeout)
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            proc.kill()  # only still running if a wait above timed out
            for reader in readers:
                reader.join(10)
    return out.get("out", b""), out.get("err", b"")


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_is_refused_cleanly(name, corpus_client, baseline, upstream):
    """A hostile request gets a 4xx with a clear reason; nothing reaches the upstream; no internals leak."""
    case = CASES[name]
    upstream.clear_recordings()
    stdout, stderr = _send(corpus_client, case)
    baseline["sent"] += len(case.data)
    status_line = stdout.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    match = re.fullmatch(r"HTTP/1\.0 (\d{3}) (.+)", status_line)
    assert match, f"no HTTP answer; stdout={stdout[:300]!r} stderr={stderr[:300]!r}"
    status, reason = int(match.group(1)), match.group(2)
    assert case.accepts(status) and 400 <= status < 500, (status, reason)
    assert case.reason.lower() in reason.lower(), reason
    assert len(reason) > 30, "a reason must say what happened and what to do"
    assert not INTERNALS.search(stdout + stderr), (stdout + stderr)[:600]
    assert b"X-Injected" not in stdout.split(b"\r\n\r\n", 1)[0].split(b"\r\n", 1)[-1]
    assert upstream.recordings() == [], "a hostile request reached the upstream"


def test_after_the_corpus_memory_spool_and_uploads_are_fine(hostile_gateway, corpus_client, baseline, upstream,
                                                           tmp_path):
    """After the corpus: memory did not grow with the input, no spool file is open, a real upload succeeds."""
    if baseline["sent"] == 0:
        pytest.skip("run together with the corpus cases")
    peak_growth = hostile_gateway.peak_rss_kib() - baseline["rss"]
    print(f"corpus: {len(CASES)} cases, {baseline['sent'] / 1048576:.1f} MiB sent; gateway RSS "
          f"{baseline['rss'] / 1024:.1f} MiB at start, peak growth {peak_growth / 1024:.1f} MiB")
    # The corpus holds archives that inflate to 256 MiB and requests of up to 13 MiB; a gateway
    # that buffered either would grow by that much.
    assert peak_growth < 64 * 1024
    spool = hostile_gateway.settings.spool_dir
    assert [link for link in _open_files(hostile_gateway) if link.startswith(spool)] == [], "a spool file was left open"
    outcomes = {event.outcome for event in recorded_events(Registry.from_url(hostile_gateway.settings.database_url))}
    assert "internal_error" not in outcomes
    assert "Traceback" not in hostile_gateway.log()
    _legacy_upload(corpus_client, tmp_path, "T-hostile-after")


def _open_files(process: GatewayProcess) -> list[str]:
    """What the gateway's file descriptors point at (an unlinked spool file still shows its path)."""
    assert process.process is not None
    folder = Path(f"/proc/{process.process.pid}/fd")
    links = []
    for fd in folder.iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            pass
    return links
