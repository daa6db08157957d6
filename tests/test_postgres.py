"""The registry behaves the same on SQLite and PostgreSQL, its schema comes from the Alembic
migrations on both, and a PostgreSQL restart heals without restarting the gateway."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from gateway.cli import cli
from gateway.errors import RegistryDown
from gateway.keycache import KeyCache
from gateway.registry import AdminInputError, Registry, UploadEvent
from gateway.registry.engine import database_hosts, sqlalchemy_url
from gateway.registry.migrate_db import CURRENT, head_revision, schema_state, upgrade
from gateway.registry.replication import is_multi_host
from gateway.sshkeys import parse_public_key
from testbed import pgserver, postgres
from tests.helpers import recorded_events

pytestmark = pytest.mark.skipif(postgres.unavailable_reason() is not None, reason="PostgreSQL is not running")

UTC = dt.UTC


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    """An empty database of each kind, fresh for this module."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'registry.sqlite3'}"
        return
    with postgres.temporary_database("pypissh_test") as url:
        yield url


@pytest.fixture(scope="module")
def registry(database_url) -> Registry:
    upgrade(database_url)
    registry = Registry.from_url(database_url)
    yield registry
    registry.engine.dispose()


def test_db_upgrade_command_creates_the_schema(tmp_path):
    """`pypissh-gateway db upgrade` brings an empty SQLite and PostgreSQL database to the head revision."""
    with postgres.temporary_database("pypissh_test") as pg_url:
        for url in (f"sqlite:///{tmp_path / 'fresh.sqlite3'}", pg_url):
            runner = CliRunner()
            first = runner.invoke(cli, ["--set", f"database_url={url}", "db", "upgrade"])
            assert first.exit_code == 0, first.output
            assert f"database at revision {head_revision()}" in first.output
            assert schema_state(url)[0] == CURRENT
            again = runner.invoke(cli, ["--set", f"database_url={url}", "db", "upgrade"])
            assert again.exit_code == 0, again.output
            engine = Registry.from_url(url).engine
            tables = set(inspect(engine).get_table_names())
            engine.dispose()
            assert {"accounts", "ssh_keys", "upload_events", "schedule_windows", "notification_sends"} <= tables


def test_accounts_round_trip(registry):
    """Accounts: create, find, update, list, and a duplicate name is refused with a useful message."""
    registry.accounts.add_account("carol", email="carol@example.org", note="maintainer of old things")
    with pytest.raises(AdminInputError, match="already exists"):
        registry.accounts.add_account("carol")
    registry.accounts.update_account("carol", exempt=True)
    carol = registry.accounts.get_account("carol")
    assert (carol.email, carol.exempt, carol.disabled, carol.note) == (
        "carol@example.org", True, False, "maintainer of old things")
    assert carol.created_at.tzinfo is not None
    assert "carol" in [a.name for a in registry.accounts.list_accounts()]
    assert registry.accounts.find_account("nobody") is None


def test_keys_and_identity_lookup(registry, user_keys):
    """A key maps to its account's identity until it is revoked or the account is disabled."""
    registry.accounts.add_account("dave", email="dave@example.org")
    key = parse_public_key(user_keys["bob"].public_line)
    registry.keys.add_key("dave", key, allowed_projects=["dave-tools"])
    with pytest.raises(AdminInputError, match="already registered to account 'dave'"):
        registry.keys.add_key("dave", key)
    registry.accounts.set_token_ciphertext("dave", "sealed-token")
    identity = registry.keys.identity_for_key(key.fingerprint)
    assert identity is not None
    assert (identity.account_name, identity.fingerprint, identity.token_ciphertext, identity.allowed_projects) == (
        "dave", key.fingerprint, "sealed-token", ("dave-tools",))
    registry.accounts.update_account("dave", disabled=True)
    assert registry.keys.identity_for_key(key.fingerprint) is None
    registry.accounts.update_account("dave", disabled=False)
    assert registry.keys.identity_for_key(key.fingerprint) is not None
    registry.keys.revoke_key(key.fingerprint)
    assert registry.keys.identity_for_key(key.fingerprint) is None
    with pytest.raises(AdminInputError, match="already revoked"):
        registry.keys.revoke_key(key.fingerprint)
    assert [k.fingerprint for k in registry.keys.list_keys("dave", include_revoked=False)] == []


def test_an_event_written_before_forwarding_is_completed_in_place(registry):
    """An upload's "forwarding" row is updated by the second write, never duplicated, on both databases."""
    registry.accounts.add_account("fran")
    account = registry.accounts.get_account("fran")
    at = dt.datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
    event = UploadEvent(at=at, outcome="forwarding", account_id=account.id, account_name="fran",
                        action="file_upload", project="fran-pkg", filename="fran_pkg-1.0.tar.gz")
    registry.events.record(event)
    assert [e.outcome for e in recorded_events(registry, account_name="fran")] == ["forwarding"]
    event.outcome, event.upstream_status, event.duration_ms = "forwarded", 200, 512
    registry.events.record(event)
    (back,) = recorded_events(registry, account_name="fran")
    assert back == event and back.outcome == "forwarded" and back.upstream_status == 200


