"""Limits after login, per account: logged-in connections, a session channel that never asks for
anything, and connections that stay logged in without a session. Each refusal names the account and
says what to do; each freed slot is usable again."""

from __future__ import annotations

import asyncio
import subprocess

import asyncssh

from testbed import legacyrequests as lr
from testbed.sshflood import open_bare_session
from tests.helpers import register_account, wait_until
from tests.test_revocation import ControlMaster


def test_connection_cap_names_the_account(start_gateway, make_settings, ssh_client, user_keys, upstream, tmp_path):
    """Past max_connections_per_account, a login of that account is refused naming it; others log in; a
    closed connection frees its place."""
    harness = start_gateway(make_settings(max_connections_per_account=2))
    register_account(harness, "alice", user_keys["alice"], token=upstream.token)
    register_account(harness, "bob", user_keys["bob"], token=upstream.token)
    alice, bob = ssh_client(user_keys["alice"], harness=harness), ssh_client(user_keys["bob"], harness=harness)
    masters = [ControlMaster(alice, tmp_path / f"cm{i}").start() for i in range(2)]
    try:
        refused = alice.run("whoami")
        assert refused.returncode == 255
        assert (b"account 'alice' already has 2 connections logged in to this gateway; close the idle ones"
                in refused.stderr)
        assert bob.run("whoami").returncode == 0
        masters[0].stop()
        wait_until(lambda: harness.services.limits.connections.held("alice") == 1, what="a place to free up")
        assert alice.run("whoami").returncode == 0
    finally:
        for master in masters:
            master.stop()


def test_idle_connection_is_closed_and_a_busy_one_is_not(start_gateway, make_settings, ssh_client, user_key,
                                                         upstream, project_name):
    """A logged-in connection without a session is closed after idle_timeout with the reason; one whose
    session is still open stays, however long."""
    harness = start_gateway(make_settings(idle_timeout=1.0, read_timeout=60.0))
    register_account(harness, "alice", user_key, token=upstream.token)
    client = ssh_client(harness=harness)
    busy = subprocess.Popen([*client.argv("-T", "-l", "submit"), "127.0.0.1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: harness.services.limits.sessions.held("alice") == 1, what="the busy session")
        # Opened after the busy one: once this is closed for idling, the busy one has been open longer.
        idle = subprocess.run([*client.argv("-N", "-T", "-l", "submit"), "127.0.0.1"], capture_output=True,
                              timeout=60)
        assert b"the connection of account 'alice' had no session for 1 s and is closed" in idle.stderr
        assert busy.poll() is None
        content = lr.make_sdist(project_name, "1.0")
        out, err = busy.communicate(lr.python3_upload(project_name, "1.0", content), timeout=60)
        assert out.startswith(b"HTTP/1.0 200 "), err
    finally:
        if busy.poll() is None:
            busy.kill()
            busy.wait()


def test_a_session_channel_without_a_request_is_closed(start_gateway, make_settings, ssh_client, user_keys,
                                                       upstream, project_name):
    """Channels that never send an exec or shell request lose their session slot after
    channel_request_timeout; the account's real upload then goes through."""
    harness = start_gateway(make_settings(channel_request_timeout=1.0, max_sessions_per_account=2))
    register_account(harness, "alice", user_keys["alice"], token=upstream.token)
    sessions = harness.services.limits.sessions

    async def hold_bare_channels() -> list[str]:
        key = asyncssh.read_private_key(str(user_keys["alice"].path))
        async with asyncssh.connect("127.0.0.1", harness.port, username="submit", client_keys=[key],
                                    known_hosts=None, agent_path=None) as conn:
            opened = [await open_bare_session(conn) for _ in range(2)]
            assert sessions.held("alice") == 2  # every slot taken by a channel that asks for nothing
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_until(lambda: sessions.held("alice") == 0, what="the slots to be freed"))
            return [collector.stderr for _, collector in opened]

    told = asyncio.run(hold_bare_channels())
    assert all("this session of account 'alice' sent no command or upload within 1 s and is closed" in t
               for t in told)
    content = lr.make_sdist(project_name, "1.0")
    result = ssh_client(user_keys["alice"], harness=harness).run(data=lr.python3_upload(project_name, "1.0", content))
    assert result.stdout.startswith(b"HTTP/1.0 200 "), result.stderr


def test_channels_past_the_connection_cap_are_refused_and_others_still_log_in(
        start_gateway, make_settings, ssh_client, user_keys, upstream):
    """One connection opens max_sessions_per_connection channels that ask for nothing, then floods
    hundreds more: each one past the cap is refused at its open with the reason, a closed channel's
    place is usable again, and meanwhile another account logs in and runs `whoami`."""
    harness = start_gateway(make_settings(max_sessions_per_connection=10, max_sessions_per_account=50,
                                          channel_request_timeout=60.0))
    register_account(harness, "alice", user_keys["alice"], token=upstream.token)
    register_account(harness, "bob", user_keys["bob"], token=upstream.token)
    bob = ssh_client(user_keys["bob"], harness=harness)

    async def flood() -> tuple[list, subprocess.CompletedProcess, bool]:
        key = asyncssh.read_private_key(str(user_keys["alice"].path))
        async with asyncssh.connect("127.0.0.1", harness.port, username="submit", client_keys=[key],
                                    known_hosts=None, agent_path=None) as conn:
            held = [await open_bare_session(conn) for _ in range(10)]
            refused = await asyncio.gather(*(open_bare_session(conn) for _ in range(300)), return_exceptions=True)
            whoami = await asyncio.get_running_loop().run_in_executor(None, lambda: bob.run("whoami"))
            held[0][0].close()
            await held[0][0].wait_closed()
            reopened = await open_bare_session(conn)
            return refused, whoami, reopened is not None

    refused, whoami, reopened = asyncio.run(flood())
    assert all(isinstance(r, asyncssh.ChannelOpenError) for r in refused)
    assert {r.code for r in refused} == {asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED}
    assert {r.reason for r in refused} == {
        "this connection of account 'alice' already has 10 session channels open; close one first, "
        "or open a new connection"}
    assert whoami.returncode == 0 and b"account:  bob" in whoami.stdout
    assert reopened
