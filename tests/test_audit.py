"""The admin journal: an entry after each change made through either CLI, with the actor, the
reason and the values before and after; `audit` lists it as a table, JSON and CSV; the schema
comes from its Alembic migration."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import pwd
import socket

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from gateway.cli import cli as gateway_cli
from gateway.registry import Registry, UploadEvent
from gateway.registry.migrate_db import head_revision, upgrade
from gateway.registry.schema import metadata
from gateway.ssh import hostkeys
from migrate.cli import cli
from migrate.commands.audit import describe_change
from testbed.clock import invoke_at
from tests.conftest import ADMIN_NOW
from tests.test_migrate_accounts_keys import DATA, KEYS, TOKEN

from tests.helpers import BOX_DRAWING, ok as _ok


def _me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _newest(registry: Registry):
    return registry.audit.entries()[-1]


def test_account_and_key_commands_each_leave_an_entry_with_the_actor(admin, tmp_path):
    """accounts add/update/disable/enable/set-token and keys add/revoke/restore: one entry each,
    with the OS user, the host, the command, the reason and the values before and after."""
    invoke, registry = admin
    key_file = tmp_path / "alice.pub"
    key_file.write_text(KEYS["bob"] + "\n")
    fingerprint = None
    steps = [
        (("accounts", "add", "alice", "--email", "alice@example.org", "--reason", "ticket 1"),
         "account", "alice", None, {"email": "alice@example.org", "disabled": False, "exempt": False,
                                    "note": None, "token": "none"}),
        (("accounts", "update", "alice", "--exempt", "--reason", "ticket 2"),
         "account", "alice", {"exempt": False}, {"exempt": True}),
        (("accounts", "disable", "alice", "--reason", "ticket 3"), "account", "alice",
         {"disabled": False}, {"disabled": True}),
        (("accounts", "enable", "alice", "--reason", "ticket 4"), "account", "alice",
         {"disabled": True}, {"disabled": False}),
        (("accounts", "set-token", "alice", "--token-file", "-", "--reason", "ticket 5"), "account", "alice",
         {"token": "none"}, {"token": "set"}),
        (("keys", "add", "alice", str(key_file), "--reason", "ticket 6"), "key", None, None, {"state": "active"}),
        (("keys", "revoke", "FP", "--reason", "ticket 7"), "key", None, {"state": "active"}, {"state": "revoked"}),
        (("keys", "restore", "FP", "--reason", "ticket 8"), "key", None, {"state": "revoked"}, {"state": "active"}),
        (("accounts", "set-token", "alice", "--clear", "--reason", "ticket 9"), "account", "alice",
         {"token": "stored"}, {"token": "none"}),
    ]
    for number, (args, kind, target, before, after) in enumerate(steps, 1):
        args = tuple(fingerprint if arg == "FP" else arg for arg in args)
        _ok(invoke(*args, input=TOKEN + "\n"))
        entries = registry.audit.entries()
        assert len(entries) == number, args
        entry = entries[-1]
        assert (entry.actor, entry.actor_host, entry.reason) == (_me(), socket.gethostname(), f"ticket {number}")
        assert entry.command == "pypissh-migrate " + " ".join(args[:2])
        assert entry.target_kind == kind and entry.account_name == "alice"
        assert entry.at.isoformat() == "2027-03-01T10:00:00+00:00"
        if kind == "key":
            fingerprint = fingerprint or entry.target
            assert entry.target.startswith("SHA256:")
        else:
            assert entry.target == target
        if before is not None:
            assert {k: entry.before[k] for k in before} == before
        else:
            assert entry.before is None
        assert {k: entry.after[k] for k in after} == after


def test_a_token_never_reaches_the_journal(admin):
    """`accounts add --token-file` and `set-token` record that a token was set, never the token or its ciphertext."""
    invoke, registry = admin
    _ok(invoke("accounts", "add", "alice", "--token-file", "-", input=TOKEN + "\n"))
    _ok(invoke("accounts", "set-token", "alice", "--token-file", "-", input=TOKEN + "\n"))
    (_id, ciphertext), = registry.accounts.token_ciphertexts()
    text = json.dumps([vars(entry) for entry in registry.audit.entries()], default=str)
    assert TOKEN not in text and ciphertext not in text
    assert [entry.after.get("token") for entry in registry.audit.entries()] == ["none", "set", "set"]


def test_schedule_changes_are_journalled(admin):
    """Every schedule change is an entry: notice, sunset (moved), brownout added and cancelled, pause, resume."""
    invoke, registry = admin
    _ok(invoke("schedule", "set-notice", "2027-03-02 00:00"))
    _ok(invoke("schedule", "set-sunset", "2027-09-01 00:00"))
    _ok(invoke("schedule", "set-sunset", "2027-10-01 00:00"))
    _ok(invoke("schedule", "add-brownout", "2027-06-01 14:00", "--for", "2h"))
    _ok(invoke("schedule", "cancel-brownout", "4"))
    _ok(invoke("schedule", "pause", "--yes", "--note", "incident"))
    _ok(invoke("schedule", "resume", now="2027-03-01 11:00"))
    entries = registry.audit.entries()
    assert [(e.command.split()[-1], e.target) for e in entries] == [
        ("set-notice", "notice"), ("set-sunset", "sunset"), ("set-sunset", "sunset"), ("add-brownout", "brownout 4"),
        ("cancel-brownout", "brownout 4"), ("pause", "pause 5"), ("resume", "pause 5")]
    moved = entries[2]
    assert (moved.before["starts_at"], moved.after["starts_at"]) == ("2027-09-01T00:00:00Z", "2027-10-01T00:00:00Z")
    assert (entries[4].before["state"], entries[4].after["state"]) == ("set", "cancelled")
    assert (entries[6].before["ends_at"], entries[6].after["ends_at"]) == (None, "2027-03-01T11:00:00Z")


def test_reason_given_before_the_command_is_recorded(admin):
    """The group-level `pypissh-migrate --reason TEXT` applies to the command's changes."""
    invoke, registry = admin
    _ok(invoke("--reason", "moving the sunset after the board's decision", "schedule", "set-sunset",
               "2027-09-01 00:00"))
    assert _newest(registry).reason == "moving the sunset after the board's decision"
    empty = invoke("--reason", "  ", "accounts", "add", "bob")
    assert empty.exit_code != 0 and "give a reason in words" in empty.output
    assert registry.accounts.find_account("bob") is None


