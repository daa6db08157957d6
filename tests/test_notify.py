"""Email campaigns against a real SMTP server (aiosmtpd) started by the tests: recipients,
personalised content, idempotence across re-runs and crashes, dry runs, reminders, transports."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import re
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from gateway.registry import Registry, UploadEvent
from gateway.registry.migrate_db import upgrade
from gateway.sshkeys import parse_public_key
from gateway.upload.index import IndexFile
from migrate.campaigns import Audience, plan_campaign
from migrate.cli import cli
from migrate.mail import Mailer, SmtpTarget, build_message, new_message_id
from testbed import free_port
from testbed.tlsca import make_tls
from testbed.clock import command_at, invoke_at

UTC = dt.timezone.utc
# Every run of `notify` here is told this is the current time (pinned through testbed/clock.py), so what is due,
# active or repeated never depends on the date or the time of day the suite runs at.
NOW = dt.datetime(2027, 3, 1, 10, 0, tzinfo=UTC)
PROJECT_ROOT = Path(__file__).resolve().parent.parent



class Mailbox:
    """aiosmtpd handler keeping every accepted message; it can refuse one recipient once, or hold
    the message with a given number and then drop it (to kill a client mid-message)."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.refuse_once: set[str] = set()
        self.hold_number: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self._count = 0

    async def handle_DATA(self, server, session, envelope):
        self._count += 1
        if self._count == self.hold_number:
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
            return "451 4.3.0 held by the test and dropped"
        recipient = envelope.rcpt_tos[0]
        if recipient in self.refuse_once:
            self.refuse_once.discard(recipient)
            return "450 4.2.1 mailbox busy, try later"
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK queued"

    def recipients(self) -> list[str]:
        return [email.utils.parseaddr(m["To"])[1] for m in self.messages]


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    controller.mailbox = mailbox
    yield controller
    mailbox.release.set()
    controller.stop()


@pytest.fixture
def registry(tmp_path) -> Registry:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    upgrade(url)
    return Registry.from_url(url)


@pytest.fixture
def people(registry, user_keys):
    """alice (active, with a key, a project and a client), bob (inactive), carol (exempt),
    dave (disabled), erin (no email), frank and gina (active, plain)."""
    now = NOW
    registry.accounts.add_account("alice", email="alice@example.org")
    registry.keys.add_key("alice", parse_public_key(user_keys["alice"].public_line))
    registry.accounts.add_account("bob", email="bob@example.org")
    registry.accounts.add_account("carol", email="carol@example.org", exempt=True)
    registry.accounts.add_account("dave", email="dave@example.org")
    registry.accounts.update_account("dave", disabled=True)
    registry.accounts.add_account("erin")
    registry.accounts.add_account("frank", email="frank@example.org")
    registry.accounts.add_account("gina", email="gina@example.org")
    alice = registry.accounts.get_account("alice")
    registry.events.record(UploadEvent(
        at=now - dt.timedelta(days=3), outcome="forwarded", account_id=alice.id, account_name="alice",
        key_fingerprint=user_keys["alice"].fingerprint, user_agent="Python-urllib/2.7",
        ssh_client_version="SSH-2.0-OpenSSH_7.4", action="file_upload", project="alices-tool", version="3.1"))
    for name, days in (("bob", 200), ("frank", 10), ("gina", 20), ("carol", 1), ("dave", 1)):
        account = registry.accounts.get_account(name)
        registry.events.record(UploadEvent(at=now - dt.timedelta(days=days), outcome="forwarded",
                                          account_id=account.id, account_name=name, action="file_upload"))
    registry.schedule.add_window("sunset", dt.datetime(2027, 6, 1, 14, 0, tzinfo=UTC))
    return registry


def run_notify(registry: Registry, smtp, *args: str):
    url = str(registry.engine.url)
    smtp_url = f"smtp://127.0.0.1:{smtp.port}" if smtp is not None else "smtp://127.0.0.1:9"
    return invoke_at(NOW, cli, ["--set", f"database_url={url}", "--set", f"smtp_url={smtp_url}", "notify", *args],
                     catch_exceptions=False)


def test_active_since_picks_the_right_recipients_and_counts_skips(people, smtp):
    """--active-since 90d mails active accounts only and reports each skip reason."""
    result = run_notify(people, smtp, "--campaign", "announce", "--active-since", "90d")
    assert result.exit_code == 0, result.output
    assert sorted(smtp.mailbox.recipients()) == ["alice@example.org", "frank@example.org", "gina@example.org"]
    for line in ("skipped: disabled", "skipped: exempt", "skipped: no email", "skipped: not active in the period"):
        assert line in result.output


