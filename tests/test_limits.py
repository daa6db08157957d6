"""Limits before and around login: unauthenticated connections (per source and per replica), the
login grace time, keys tried per connection, the penalty box for failing addresses, concurrent
sessions per account, and a flood of 300 idle connections that must not stop a real upload.

Loopback has the whole of 127.0.0.0/8, so "other hosts" are sockets bound to 127.0.0.x.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess

import pytest

from gateway.ops import logformat, sessionlog
from gateway.limits import PenaltyBox, SessionCounter, StartupGate
from tests.helpers import register_account, wait_until


# -- the counters themselves ---------------------------------------------------------------------
def test_startup_gate_caps_each_source():
    """One address cannot hold more than max_per_source unauthenticated connections."""
    gate = StartupGate(max_total=100, max_per_source=2)
    assert gate.admit("a", "10.0.0.1").admitted and gate.admit("b", "10.0.0.1").admitted
    refused = gate.admit("c", "10.0.0.1")
    assert not refused.admitted and "10.0.0.1 already has 2 connections" in refused.reason
    assert gate.admit("d", "10.0.0.2").admitted
    gate.release("a")
    gate.release("a")  # idempotent
    assert gate.admit("c", "10.0.0.1").admitted
    assert not gate.admit("e", "10.0.0.1").admitted  # "b" and "c" hold its two


def test_startup_gate_evicts_the_oldest_when_full():
    """A full replica admits the newcomer and names the oldest pending connection for eviction."""
    gate = StartupGate(max_total=3)
    for conn in "abc":
        assert gate.admit(conn, f"10.0.0.{ord(conn)}").evict is None
    admission = gate.admit("d", "10.0.9.9")
    assert admission.admitted and admission.evict == "a" and len(gate) == 3
    assert gate.admit("e", "10.0.9.9").evict == "b"


def test_penalty_box_blocks_after_the_limit_and_decays():
    """Failures add up to a block; the score halves every half-life, which lifts it."""
    now = [1000.0]
    box = PenaltyBox(threshold=3, half_life=60.0, clock=lambda: now[0])
    for _ in range(2):
        box.record_failure("192.0.2.1")
    assert box.blocked_for("192.0.2.1") == 0.0
    box.record_failure("192.0.2.1")
    wait = box.blocked_for("192.0.2.1")
    assert wait >= 1.0 and box.blocked_for("192.0.2.2") == 0.0
    now[0] += 60.0  # one half-life: 3 -> 1.5, below the bar of 2.5
    assert box.blocked_for("192.0.2.1") == 0.0
    assert box.score("192.0.2.1") == pytest.approx(1.5)


def test_penalty_box_reports_how_long_to_wait():
    """A heavily failing address waits longer: log2(score / (threshold - 0.5)) half-lives."""
    now = [0.0]
    box = PenaltyBox(threshold=3, half_life=100.0, clock=lambda: now[0])
    for _ in range(10):
        box.record_failure("198.51.100.7")
    assert box.blocked_for("198.51.100.7") == pytest.approx(200.0)  # 10 -> 2.5 takes two half-lives
    now[0] += 200.5
    assert box.blocked_for("198.51.100.7") == 0.0


def test_penalty_box_off_when_threshold_is_zero():
    """failed_login_limit = 0 turns the penalty box off."""
    box = PenaltyBox(threshold=0, half_life=60.0)
    for _ in range(100):
        box.record_failure("192.0.2.9")
    assert box.blocked_for("192.0.2.9") == 0.0


def test_session_counter_caps_each_account():
    """An account holds at most `limit` sessions; releasing one frees a slot."""
    sessions = SessionCounter(2)
    assert sessions.acquire("alice") and sessions.acquire("alice") and not sessions.acquire("alice")
    assert sessions.acquire("bob")
    sessions.release("alice")
    assert sessions.acquire("alice") and sessions.held("alice") == 2


# -- through real sockets and real OpenSSH ------------------------------------------------------
@pytest.fixture
def connect_from():
    """Opens a TCP connection to a local port from a given loopback address; every socket it opened,
    connected or not, is closed when the test ends, whatever the test asserted."""
    opened: list[socket.socket] = []

    def connect(source: str, port: int, send: bytes = b"") -> socket.socket:
        sock = socket.socket()
        opened.append(sock)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        if send:
            sock.sendall(send)
        return sock

    yield connect
    for sock in opened:
        sock.close()


def _read_until_closed(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


def _ssh(client, *extra: str, keys=(), source: str | None = None, command: str = "whoami",
         timeout: float = 30) -> subprocess.CompletedProcess:
    argv = client.argv(*extra)
    if keys:  # replace the client's one identity by the given ones, offered in order
        index = argv.index("-i")
        del argv[index:index + 2]
        for key in keys:
            argv[1:1] = ["-i", str(key.path)]
    if source:
        argv[1:1] = ["-b", source]
    return subprocess.run([*argv, "-T", "-l", client.user, "127.0.0.1", command],
                          capture_output=True, timeout=timeout)


def test_one_source_cannot_take_every_slot(start_gateway, make_settings, ssh_client, user_key, connect_from):
    """Past max_startups_per_source, an address's next connection is told why; others log in."""
    harness = start_gateway(make_settings(max_startups_per_source=3))
    register_account(harness, "alice", user_key)
    for _ in range(3):  # held open until the test ends
        connect_from("127.0.0.5", harness.port)
    refused = _read_until_closed(connect_from("127.0.0.5", harness.port))
    assert b"127.0.0.5 already has 3 connections that have not logged in" in refused
    assert _ssh(ssh_client(harness=harness)).returncode == 0