def test_events_round_trip(registry):
    """An upload event reads back field for field, its time still in UTC."""
    registry.accounts.add_account("erin")
    account = registry.accounts.get_account("erin")
    at = dt.datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)
    event = UploadEvent(at=at, outcome="forwarded", account_id=account.id, account_name="erin",
                        key_fingerprint="SHA256:x", client_addr="2001:db8::7", ssh_client_version="SSH-2.0-OpenSSH_9.2",
                        user_agent="Python-urllib/3.11", action="file_upload", project="erin-pkg", version="1.0",
                        filename="erin_pkg-1.0.tar.gz", size=1234, sha256="ab" * 32, upstream_status=200,
                        duration_ms=87, legacy_crypto=True, replica="host:1")
    registry.events.record(event)
    (back,) = recorded_events(registry, account_name="erin")
    assert back == event
    activity = registry.events.account_activity(account.id)
    assert activity["last_use"] == at
    assert activity["projects"] == [{"name": "erin-pkg", "last": at, "uploads": 1}]


def test_schedule_round_trip(registry):
    """Schedule windows: added, ended, cancelled, read back in order."""
    start = dt.datetime(2030, 1, 1, tzinfo=UTC)
    first = registry.schedule.add_window("brownout", start, start + dt.timedelta(hours=1), note="first")
    second = registry.schedule.add_window("sunset", start + dt.timedelta(days=30))
    registry.schedule.end_window(second, start + dt.timedelta(days=31))
    windows = [w for w in registry.schedule.windows() if w.id in (first, second)]
    assert [(w.kind, w.starts_at, w.ends_at) for w in windows] == [
        ("brownout", start, start + dt.timedelta(hours=1)),
        ("sunset", start + dt.timedelta(days=30), start + dt.timedelta(days=31)),
    ]
    registry.schedule.cancel_window(first)
    assert first not in [w.id for w in registry.schedule.windows()]
    with pytest.raises(AdminInputError):
        registry.schedule.cancel_window(first)


@pytest.mark.parametrize("form", ["host parameters", "libpq host list"])
def test_multi_host_url_reaches_the_writable_server(form):
    """A libpq multi-host URL (primary/replica failover), in either spelling, passes through: a dead
    first host is skipped."""
    with postgres.temporary_database("pypissh_test") as url:
        name = url.rsplit("/", 1)[1]
        hosts = ["127.0.0.1:1", f"{postgres.HOST}:{postgres.PORT}"]
        if form == "host parameters":
            failover = f"postgresql://postgres@/{name}?host={hosts[0]}&host={hosts[1]}&target_session_attrs=read-write"
        else:
            failover = f"postgresql://postgres@{','.join(hosts)}/{name}?target_session_attrs=read-write"
        assert database_hosts(failover) == hosts
        upgrade(failover)
        registry = Registry.from_url(failover)
        registry.accounts.add_account("gina")
        assert registry.accounts.get_account("gina").name == "gina"
        registry.engine.dispose()


def test_libpq_host_list_becomes_host_parameters():
    """`h1,h2` in the authority (which SQLAlchemy cannot parse) becomes repeated host= parameters,
    before the URL's own, with the login kept; single-host and SQLite URLs are left alone."""
    assert sqlalchemy_url("postgresql://gw:pw@db1:5432,db2:5433/reg?target_session_attrs=read-write") == (
        "postgresql+psycopg://gw:pw@/reg?host=db1:5432&host=db2:5433&target_session_attrs=read-write")
    assert sqlalchemy_url("postgresql://db1,db2/reg") == "postgresql+psycopg:///reg?host=db1&host=db2"
    assert sqlalchemy_url("postgresql://gw@db1:5432/reg") == "postgresql+psycopg://gw@db1:5432/reg"
    assert sqlalchemy_url("sqlite:////var/lib/reg.sqlite3") == "sqlite:////var/lib/reg.sqlite3"


def test_only_a_url_naming_several_hosts_gets_the_per_host_check():
    """`check` reports each host's role for a multi-host URL; one host, SQLite and a URL it cannot
    parse (which the registry finding reports) get no such lines."""
    assert is_multi_host("postgresql://gw@db1:5432,db2:5432/reg?target_session_attrs=read-write")
    assert is_multi_host("postgresql://gw@/reg?host=db1&host=db2")
    assert not is_multi_host("postgresql://gw@db1:5432/reg")
    assert not is_multi_host("postgresql://gw@db1:port/reg")
    assert not is_multi_host("sqlite:////var/lib/reg.sqlite3")


@pytest.mark.serial
@pytest.mark.skipif(not pgserver.installed(), reason="needs pg_ctlcluster to restart PostgreSQL")
def test_restart_heals_without_a_new_engine(user_keys):
    """During an outage key lookups fail with a clear error; after a restart the same engine works."""
    with postgres.temporary_database("pypissh_test") as url:
        upgrade(url)
        registry = Registry.from_url(url)
        registry.accounts.add_account("frank")
        key = parse_public_key(user_keys["alice"].public_line)
        registry.keys.add_key("frank", key)
        lookup = KeyCache(registry.keys.identity_for_key, ttl=0)
        assert lookup.identity(key.fingerprint).account_name == "frank"
        with pgserver.outage(), pytest.raises(RegistryDown, match="cannot reach its account registry"):
            lookup.identity(key.fingerprint)
        # The pool still holds connections to the old server process: pre-ping replaces them.
        assert lookup.identity(key.fingerprint).account_name == "frank"
        pgserver.restart()
        assert registry.ping()
        assert lookup.identity(key.fingerprint).account_name == "frank"
        registry.engine.dispose()
