"""Revocation and disabling reach connections that are already logged in, within key_cache_seconds,
on every replica: through a real OpenSSH ControlMaster the next multiplexed session is refused with
the reason, an upload not yet forwarded is refused, one already being forwarded finishes, and the
connection is closed once it has no session left. The check costs one registry query per distinct
key, not one per connection."""

from __future__ import annotations

import subprocess
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import event

from gateway.limits import Login
from gateway.ssh.revocation import recheck_logins
from migrate.cli import cli
from testbed import legacyrequests as lr
from tests.helpers import recorded_events, register_account, wait_until

INACTIVE = b"is no longer active for account 'alice' (revoked, or the account is disabled)"


class ControlMaster:
    """A real OpenSSH ControlMaster (ControlPersist) for one gateway, and sessions multiplexed over it."""

    def __init__(self, client, path: Path):
        self.client = client
        self.path = path

    def _argv(self, *extra: str) -> list[str]:
        return [*self.client.argv("-o", f"ControlPath={self.path}", *extra), "-T", "-l", "submit", "127.0.0.1"]

    def start(self) -> "ControlMaster":
        started = subprocess.run(self._argv("-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-N"),
                                 capture_output=True, timeout=30)
        assert started.returncode == 0, started.stderr
        assert self.running()
        return self

    def running(self) -> bool:
        return subprocess.run(self._argv("-O", "check"), capture_output=True, timeout=30).returncode == 0

    def session(self, *command: str, data: bytes = b"") -> subprocess.CompletedProcess:
        """One session over the master (never a connection of its own: ControlMaster=no, and the
        test checks the master is the one answering)."""
        return subprocess.run([*self._argv("-o", "ControlMaster=no"), *command], input=data,
                              capture_output=True, timeout=60)

    def open_session(self) -> subprocess.Popen:
        """A session left open, its stdin a pipe: an upload whose request has not all arrived."""
        return subprocess.Popen(self._argv("-o", "ControlMaster=no"), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(self) -> None:
        subprocess.run(self._argv("-O", "exit"), capture_output=True, timeout=30)


def _cli(harness, *args: str):
    settings = harness.settings
    return CliRunner().invoke(cli, ["--set", f"database_url={settings.database_url}",
                                    "--set", f"secret_key_file={settings.secret_key_file}", *args])


def _forwarding_rows(harness) -> list:
    return [e for e in recorded_events(harness.registry) if e.outcome == "forwarding"]


def test_revocation_reaches_a_controlmaster(gateway, alice, ssh_client, user_key, upstream, tmp_path,
                                            project_name):
    """After `keys revoke`, the next session over a ControlMaster is refused with the reason, an upload not
    yet forwarded is refused, one being forwarded finishes, and the master is closed once idle."""
    master = ControlMaster(ssh_client(), tmp_path / "cm").start()
    waiting = forwarding = None
    try:
        assert master.session("whoami").stdout.startswith(b"account:  alice")
        sessions = gateway.services.limits.sessions
        waiting = master.open_session()  # its request will come only after the revocation
        forwarded_name, refused_name = project_name + "-fw", project_name + "-late"
        upstream.set_fault(delay=12, count=1)  # the upload server sits on the first upload for a while
        forwarding = master.open_session()
        forwarding.stdin.write(lr.python3_upload(forwarded_name, "1.0", lr.make_sdist(forwarded_name, "1.0")))
        forwarding.stdin.flush()
        wait_until(lambda: sessions.held("alice") == 2, what="both sessions")
        wait_until(lambda: _forwarding_rows(gateway), what="the upload to be forwarded")

        revoked = _cli(gateway, "keys", "revoke", user_key.fingerprint)
        assert revoked.exit_code == 0, revoked.output
        refused = wait_until(lambda: (r := master.session("whoami")).returncode != 0 and r,
                             what="the next multiplexed session to be refused")
        assert INACTIVE in refused.stderr and user_key.fingerprint.encode() in refused.stderr
        assert master.running()  # refused by the gateway through the master, not a new login
        assert forwarding.poll() is None and _forwarding_rows(gateway)  # still being forwarded meanwhile

        late = lr.python3_upload(refused_name, "1.0", lr.make_sdist(refused_name, "1.0"))
        out, err = waiting.communicate(late, timeout=60)
        assert out.startswith(b"HTTP/1.0 403 ") and INACTIVE in err and b"nothing was published" in err
        out, err = forwarding.communicate(timeout=60)
        assert out.startswith(b"HTTP/1.0 200 "), err  # in flight when the revocation came: it finishes
        files = upstream.files()
        assert any(forwarded_name.lower().replace("-", "_") in name for name in files)
        assert not any(refused_name.lower().replace("-", "_") in name for name in files)
        wait_until(lambda: not master.running(), what="the revoked master to be closed once idle")
    finally:
        for process in (waiting, forwarding):
            if process is not None:
                with process:  # its pipes closed and the client reaped
                    process.kill()
        master.stop()
    outcomes = sorted(e.outcome for e in recorded_events(gateway.registry))
    assert outcomes == ["forwarded", "refused_policy"]


def test_disabling_reaches_every_replica(start_gateway, settings, ssh_client, user_key, upstream, tmp_path):
    """Two replicas on one registry: `accounts disable` refuses the next session over a ControlMaster on each."""
    replicas = [start_gateway(settings), start_gateway(settings)]
    register_account(replicas[0], "alice", user_key, token=upstream.token)
    masters = [ControlMaster(ssh_client(harness=r), tmp_path / f"cm{i}").start() for i, r in enumerate(replicas)]
    held = []
    try:
        for master, replica in zip(masters, replicas):
            assert master.session("whoami").returncode == 0
            held.append(master.open_session())  # keeps the connection busy, so it stays open
            wait_until(lambda: replica.services.limits.sessions.held("alice") == 1, what="a held session")
        assert _cli(replicas[1], "accounts", "disable", "alice").exit_code == 0
        for master in masters:
            refused = wait_until(lambda: (r := master.session("whoami")).returncode != 0 and r,
                                 what="the next session to be refused")
            assert INACTIVE in refused.stderr
    finally:
        for process in held:
            with process:  # its pipes closed and the client reaped
                process.kill()
        for master in masters:
            master.stop()


def test_an_idle_revoked_connection_is_closed(gateway, alice, ssh_client, user_key, tmp_path):
    """A ControlMaster with no session is closed once its key is revoked, and the master knows why."""
    master = ControlMaster(ssh_client(), tmp_path / "cm").start()
    try:
        gateway.registry.keys.revoke_key(user_key.fingerprint)
        wait_until(lambda: not master.running(), what="the idle master to be closed")
        assert len(gateway.services.limits.connections) == 0
        after = master.session("whoami")  # no master left: a login of its own, refused
        assert after.returncode == 255 and b"Permission denied" in after.stderr
    finally:
        master.stop()


def test_the_check_asks_the_registry_once_per_distinct_key(start_gateway, make_settings, ssh_client, user_keys,
                                                           upstream, tmp_path):
    """Four open connections with two keys cost one registry query per check, whatever their number."""
    harness = start_gateway(make_settings(key_cache_seconds=600))  # only the explicit check below runs
    register_account(harness, "alice", user_keys["alice"], token=upstream.token)
    register_account(harness, "bob", user_keys["bob"], token=upstream.token)
    masters = [ControlMaster(ssh_client(user_keys[name], harness=harness), tmp_path / f"cm-{name}{i}").start()
               for name in ("alice", "bob") for i in range(2)]
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "ssh_keys" in statement:
            statements.append(statement)

    engine = harness.registry.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert len(harness.services.limits.connections) == 4
        assert harness.call(recheck_logins(harness.services)) == 0
        assert len(statements) == 1 and " IN " in statements[0]
        harness.registry.keys.revoke_key(user_keys["bob"].fingerprint)
        statements.clear()
        assert harness.call(recheck_logins(harness.services)) == 2  # both of bob's connections
        assert len(statements) == 1
        wait_until(lambda: len(harness.services.limits.connections) == 2, what="bob's masters to close")
    finally:
        event.remove(engine, "before_cursor_execute", count)
        for master in masters:
            master.stop()


def test_a_login_during_the_check_is_not_taken_for_revoked(gateway, alice, ssh_client, user_keys, tmp_path):
    """A connection that logs in while the check's query runs (with a key the query did not ask
    about) keeps its sessions; before the fix a busy replica refused such logins as revoked."""
    register_account(gateway, "bob", user_keys["bob"])
    master = ControlMaster(ssh_client(), tmp_path / "cm-alice").start()
    late = []
    keys = gateway.services.keys
    real_refresh = keys.refresh

    class Conn:
        revoked = False

        def revoke(self):
            self.revoked = True

    def refresh_while_bob_logs_in(fingerprints):
        answers = real_refresh(fingerprints)
        bob = gateway.registry.keys.identity_for_key(user_keys["bob"].fingerprint)
        conn = Conn()
        late.append(conn)
        gateway.services.limits.connections.admit(conn, Login(bob.account_id, "bob", bob.fingerprint))
        return answers

    keys.refresh = refresh_while_bob_logs_in
    try:
        assert user_keys["bob"].fingerprint not in gateway.services.limits.connections.fingerprints()
        assert gateway.call(recheck_logins(gateway.services)) == 0
        assert late and not late[0].revoked
        assert master.session("whoami").stdout.startswith(b"account:  alice")
    finally:
        keys.refresh = real_refresh
        for conn in late:
            gateway.services.limits.connections.release(conn)
        master.stop()