def test_full_replica_drops_the_oldest_idle_connection(start_gateway, make_settings, ssh_client, user_key,
                                                       connect_from):
    """With max_startups idle connections held, a real login still succeeds: the oldest idle one goes."""
    harness = start_gateway(make_settings(max_startups=4, max_startups_per_source=0))
    register_account(harness, "alice", user_key)
    idle = [connect_from("127.0.0.6", harness.port) for _ in range(4)]
    wait_until(lambda: len(harness.services.limits.startups) == 4, what="4 pending connections")
    result = _ssh(ssh_client(harness=harness))
    assert result.returncode == 0, result.stderr
    assert b"flooded with connections that do not log in" in _read_until_closed(idle[0])


def test_login_grace_time_closes_silent_connections(start_gateway, make_settings, connect_from):
    """A connection that sends its banner and then nothing is closed after login_timeout."""
    harness = start_gateway(make_settings(login_timeout=1.0))
    sock = connect_from("127.0.0.8", harness.port, b"SSH-2.0-Stalled\r\n")
    data = _read_until_closed(sock, timeout=20)
    assert data.startswith(b"SSH-2.0-pypissh_gateway")
    assert sock.recv(1) == b""  # closed by the server, not timed out here


def test_too_many_keys_tried_ends_the_connection_with_a_reason(start_gateway, make_settings, ssh_client,
                                                               user_keys):
    """After max_auth_tries unknown keys the client is disconnected and told to offer only its key."""
    harness = start_gateway(make_settings(max_auth_tries=2))
    register_account(harness, "alice", user_keys["alice"])
    client = ssh_client(harness=harness)
    result = _ssh(client, keys=[user_keys["alice"], user_keys["mallory"], user_keys["bob"]])  # alice offered last
    assert result.returncode == 255
    assert b"too many keys tried (2)" in result.stderr and b"IdentitiesOnly=yes" in result.stderr
    assert _ssh(client, keys=[user_keys["alice"], user_keys["bob"]]).returncode == 0  # alice second: fine


def test_an_address_that_keeps_failing_is_refused_unregistered_keys_for_a_while(start_gateway, make_settings,
                                                                                ssh_client, user_keys):
    """After failed_login_limit failed logins, unregistered keys from the address end the connection with
    how long they stay refused; other addresses get the ordinary refusal."""
    harness = start_gateway(make_settings(failed_login_limit=3))
    register_account(harness, "alice", user_keys["alice"])
    client = ssh_client(harness=harness)
    for _ in range(3):
        failed = _ssh(client, keys=[user_keys["mallory"]], source="127.0.0.7")
        assert b"Permission denied" in failed.stderr
    wait_until(lambda: harness.services.limits.penalties.blocked_for("127.0.0.7") > 0, what="the penalty")
    refused = _ssh(client, keys=[user_keys["mallory"]], source="127.0.0.7")
    assert refused.returncode == 255
    assert b"too many failed logins from 127.0.0.7; keys not registered here are refused from it for" in refused.stderr
    assert b"IdentitiesOnly=yes" in refused.stderr
    elsewhere = _ssh(client, keys=[user_keys["mallory"]], source="127.0.0.1")
    assert b"Permission denied" in elsewhere.stderr and b"too many failed logins" not in elsewhere.stderr