def test_import_legacy_records_one_summary(admin):
    """import-legacy writes one entry with its counts, not one per account or key."""
    invoke, registry = admin
    _ok(invoke("import-legacy", "--authorized-keys", str(DATA / "authorized_keys"), "--users",
               str(DATA / "users.csv"), "--reason", "migration day"))
    (entry,) = registry.audit.entries()
    assert (entry.target_kind, entry.target, entry.reason) == ("import", "authorized_keys, users.csv", "migration day")
    assert entry.after["accounts_created"] == len(registry.accounts.list_accounts())
    assert entry.after["keys_added"] == len(registry.keys.list_keys())
    _ok(invoke("import-legacy", "--authorized-keys", str(DATA / "authorized_keys"), "--dry-run"))
    assert len(registry.audit.entries()) == 1  # a dry run changes nothing and records nothing


def test_rotate_secret_records_each_step_without_keys(admin, tmp_path):
    """rotate-secret's steps are journalled with their counts; no key appears in the journal."""
    invoke, registry = admin
    _ok(invoke("accounts", "add", "alice", "--token-file", "-", input=TOKEN + "\n"))
    new_key = tmp_path / "new.key"
    _ok(invoke("rotate-secret", "--new-key-file", str(new_key)))
    _ok(invoke("rotate-secret", "--retire-old", "--yes"))
    rotate, retire = [e for e in registry.audit.entries() if e.target_kind == "secret_key"]
    assert (rotate.after["step"], rotate.after["tokens_resealed"]) == ("rotate", 1)
    assert (retire.after["step"], retire.after["keys_dropped"]) == ("retire-old", 1)
    key_text = new_key.read_text().strip()
    assert key_text not in json.dumps([vars(e) for e in registry.audit.entries()], default=str)