def test_message_is_personalised_with_the_accounts_own_evidence(people, smtp, user_keys):
    """The email quotes the account's key, project, client and last use, with the exact sunset."""
    assert run_notify(people, smtp, "--campaign", "announce", "--account", "alice").exit_code == 0
    (message,) = smtp.mailbox.messages
    assert message["Subject"] == "Uploads over SSH end on 2027-06-01 14:00 UTC: switch 'alice' to twine"
    assert message["X-PyPISSH-Campaign"] == "announce" and message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert user_keys["alice"].fingerprint in body
        assert "alices-tool" in body and "Python-urllib/2.7" in body and "SSH-2.0-OpenSSH_7.4" in body
        assert "2027-06-01 14:00 UTC" in body and "twine upload dist/*" in body
    assert "WHY YOU GOT THIS" in text and "alice@example.org, the address on file" in text


def test_html_body_escapes_what_users_wrote(people, smtp):
    """A key comment with markup is escaped in the HTML body."""
    people.accounts.add_account("hal", email="hal@example.org")
    key = parse_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHv4Ex3ZrOfodC+wKrPbm8TuMcVXnSytuVtvSlLnEVyL <script>x</script>")
    people.keys.add_key("hal", key)
    assert run_notify(people, smtp, "--campaign", "announce", "--account", "hal").exit_code == 0
    html = smtp.mailbox.messages[0].get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_rerun_sends_nothing_new(people, smtp):
    """A second run of the same campaign sends nothing and says the accounts were already sent."""
    assert run_notify(people, smtp, "--campaign", "announce", "--all").exit_code == 0
    first = len(smtp.mailbox.messages)
    again = run_notify(people, smtp, "--campaign", "announce", "--all")
    assert again.exit_code == 0
    assert len(smtp.mailbox.messages) == first == 4
    assert "skipped: already sent" in again.output
    statuses = Counter(r.status for r in people.outbox.sends(campaign="announce"))
    assert statuses == {"sent": 4}


