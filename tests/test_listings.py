"""Machine-readable listings: every `--format json` output parses and carries the same facts as the
table; `--format csv` where the output is a table; piped tables are plain text."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.helpers import BOX_DRAWING, ok as _ok
from tests.test_migrate_accounts_keys import DATA, KEYS, TOKEN


@pytest.fixture
def populated(admin):
    """alice (email, token, an ed25519 key restricted to one project) and bob (disabled, a revoked key)."""
    invoke, registry = admin
    for name, key in (("alice", "bob"), ("bob", "erin")):
        path = invoke.tmp / f"{name}.pub"
        path.write_text(KEYS[key] + "\n")
    _ok(invoke("accounts", "add", "alice", "--email", "alice@example.org", "--token-file", "-", input=TOKEN + "\n"))
    _ok(invoke("keys", "add", "alice", str(invoke.tmp / "alice.pub"), "--project", "Demo_Pkg"))
    _ok(invoke("accounts", "add", "bob", "--exempt"))
    _ok(invoke("keys", "add", "bob", str(invoke.tmp / "bob.pub")))
    _ok(invoke("keys", "revoke", registry.keys.list_keys("bob")[0].fingerprint))
    _ok(invoke("accounts", "disable", "bob"))
    _ok(invoke("schedule", "set-notice", "2027-03-02 00:00"))
    _ok(invoke("schedule", "set-sunset", "2027-09-01 00:00"))
    _ok(invoke("schedule", "add-brownout", "2027-06-01 14:00", "--for", "2h", "--note", "afternoon"))
    return invoke, registry


def _json(result):
    _ok(result)
    return json.loads(result.output)


def _csv(result) -> list[dict]:
    _ok(result)
    return list(csv.DictReader(io.StringIO(result.output)))


def test_accounts_list_as_json_and_csv(populated):
    """`accounts list --format json|csv`: one item per account with its keys, token state and status."""
    invoke, _registry = populated
    data = _json(invoke("accounts", "list", "--format", "json"))
    assert [(a["account"], a["email"], a["keys"], a["token"], a["status"], a["disabled"]) for a in data] == [
        ("alice", "alice@example.org", 1, "stored", "active", False), ("bob", None, 0, None, "disabled", True)]
    assert data[0]["created"].endswith("Z")
    rows = _csv(invoke("accounts", "list", "--format", "csv"))
    assert [(r["account"], r["keys"], r["exempt"], r["email"]) for r in rows] == [
        ("alice", "1", "false", "alice@example.org"), ("bob", "0", "true", "")]


def test_accounts_show_as_json(populated):
    """`accounts show --format json`: the account, its keys and projects; never the token."""
    invoke, registry = populated
    result = invoke("accounts", "show", "alice", "--format", "json")
    data = _json(result)
    assert (data["account"], data["email"], data["token"], data["status"]) == (
        "alice", "alice@example.org", "stored", "active")
    ((key,),) = [data["keys"]]
    assert key["fingerprint"] == registry.keys.list_keys("alice")[0].fingerprint
    assert (key["type"], key["projects"], key["state"]) == ("ssh-ed25519", ["demo-pkg"], "active")
    assert data["projects"] == [] and data["last_use"] is None
    (_id, ciphertext), = registry.accounts.token_ciphertexts()
    assert TOKEN not in result.output and ciphertext not in result.output


def test_keys_list_as_json_and_csv(populated):
    """`keys list --all --format json|csv`: every key with its account, type, projects and state."""
    invoke, _registry = populated
    data = _json(invoke("keys", "list", "--all", "--format", "json"))
    assert [(k["account"], k["state"], k["revoked"] is not None) for k in data] == [
        ("alice", "active", False), ("bob", "revoked", True)]
    rows = _csv(invoke("keys", "list", "--all", "--format", "csv"))
    assert [(r["account"], r["type"], r["projects"], r["state"]) for r in rows] == [
        ("alice", "ssh-ed25519", "demo-pkg", "active"), ("bob", "ecdsa-sha2-nistp256", "", "revoked")]
    assert _json(invoke("keys", "list", "--format", "json"))[0]["account"] == "alice"


def test_schedule_show_as_json_and_csv(populated):
    """`schedule show --format json` has now, the phase, the sunset and the timeline (and, with
    --preview, what users see); csv is the timeline."""
    invoke, _registry = populated
    data = _json(invoke("schedule", "show", "--preview", "--format", "json"))
    assert (data["now"], data["sunset"]) == ("2027-03-01T10:00:00Z", "2027-09-01T00:00:00Z")
    assert [(e["kind"], e["when"]) for e in data["timeline"]] == [
        ("now", "2027-03-01T10:00:00Z"), ("notice", "2027-03-02T00:00:00Z"), ("brownout", "2027-06-01T14:00:00Z"),
        ("sunset", "2027-09-01T00:00:00Z")]
    assert data["timeline"][2]["until"] == "2027-06-01T16:00:00Z" and "afternoon" in data["timeline"][2]["what"]
    assert set(data["preview"]) == {"banner", "headers", "refusal"}
    rows = _csv(invoke("schedule", "show", "--format", "csv"))
    assert [r["kind"] for r in rows] == ["now", "notice", "brownout", "sunset"]
    assert rows[2]["id"] == "3"


def test_import_legacy_summary_as_json(admin):
    """`import-legacy --format json`: the counts, weak keys, accounts without email and each skipped line."""
    invoke, registry = admin
    result = invoke("import-legacy", "--authorized-keys", str(DATA / "authorized_keys"), "--users",
                    str(DATA / "users.csv"), "--format", "json")
    data = _json(result)
    assert data["dry_run"] is False
    assert data["accounts_created"] == len(registry.accounts.list_accounts())
    assert data["keys_added"] == len(registry.keys.list_keys())
    assert data["skipped"] and all(set(s) == {"file", "line", "reason"} for s in data["skipped"])
    again = _json(invoke("import-legacy", "--authorized-keys", str(DATA / "authorized_keys"), "--dry-run",
                         "--format", "json"))
    assert (again["dry_run"], again["accounts_created"], again["keys_added"]) == (True, 0, 0)


def test_piped_tables_are_plain_text(populated):
    """Piped, `accounts list`, `keys list` and `schedule show` draw no box characters, one row per line."""
    invoke, _registry = populated
    for args in (("accounts", "list"), ("keys", "list", "--all"), ("schedule", "show")):
        result = invoke(*args)
        _ok(result)
        assert not BOX_DRAWING & set(result.output), args
    lines = invoke("accounts", "list").output.splitlines()
    assert lines[0].split() == ["account", "email", "keys", "token", "status", "created"]
    assert lines[1].split()[:5] == ["alice", "alice@example.org", "1", "stored", "active"]
