"""A client that closes its channel before its answer is written is normal, not a failure: fifty
sessions over a real OpenSSH ControlMaster, each closed while the gateway is still to answer it,
leave no traceback, no "session failed" and no "Task exception was never retrieved" in the log."""

from __future__ import annotations

import asyncio
import gc
import logging

from testbed import legacyrequests as lr
from tests.helpers import recorded_events, register_account, wait_until
from tests.test_revocation import ControlMaster

CHANNELS = 50


def test_fifty_channels_closed_before_their_answer_leave_no_traceback(start_gateway, make_settings, ssh_client,
                                                                       user_key, upstream, tmp_path, caplog):
    """50 sessions whose clients are killed mid-request: each is logged as closed by the client, none as
    a failure, and the connection serves the next session."""
    caplog.set_level(logging.INFO)
    harness = start_gateway(make_settings(max_sessions_per_account=CHANNELS, max_sessions_per_connection=CHANNELS,
                                          read_timeout=60.0))
    register_account(harness, "alice", user_key, token=upstream.token)
    master = ControlMaster(ssh_client(harness=harness), tmp_path / "cm").start()
    sessions = harness.services.limits.sessions
    request = lr.python3_upload("T-closed", "1.0", lr.make_sdist("T-closed", "1.0"))
    clients = []
    try:
        for _ in range(CHANNELS):
            client = master.open_session()
            client.stdin.write(request[:len(request) // 2])  # the rest never comes
            client.stdin.flush()
            clients.append(client)
        wait_until(lambda: sessions.held("alice") == CHANNELS, what="all sessions to start", timeout=60)
        for client in clients:
            client.kill()  # the master closes each client's channel; the gateway has yet to answer
        wait_until(lambda: sessions.held("alice") == 0, what="every session to end", timeout=60)
        wait_until(lambda: len(_aborted(harness)) == CHANNELS, what="every session's event", timeout=60)
        for _ in range(3):  # let the loop run what the last event rows resumed (the writes)
            harness.call(asyncio.sleep(0))
        gc.collect()  # an exception nobody retrieved is reported when its task is collected
        assert master.session("whoami").returncode == 0
    finally:
        for client in clients:
            with client:  # its pipes closed and the client reaped
                client.kill()
        master.stop()

    for bad in ("session failed", "Task exception was never retrieved", "Traceback", "Exception in callback"):
        assert bad not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Most answers meet a closed channel (a client's end of file may get one out first): each is
    # logged as the client's doing, never as a failure.
    gone = [r for r in caplog.records if "closed the session before its answer was written" in r.getMessage()]
    assert gone and all(r.levelno == logging.INFO for r in gone)
    assert all(c.returncode != 0 for c in clients)


def _aborted(harness) -> list:
    return [e for e in recorded_events(harness.registry) if e.outcome == "client_aborted"]