def test_killed_run_resumes_without_duplicates(people, smtp):
    """A run killed while the 3rd message is in flight: the re-run sends the rest, the in-flight one
    is reported (never resent on its own), and --retry-interrupted sends it once."""
    smtp.mailbox.hold_number = 3
    url = str(people.engine.url)
    process = subprocess.Popen(
        [*command_at(NOW), "--set", f"database_url={url}", "--set",
         f"smtp_url=smtp://127.0.0.1:{smtp.port}", "notify", "--campaign", "announce", "--all"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert smtp.mailbox.holding.wait(60), "the third message never arrived"
    finally:
        process.kill()
        process.wait(30)
    smtp.mailbox.release.set()
    assert smtp.mailbox.recipients() == ["alice@example.org", "bob@example.org"]
    statuses = {r.email: r.status for r in people.outbox.sends(campaign="announce")}
    assert statuses == {"alice@example.org": "sent", "bob@example.org": "sent", "frank@example.org": "sending"}

    resumed = run_notify(people, smtp, "--campaign", "announce", "--all")
    assert resumed.exit_code == 0, resumed.output
    assert "maybe sent (interrupted run)" in resumed.output and "frank@example.org" in resumed.output
    assert smtp.mailbox.recipients() == ["alice@example.org", "bob@example.org", "gina@example.org"]

    retried = run_notify(people, smtp, "--campaign", "announce", "--all", "--retry-interrupted")
    assert retried.exit_code == 0, retried.output
    assert sorted(smtp.mailbox.recipients()) == [
        "alice@example.org", "bob@example.org", "frank@example.org", "gina@example.org"]
    assert run_notify(people, smtp, "--campaign", "announce", "--all").exit_code == 0
    assert len(smtp.mailbox.messages) == 4


def test_refused_message_is_sent_by_the_next_run(people, smtp):
    """A message the server refuses is recorded failed (exit 1) and the next run sends only it."""
    smtp.mailbox.refuse_once.add("frank@example.org")
    first = run_notify(people, smtp, "--campaign", "brownout", "--all")
    assert first.exit_code == 1
    assert "failed: frank" in first.output and "450" in first.output
    assert sorted(smtp.mailbox.recipients()) == ["alice@example.org", "bob@example.org", "gina@example.org"]
    second = run_notify(people, smtp, "--campaign", "brownout", "--all")
    assert second.exit_code == 0
    assert smtp.mailbox.recipients()[-1] == "frank@example.org" and len(smtp.mailbox.messages) == 4


def test_dry_run_writes_messages_and_sends_nothing(people, smtp, tmp_path):
    """--dry-run writes one .eml per recipient, sends nothing and records nothing."""
    out = tmp_path / "review"
    result = run_notify(people, smtp, "--campaign", "final", "--active-since", "90d", "--dry-run", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.glob("*.eml"))
    assert files == ["0001-final-alice.eml", "0002-final-frank.eml", "0003-final-gina.eml"]
    message = email.message_from_bytes((out / files[0]).read_bytes(), policy=email.policy.default)
    assert message["To"] == "alice <alice@example.org>" and message["Subject"].startswith("Final notice")
    assert smtp.mailbox.messages == []
    assert people.outbox.sends() == []


def test_limit_and_repeat_after(people, smtp):
    """--limit caps a run; --repeat-after sends again only to accounts last sent before the window."""
    assert run_notify(people, smtp, "--campaign", "reminder", "--all", "--limit", "1").exit_code == 0
    assert smtp.mailbox.recipients() == ["alice@example.org"]
    old = people.outbox.sends(campaign="reminder")[0]
    long_ago = NOW - dt.timedelta(days=40)
    people.outbox.finish_send(old.id, "sent", sent_at=long_ago)
    assert run_notify(people, smtp, "--campaign", "reminder", "--account", "alice").exit_code == 0
    assert len(smtp.mailbox.messages) == 1  # once per campaign without a repeat window
    assert run_notify(people, smtp, "--campaign", "reminder", "--account", "alice",
                      "--repeat-after", "30d").exit_code == 0
    assert smtp.mailbox.recipients() == ["alice@example.org", "alice@example.org"]
    assert run_notify(people, smtp, "--campaign", "reminder", "--account", "alice",
                      "--repeat-after", "30d").exit_code == 0
    assert len(smtp.mailbox.messages) == 2


def test_queued_reminders_are_sent_once(people, smtp):
    """Per-use reminders: one queued per account and window, sent by --reminders, never twice."""
    alice, carol = people.accounts.get_account("alice"), people.accounts.get_account("carol")
    now = NOW - dt.timedelta(hours=2)
    since = now - dt.timedelta(days=30)
    assert people.outbox.queue_reminder(alice.id, alice.email, now, since) is not None
    assert people.outbox.queue_reminder(alice.id, alice.email, now, since) is None  # one is waiting
    assert people.outbox.queue_reminder(carol.id, carol.email, now, since) is not None
    result = run_notify(people, smtp, "--reminders")
    assert result.exit_code == 0, result.output
    assert smtp.mailbox.recipients() == ["alice@example.org"]
    assert "skipped: exempt" in result.output
    body = smtp.mailbox.messages[0].get_body(("plain",)).get_content()
    assert f"uploaded over SSH (localhost) on {now:%Y-%m-%d %H:%M}" in body
    assert run_notify(people, smtp, "--reminders").exit_code == 0
    assert len(smtp.mailbox.messages) == 1
    assert people.outbox.queue_reminder(alice.id, alice.email, NOW, since) is None  # emailed in the window
    assert {r.status for r in people.outbox.sends(campaign="reminder")} == {"sent", "skipped"}


def _released_another_way(registry: Registry, project: str) -> None:
    """What `evidence refresh` records when the index lists a release of `project` made after
    its last SSH upload (alice's `alices-tool`, three days ago)."""
    release = IndexFile(f"{project.replace('-', '_')}-3.2.tar.gz", "3a" * 32, NOW - dt.timedelta(days=1))
    registry.evidence.record_read(project, [release], NOW - dt.timedelta(hours=1))


MIGRATED_SKIP = "skipped: migrated (evidence on the index; --include-migrated sends anyway)"


def test_migrated_accounts_are_skipped_unless_included(people, smtp):
    """alice released her only SSH project another way since: skipped and counted; --include-migrated mails her."""
    _released_another_way(people, "alices-tool")
    result = run_notify(people, smtp, "--campaign", "announce", "--active-since", "90d")
    assert result.exit_code == 0, result.output
    assert sorted(smtp.mailbox.recipients()) == ["frank@example.org", "gina@example.org"]
    assert re.search(re.escape(MIGRATED_SKIP) + r"[\s│]+1\s", result.output)  # counted once
    included = run_notify(people, smtp, "--campaign", "announce", "--active-since", "90d", "--include-migrated")
    assert included.exit_code == 0, included.output
    assert smtp.mailbox.recipients()[2:] == ["alice@example.org"] and MIGRATED_SKIP not in included.output


def test_queued_reminder_of_a_migrated_account_is_dropped(people, smtp):
    """A reminder queued before alice's release made another way is not sent: recorded skipped, with the reason."""
    alice, frank = people.accounts.get_account("alice"), people.accounts.get_account("frank")
    since = NOW - dt.timedelta(days=30)
    people.outbox.queue_reminder(alice.id, alice.email, NOW - dt.timedelta(days=3), since)
    people.outbox.queue_reminder(frank.id, frank.email, NOW - dt.timedelta(days=3), since)
    _released_another_way(people, "alices-tool")
    result = run_notify(people, smtp, "--reminders")
    assert result.exit_code == 0, result.output
    assert smtp.mailbox.recipients() == ["frank@example.org"] and MIGRATED_SKIP in result.output
    (dropped,) = people.outbox.sends(campaign="reminder", account_ids=[alice.id])
    assert (dropped.status, dropped.error) == ("skipped", MIGRATED_SKIP.removeprefix("skipped: "))


def test_unknown_campaign_and_selection_errors(people, smtp):
    """Mistakes in the command line are refused before anything is sent, saying what to do."""
    bad = run_notify(people, smtp, "--campaign", "farewell", "--all")
    assert bad.exit_code != 0 and "announce, brownout, final, reminder" in bad.output
    assert run_notify(people, smtp, "--campaign", "announce").exit_code != 0
    nobody = run_notify(people, smtp, "--campaign", "announce", "--account", "zed")
    assert nobody.exit_code != 0 and "no account named zed" in nobody.output
    assert smtp.mailbox.messages == []


def test_unreachable_server_sends_and_records_nothing(people):
    """With the mail server down the run stops before claiming anything."""
    result = run_notify(people, None, "--campaign", "announce", "--all")
    assert result.exit_code != 0 and "cannot reach the mail server" in result.output
    assert people.outbox.sends() == []


# -- the transport --------------------------------------------------------------------------------
def test_smtp_url_forms():
    """smtp_url spells plain, STARTTLS and TLS, with an optional login and a private CA."""
    assert SmtpTarget.from_url("smtp://mail:2525").security == "plain"
    assert SmtpTarget.from_url("smtp://mail?starttls=1").security == "starttls"
    target = SmtpTarget.from_url("smtp+starttls://u%40x:p%3Aw@mail?cafile=/ca.pem")
    assert (target.security, target.port, target.username, target.password, target.cafile) == (
        "starttls", 587, "u@x", "p:w", "/ca.pem")
    assert SmtpTarget.from_url("smtps://mail").port == 465
    assert "p:w" not in target.describe() and "p:w" not in repr(target)


def _authenticator(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=(auth_data.login, auth_data.password) == (b"mailer", b"s3cret"))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("smtp-tls"))


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_secure_transports_with_login(mode, tls_files):
    """Mail goes out over STARTTLS and implicit TLS, verified against the CA, after a login."""
    mailbox = Mailbox()
    port = free_port()
    if mode == "starttls":
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=tls_files.server_context(),
                                require_starttls=True, authenticator=_authenticator, auth_require_tls=True)
        url = f"smtp://mailer:s3cret@127.0.0.1:{port}?starttls=1&cafile={tls_files.ca_cert}"
    else:
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, ssl_context=tls_files.server_context(),
                                authenticator=_authenticator, auth_require_tls=False)
        url = f"smtps://mailer:s3cret@127.0.0.1:{port}?cafile={tls_files.ca_cert}"
    controller.start()
    try:
        message = build_message(sender="Gateway <noreply@example.org>", recipient="x@example.org",
                                subject="hello", text="body\n", html=None,
                                message_id=new_message_id("noreply@example.org"))
        with Mailer(SmtpTarget.from_url(url)) as mailer:
            assert mailer.send(message).startswith("250")
    finally:
        controller.stop()
    assert mailbox.recipients() == ["x@example.org"]