def test_a_registered_key_behind_a_busy_nat_is_never_locked_out(start_gateway, make_settings, ssh_client,
                                                                 user_keys, caplog):
    """One failed login every 3 (fake-clock) seconds from an address never locks out a registered key at
    that address, and the log and the client name the same remaining time."""
    harness = start_gateway(make_settings(failed_login_limit=5))
    register_account(harness, "alice", user_keys["alice"])
    client = ssh_client(harness=harness)
    penalties = harness.services.limits.penalties
    for _ in range(12):
        before = penalties.score("127.0.0.9")
        assert _ssh(client, keys=[user_keys["mallory"]], source="127.0.0.9").returncode == 255
        wait_until(lambda: penalties.score("127.0.0.9") > before, what="the failed login to be counted")
        valid = _ssh(client, source="127.0.0.9")
        assert valid.returncode == 0, valid.stderr
        harness.ticks.advance(3.0)
    assert penalties.blocked_for("127.0.0.9") > 0  # the address is penalized all the same
    harness.ticks.advance(sessionlog.WINDOW)  # past the log's flood summary: the next refusal gets its line
    assert penalties.blocked_for("127.0.0.9") > 0
    with caplog.at_level(logging.INFO, logger="gateway"):
        refused = _ssh(client, keys=[user_keys["mallory"]], source="127.0.0.9")
        # The server may write its line after the client has gone: wait while INFO is still captured.
        (line,) = wait_until(lambda: [logformat.record_fields(r) for r in caplog.records
                                      if logformat.record_fields(r).get("reason") == "penalized"],
                             what="the log line")
    told = re.search(rb"refused from it for ([^;]+);", refused.stderr)
    assert told is not None, refused.stderr
    assert line["detail"] == f"too many failed logins from the address ({told.group(1).decode()} left)"


def test_account_session_cap_names_the_account(start_gateway, make_settings, ssh_client, user_keys, upstream):
    """Past max_sessions_per_account a session is refused naming the account; others and freed slots work."""
    harness = start_gateway(make_settings(max_sessions_per_account=1, read_timeout=30.0))
    register_account(harness, "alice", user_keys["alice"], token=upstream.token)
    register_account(harness, "bob", user_keys["bob"], token=upstream.token)
    alice, bob = ssh_client(user_keys["alice"], harness=harness), ssh_client(user_keys["bob"], harness=harness)
    sessions = harness.services.limits.sessions
    holder = subprocess.Popen([*alice.argv("-T", "-l", "submit"), "127.0.0.1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # an upload still arriving
    try:
        wait_until(lambda: sessions.held("alice") == 1, what="alice's session")
        refused = _ssh(alice)
        assert refused.returncode != 0
        assert (b"account 'alice' already has 1 upload in progress on this gateway; wait for the other "
                b"uploads to finish") in refused.stderr
        assert _ssh(bob).returncode == 0
    finally:
        holder.communicate(b"", timeout=30)  # EOF: the held session ends
    wait_until(lambda: sessions.held("alice") == 0, what="alice's session to end")
    assert _ssh(alice).returncode == 0


def test_flood_of_300_connections_that_never_log_in_does_not_stop_an_upload(
        gateway, alice, ssh_client, legacy_project, legacy_home, upstream, project_name, connect_from):
    """300 connections that never log in, from 100 addresses, do not stop a real legacy upload."""
    for index in range(300):
        source = f"127.0.1.{index % 100 + 1}"
        send = (b"", b"SSH-2.0-flood\r\n", b"SSH-2.0-flood\r\n" + bytes(range(256)))[index % 3]
        try:
            connect_from(source, gateway.port, send)  # held open until the test ends
        except OSError:
            pass  # a refused or reset connection is the gateway defending itself
    wait_until(lambda: len(gateway.services.limits.startups) >= 50, what="50 pending connections")
    assert len(gateway.services.limits.startups) <= gateway.settings.max_startups
    result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Server response (200)" in result.stdout
    assert project_name.lower().replace("-", "_") + "-1.0.tar.gz" in upstream.files()