def test_notify_run_records_the_campaign_and_counts(admin):
    """A notify run is one entry naming the campaign, the audience and what was sent or skipped."""
    from aiosmtpd.controller import Controller

    from tests.test_notify import Mailbox
    from testbed import free_port

    invoke, registry = admin
    _ok(invoke("accounts", "add", "alice", "--email", "alice@example.org"))
    _ok(invoke("accounts", "add", "bob"))
    controller = Controller(Mailbox(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        result = invoke_at(ADMIN_NOW, cli, [*invoke.sets, "--set", f"smtp_url=smtp://127.0.0.1:{controller.port}",
                                            "notify", "--campaign", "announce", "--all",
                                            "--reason", "first announcement"])
    finally:
        controller.stop()
    _ok(result)
    entry = _newest(registry)
    assert (entry.target_kind, entry.target, entry.reason) == ("campaign", "announce", "first announcement")
    assert (entry.after["audience"], entry.after["sent"], entry.after["failed"]) == ("all accounts", 1, 0)
    assert sum(entry.after["skipped"].values()) == 1


def test_prune_is_journalled(admin):
    """prune records the cut-off and the counts."""
    invoke, registry = admin
    account = registry.accounts.add_account("alice")
    for day in (1, 2):
        registry.events.record(UploadEvent(at=dt.datetime(2025, 1, day, tzinfo=dt.timezone.utc), outcome="forwarded",
                                           account_id=account.id, account_name="alice"))
    _ok(invoke("prune", "--before", "400d", "--yes", "--reason", "retention policy"))
    entry = _newest(registry)
    assert (entry.target_kind, entry.reason) == ("events", "retention policy")
    assert entry.after == {"before": "2026-01-25T10:00:00Z", "deleted": 1, "batches": 1, "kept_latest": 1,
                           "remaining": 1}


def test_host_key_promotion_is_journalled(admin):
    """keygen --next and --promote are recorded with the files moved and the fingerprints now served."""
    invoke, registry = admin
    keys = invoke.tmp / "keys"
    hostkeys.generate(keys)

    def gateway(*args: str):
        return CliRunner().invoke(gateway_cli, [*invoke.sets, *args])

    _ok(gateway("keygen", "--next", "--reason", "yearly rotation"))
    _ok(gateway("keygen", "--promote", "--reason", "yearly rotation"))
    staged, promoted = registry.audit.entries()
    assert (staged.command, staged.after["step"]) == ("pypissh-gateway keygen", "next")
    assert (promoted.after["step"], promoted.target, promoted.reason) == ("promote", str(keys), "yearly rotation")
    assert "ssh_host_ed25519_next_key -> ssh_host_ed25519_key" in promoted.after["files"]
    assert promoted.after["fingerprints"] == hostkeys.fingerprints(keys)


def test_host_key_promotion_without_a_registry_says_so_and_promotes(tmp_path):
    """Without a registry, keygen --promote still promotes and says in one line that nothing was recorded."""
    keys = tmp_path / "keys"
    hostkeys.generate(keys)
    hostkeys.generate(keys, next_keys=True)
    missing = tmp_path / "none.sqlite3"
    result = CliRunner().invoke(gateway_cli, ["--set", f"database_url=sqlite:///{missing}",
                                              "--set", f"host_key_dir={keys}", "keygen", "--promote"])
    assert result.exit_code == 0, result.output
    assert f"not recorded in the admin journal: no registry of the current schema at sqlite:///{missing}" in result.output
    assert not (keys / "ssh_host_ed25519_next_key").exists() and not missing.exists()


def test_schema_creation_and_migration_are_journalled(tmp_path):
    """`db upgrade` records the schema it created (or the revisions it migrated between), once."""
    url = f"sqlite:///{tmp_path / 'new.sqlite3'}"

    def upgrade_command():
        return CliRunner().invoke(gateway_cli, ["--set", f"database_url={url}", "db", "upgrade",
                                                "--reason", "first install"])

    _ok(upgrade_command())
    _ok(upgrade_command())
    registry = Registry.from_url(url)
    try:
        (entry,) = registry.audit.entries()
    finally:
        registry.close()
    assert (entry.command, entry.target_kind, entry.target, entry.reason) == (
        "pypissh-gateway db upgrade", "schema", url, "first install")
    assert (entry.before, entry.after) == (None, {"revision": head_revision()})


# -- `pypissh-migrate audit` ----------------------------------------------------------------------
def _history(invoke) -> None:
    key_file = invoke.tmp / "bob.pub"
    key_file.write_text(KEYS["bob"] + "\n")
    _ok(invoke("accounts", "add", "alice", now="2026-11-01 09:00"))
    _ok(invoke("accounts", "add", "bob", now="2027-02-20 09:00"))
    _ok(invoke("keys", "add", "bob", str(key_file), "--reason", "new laptop", now="2027-02-21 09:00"))
    _ok(invoke("accounts", "disable", "alice", now="2027-02-22 09:00"))


def test_audit_lists_the_journal_as_a_plain_table(admin):
    """`audit` prints when, who, what and why; piped, the table has no box drawing; --since 90d leaves older out."""
    invoke, _registry = admin
    _history(invoke)
    result = invoke("audit")
    _ok(result)
    assert not BOX_DRAWING & set(result.output)
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["at", "(UTC)", "actor"]
    assert len(lines) == 4  # the header and the three changes of the last 90 days
    assert "2027-02-21 09:00" in lines[2] and "key SHA256:" in lines[2] and "new laptop" in lines[2]
    assert "disabled: no -> yes" in lines[3] and f"{_me()}@" in lines[3]


def test_audit_json_and_csv(admin):
    """`audit --format json` and `--format csv` give every field; --account keeps one account's changes."""
    invoke, _registry = admin
    _history(invoke)
    result = invoke("audit", "--since", "2026-01-01", "--format", "json")
    _ok(result)
    entries = json.loads(result.output)
    assert [e["target"] for e in entries][:2] == ["alice", "bob"]
    assert set(entries[0]) == {"id", "at", "actor", "actor_host", "reason", "command", "target_kind", "target",
                               "account_name", "before", "after"}
    assert entries[0]["at"] == "2026-11-01T09:00:00Z" and entries[0]["actor"] == _me()
    bob = json.loads(invoke("audit", "--since", "2026-01-01", "--account", "bob", "--format", "json").output)
    assert [(e["target_kind"], e["account_name"]) for e in bob] == [("account", "bob"), ("key", "bob")]
    rows = list(csv.DictReader(io.StringIO(invoke("audit", "--since", "2026-01-01", "--format", "csv").output)))
    assert len(rows) == 4 and json.loads(rows[3]["after"])["disabled"] is True
    assert rows[2]["reason"] == "new laptop"


def test_audit_says_when_nothing_was_recorded(admin):
    """An empty journal is one line saying so and how to look further back."""
    invoke, _registry = admin
    result = invoke("audit", "--account", "nobody")
    _ok(result)
    assert "no change recorded for account 'nobody' since 2026-12-01 10:00 UTC" in result.output


def test_describe_change_names_what_changed():
    """A change reads `name: old -> new`; a new target lists its values; a removed one what it was."""
    assert describe_change({"disabled": False, "email": "a@x"}, {"disabled": True, "email": "a@x"}) == \
        "disabled: no -> yes"
    assert describe_change(None, {"state": "active", "comment": None}) == "state: active"
    assert describe_change({"kind": "sunset"}, None) == "removed (was kind: sunset)"


def test_migrations_create_the_schema_the_code_describes(tmp_path):
    """`db upgrade` makes exactly the tables, columns and indexes of gateway/registry/schema.py."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    registry = Registry.from_url(url)
    try:
        with registry.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        registry.close()
    assert differences == []


def test_every_changing_command_takes_a_reason():
    """Each pypissh-migrate command that changes something, and keygen, init and db upgrade, accept --reason."""
    changing = [("accounts", "add"), ("accounts", "update"), ("accounts", "disable"), ("accounts", "enable"),
                ("accounts", "set-token"), ("keys", "add"), ("keys", "revoke"), ("keys", "restore"),
                ("schedule", "set-notice"), ("schedule", "set-sunset"), ("schedule", "add-brownout"),
                ("schedule", "cancel-brownout"), ("schedule", "pause"), ("schedule", "resume"),
                ("import-legacy",), ("rotate-secret",), ("notify",), ("prune",)]
    for path in changing:
        command = cli
        for name in path:
            command = command.commands[name]
        assert "--reason" in [opt for param in command.params for opt in param.opts], path
    for command in (gateway_cli.commands["keygen"], gateway_cli.commands["init"],
                    gateway_cli.commands["db"].commands["upgrade"]):
        assert "--reason" in [opt for param in command.params for opt in param.opts], command.name


def test_the_shipped_command_has_no_way_to_set_its_clock(tmp_path):
    """`pypissh-migrate --now TIME ...` is refused as an unknown option and changes nothing; a
    change made right after is journalled at the real time, not at a backdated one."""
    from tests.cli import environment, prepare_home, run_cli

    home = prepare_home(tmp_path / "home", [(("pypissh-gateway", "init"), ""),
                                            (("pypissh-migrate", "accounts", "add", "bob"), "")])
    env = environment(PYPISSH_HOME=str(home))
    forged = run_cli("pypissh-migrate", "--now", "2020-01-01T00:00:00Z", "accounts", "disable", "bob", env=env)
    assert forged.returncode == 2 and "No such option '--now'" in forged.stderr
    registry = Registry.from_url(f"sqlite:///{home}/pypissh.sqlite3")
    try:
        assert registry.accounts.get_account("bob").disabled is False
        before = dt.datetime.now(dt.timezone.utc)
        assert run_cli("pypissh-migrate", "accounts", "disable", "bob", env=env).returncode == 0
        after = dt.datetime.now(dt.timezone.utc)
        entry = _newest(registry)
        assert (entry.target, entry.after["disabled"]) == ("bob", True)
        assert before - dt.timedelta(seconds=1) <= entry.at <= after + dt.timedelta(seconds=1)
    finally:
        registry.close()


def test_prune_counts_its_days_from_the_real_time(tmp_path):
    """`prune --before 400d` in a process of its own: the cut-off printed is 400 days before the
    real time of the run, whatever the test suite pins elsewhere."""
    from tests.cli import environment, prepare_home, run_cli

    home = prepare_home(tmp_path / "home", [(("pypissh-gateway", "init"), "")])
    env = environment(PYPISSH_HOME=str(home), COLUMNS="200")
    before = dt.datetime.now(dt.timezone.utc)
    done = run_cli("pypissh-migrate", "prune", "--before", "400d", "--yes", env=env)
    after = dt.datetime.now(dt.timezone.utc)
    assert done.returncode == 0, done.stderr
    cutoffs = {(moment - dt.timedelta(days=400)).strftime("%Y-%m-%d %H:%M") for moment in (before, after)}
    assert any(cutoff in done.stdout for cutoff in cutoffs), done.stdout