# -- pure planning --------------------------------------------------------------------------------
def test_plan_orders_by_name_and_applies_the_limit(people):
    """Planning is by account name, the limit leaves the rest for the next run."""
    plan = plan_campaign(people.accounts.list_accounts(), people.events.last_use_by_account(), [], Audience(everyone=True),
                         NOW, limit=2)
    assert [p.account.name for p in plan.send] == ["alice", "bob"]
    assert plan.skipped["over --limit (next run)"] == 2


# -- concurrent runs ------------------------------------------------------------------------------
@pytest.fixture
def any_registry(registry_url):
    registry = Registry.from_url(registry_url)
    yield registry
    registry.close()


def test_two_runs_at_once_never_claim_the_same_message_twice(any_registry):
    """Two senders claiming the same (campaign, account) at the same moment: at most one wins."""
    registry = any_registry
    ids = [registry.accounts.add_account(f"user{i}", email=f"user{i}@example.org").id for i in range(30)]
    barrier = threading.Barrier(2)
    won: list[tuple[int, int]] = []
    lock = threading.Lock()

    def sender(name: str) -> None:
        for account_id in ids:
            barrier.wait(30)
            claimed = registry.outbox.claim_send("announce", account_id, "x@example.org", f"<{name}{account_id}@t>", NOW)
            if claimed is not None:
                with lock:
                    won.append((account_id, claimed))

    threads = [threading.Thread(target=sender, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    per_account = Counter(account_id for account_id, _ in won)
    assert per_account and max(per_account.values()) == 1
    rows = registry.outbox.sends(campaign="announce")
    assert sorted(r.id for r in rows) == sorted(claimed for _, claimed in won)
