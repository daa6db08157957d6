"""The log's record of connections, sessions and refused logins: JSON lines parsed field by field
for real OpenSSH clients, the flood limiter, the two formats, and no secret in any line."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import subprocess

import pytest

from gateway.ops import logformat, sessionlog
from gateway.ops.sessionlog import RefusalLimiter
from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.settings import Settings
from gateway.sshkeys import parse_public_key
from testbed.gatewayprocess import GatewayProcess
from tests.helpers import register_account, wait_until

CONN_ID = re.compile(r"[0-9a-f]{12}\Z")
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
CONNECTION_FIELDS = {"ts", "level", "logger", "msg", "conn_id", "client_addr", "ssh_client_version", "key_type",
                     "key_fingerprint", "account_name", "sessions", "action", "command", "project", "version",
                     "filename", "size", "upstream_status", "outcome", "error", "duration_ms"}
REFUSED_FIELDS = {"ts", "level", "logger", "msg", "conn_id", "client_addr", "ssh_client_version", "username",
                  "key_type", "key_fingerprint", "reason", "detail"}


class JsonLog:
    """The gateway's log as the JSON format writes it, captured in memory."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logformat.JsonFormatter())

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self, msg: str | None = None) -> list[dict]:
        found = [json.loads(line) for line in self.text().splitlines()]
        return [line for line in found if msg is None or line["msg"] == msg]


@pytest.fixture
def json_log():
    log = JsonLog()
    gateway_logger = logging.getLogger("gateway")
    old_level = gateway_logger.level
    gateway_logger.setLevel(logging.INFO)
    gateway_logger.addHandler(log.handler)
    yield log
    gateway_logger.removeHandler(log.handler)
    gateway_logger.setLevel(old_level)


def _wait_for(json_log: JsonLog, msg: str, count: int = 1) -> list[dict]:
    return wait_until(lambda: len(json_log.lines(msg)) >= count and json_log.lines(msg),
                      what=f"{count} '{msg}' line(s) in the log")


def _common(line: dict, msg: str, logger: str = "gateway.sessions") -> None:
    assert TS.match(line["ts"]) and dt.datetime.fromisoformat(line["ts"])
    assert (line["level"], line["logger"], line["msg"]) == ("INFO", logger, msg)
    assert CONN_ID.match(line["conn_id"])
    assert line["client_addr"] == "127.0.0.1"


# -- lines for real clients -------------------------------------------------------------------
def test_upload_writes_one_connection_line_with_every_field(gateway, alice, ssh_client, legacy_project,
                                                            legacy_home, user_key, json_log, project_name):
    """A legacy upload is one 'connection closed' line naming the client, key, account, file and outcome."""
    project = legacy_project()
    result = ssh_client().legacy(project, "sdist", "upload", home=legacy_home)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = _wait_for(json_log, "connection closed")
    assert set(line) == CONNECTION_FIELDS
    _common(line, "connection closed")
    (dist,) = (project / "dist").glob("*.tar.gz")
    assert line["ssh_client_version"].startswith("SSH-2.0-OpenSSH")
    assert (line["key_type"], line["key_fingerprint"], line["account_name"]) == (
        "ssh-ed25519", user_key.fingerprint, "alice")
    assert (line["action"], line["command"], line["sessions"]) == ("file_upload", None, 1)
    assert (line["project"], line["version"]) == (project_name.lower(), "1.0")
    assert line["filename"] == f"{project_name.lower().replace('-', '_')}-1.0.tar.gz"
    assert line["size"] == dist.stat().st_size
    assert (line["upstream_status"], line["outcome"], line["error"]) == (200, "forwarded", None)
    assert isinstance(line["duration_ms"], int) and line["duration_ms"] >= 0
    assert json_log.lines("login refused") == []


def test_unknown_key_writes_a_refused_login_line(gateway, alice, ssh_client, user_keys, json_log):
    """A key the registry does not know: one 'login refused' line with the user, the key and the reason."""
    result = ssh_client(user_keys["mallory"]).run("whoami")
    assert result.returncode == 255
    (line,) = _wait_for(json_log, "login refused")
    assert set(line) == REFUSED_FIELDS
    _common(line, "login refused", logger="gateway.logins")
    assert (line["username"], line["key_type"], line["key_fingerprint"], line["reason"]) == (
        "submit", "ssh-ed25519", user_keys["mallory"].fingerprint, "unknown_key")
    assert line["ssh_client_version"].startswith("SSH-2.0-OpenSSH")
    assert json_log.lines("connection closed") == []


def test_wrong_user_writes_a_refused_login_line(gateway, alice, ssh_client, user_key, json_log):
    """A known key for another user name is refused as `wrong_user`, naming the user and the key offered."""
    result = ssh_client(user="root").run("whoami")
    assert result.returncode == 255
    (line,) = _wait_for(json_log, "login refused")
    _common(line, "login refused", logger="gateway.logins")
    assert (line["username"], line["key_fingerprint"], line["reason"]) == ("root", user_key.fingerprint, "wrong_user")


def test_brownout_refusal_is_the_connection_lines_outcome(gateway, alice, ssh_client, legacy_project,
                                                          legacy_home, json_log, project_name):
    """An upload refused by a brownout: outcome refused_schedule, no upstream status."""
    now = dt.datetime.now(dt.timezone.utc)
    gateway.registry.schedule.add_window("brownout", now - dt.timedelta(hours=1), now + dt.timedelta(hours=1))
    result = ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home)
    assert result.returncode != 0
    (line,) = _wait_for(json_log, "connection closed")
    _common(line, "connection closed")
    assert (line["action"], line["project"], line["account_name"]) == ("file_upload", project_name.lower(), "alice")
    assert (line["outcome"], line["upstream_status"]) == ("refused_schedule", None)
    assert "brownout" in line["error"]


def test_guide_command_is_logged_by_name(gateway, alice, ssh_client, json_log):
    """`ssh submit@host guide`: the line names the command, no legacy action, outcome `command`."""
    result = ssh_client().run("guide")
    assert result.returncode == 0, result.stderr
    (line,) = _wait_for(json_log, "connection closed")
    _common(line, "connection closed")
    assert (line["command"], line["action"], line["outcome"], line["account_name"]) == (
        "guide", None, "command", "alice")


def test_client_that_disconnects_mid_request(gateway, alice, ssh_client, json_log):
    """A client killed half-way through its request: the line says client_aborted, with the account."""
    client = ssh_client()
    with subprocess.Popen([*client.argv("-T", "-l", "submit"), "127.0.0.1"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # pipes closed, client reaped
        try:
            proc.stdin.write(b"POST /legacy/ HTTP/1.1\r\nHost: gateway\r\n"
                             b"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 5000\r\n\r\n"
                             b"--xyz\r\n")
            proc.stdin.flush()
            # The session is under way once the account holds a session slot.
            wait_until(lambda: gateway.services.limits.sessions.held("alice") > 0, what="the session to start")
        finally:
            proc.kill()
    (line,) = _wait_for(json_log, "connection closed")
    _common(line, "connection closed")
    assert (line["outcome"], line["account_name"], line["upstream_status"]) == ("client_aborted", "alice", None)


def test_flood_of_refused_logins_gives_a_bounded_number_of_lines(gateway, alice, ssh_client, user_keys, json_log):
    """Twelve refused logins from one address write five lines; a minute later one summary counts the other seven."""
    client = ssh_client(user_keys["mallory"])
    for _ in range(12):
        assert client.run("whoami").returncode == 255
    wait_until(lambda: len(gateway.services.limits.startups) == 0, what="the logins to end")
    assert len(json_log.lines()) == sessionlog.PER_ADDRESS
    assert {line["msg"] for line in json_log.lines()} == {"login refused"}
    gateway.ticks.advance(sessionlog.WINDOW + 1)
    gateway.services.sessionlog.flush()
    (summary,) = json_log.lines("refused logins suppressed")
    assert (summary["level"], summary["client_addr"], summary["suppressed"]) == ("WARNING", "127.0.0.1", 7)


def test_no_token_or_password_in_any_line(gateway, user_key, upstream, ssh_client, legacy_project, legacy_home,
                                          json_log):
    """An upload with a stored token and a legacy password, and a command line holding a token:
    neither the token nor the password appears in the log."""
    register_account(gateway, "alice", user_key, token=upstream.token)
    gateway_logger = logging.getLogger("gateway")
    gateway_logger.setLevel(logging.DEBUG)
    assert ssh_client().legacy(legacy_project(), "sdist", "upload", home=legacy_home).returncode == 0
    assert ssh_client().run(f"upload --token {upstream.token}").returncode == 2
    lines = _wait_for(json_log, "connection closed", count=2)
    assert lines[-1]["command"] == "other"
    assert upstream.token not in json_log.text() and "old-password" not in json_log.text()


# -- the limiter, pure ----------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_writes_the_first_lines_then_counts():
    """Five refusals from an address are written, the next ones counted; another address is not affected."""
    clock = Clock()
    limiter = RefusalLimiter(5, 60, clock=clock)
    assert [limiter.admit("192.0.2.1") for _ in range(8)] == [True] * 5 + [False] * 3
    assert limiter.admit("192.0.2.2") is True
    assert limiter.due() == []
    clock.now += 60
    assert limiter.due() == [("192.0.2.1", 3)]
    assert limiter.due() == []


def test_limiter_summarises_a_flood_once_a_minute_while_it_lasts():
    """A flood that goes on gets one summary a minute and no new lines; after a quiet minute lines resume."""
    clock = Clock()
    limiter = RefusalLimiter(5, 60, clock=clock)
    written, summary_times = 0, []
    for _ in range(180):  # three minutes, one refusal a second
        written += limiter.admit("198.51.100.7")
        summary_times += [clock.now for _ in limiter.due()]
        clock.now += 1
    assert written == 5
    assert len(summary_times) == 2 and summary_times[1] - summary_times[0] >= 60
    clock.now += 120
    limiter.due()
    assert limiter.admit("198.51.100.7") is True


def test_limiter_summaries_add_up_to_what_was_suppressed():
    """Over a long flood, the summaries account for every refusal not written, one per window at most."""
    clock = Clock()
    limiter = RefusalLimiter(5, 60, clock=clock)
    written, summaries = 0, []
    for _ in range(600):
        written += limiter.admit("203.0.113.9")
        summaries += limiter.due()
        clock.now += 1
    clock.now += 60
    summaries += limiter.due(everything=True)
    assert written == 5
    assert written + sum(n for _, n in summaries) == 600
    assert len(summaries) <= 600 / 60 + 1


def test_limiter_memory_is_bounded():
    """A spray of distinct addresses never makes the limiter remember more than its bound."""
    limiter = RefusalLimiter(5, 60, clock=Clock(), max_addresses=100)
    for number in range(1000):
        limiter.admit(f"2001:db8::{number:x}")
    assert len(limiter) <= 100


def test_limiter_without_summaries_limits_alike_and_counts_nothing():
    """With summaries off (the refused-key banners) the same first five pass, nothing is counted
    for a summary, and a flood's address is let through again after a quiet window."""
    clock = Clock()
    limiter = RefusalLimiter(5, 60, clock=clock, summaries=False)
    assert [limiter.admit("192.0.2.1") for _ in range(8)] == [True] * 5 + [False] * 3
    clock.now += 60
    assert limiter.due(everything=True) == []
    assert limiter.admit("192.0.2.1") is True


# -- the formats ----------------------------------------------------------------------------------
def _record(msg: str, **values) -> logging.LogRecord:
    record = logging.LogRecord("gateway.sessions", logging.INFO, __file__, 1, msg, (), None)
    record.__dict__.update(logformat.fields(**values))
    record.created = dt.datetime(2026, 11, 24, 9, 30, 0, 123000, tzinfo=dt.timezone.utc).timestamp()
    return record


def test_text_format_quotes_what_is_not_a_plain_word():
    """Text lines are `<ts> <LEVEL> <logger>: <msg> name=value`; odd values are quoted, None left out."""
    line = logformat.TextFormatter().format(_record(
        "login refused", username="x y\nreason=forged", key_fingerprint="SHA256:abc+/=", size=12, account_name=None))
    assert line == ('2026-11-24T09:30:00.123Z INFO gateway.sessions: login refused '
                    'username="x y\\nreason=forged" key_fingerprint="SHA256:abc+/=" size=12')
    assert "\n" not in line


def test_json_format_is_one_ascii_line_per_record():
    """JSON lines are one object with ts, level, logger, msg and the fields; no raw non-ASCII or newline."""
    line = logformat.JsonFormatter().format(_record("connection closed", username="ünï\u2028code", size=None))
    assert line.isascii() and len(line.splitlines()) == 1
    assert json.loads(line) == {"ts": "2026-11-24T09:30:00.123Z", "level": "INFO", "logger": "gateway.sessions",
                                "msg": "connection closed", "username": "ünï\u2028code", "size": None}


def test_log_format_setting_is_checked():
    """log_format accepts text and json only, with a sentence naming both."""
    assert Settings(log_format="json").replace().log_format == "json"
    with pytest.raises(Exception, match="log_format must be one of text, json, not 'xml'"):
        Settings().replace(log_format="xml")


# -- the real processes ---------------------------------------------------------------------------
def _registry_with_alice(settings: Settings, user_key) -> None:
    upgrade(settings.database_url)
    registry = Registry.from_url(settings.database_url)
    registry.accounts.add_account("alice")
    registry.keys.add_key("alice", parse_public_key(user_key.public_line))
    registry.close()


def test_serve_with_json_format_writes_only_json_lines(make_settings, tmp_path, user_key):
    """`serve` with PYPISSH_LOG_FORMAT=json: every stderr line is a JSON object, the connection's among them."""
    settings = make_settings(log_format="json")
    _registry_with_alice(settings, user_key)
    with GatewayProcess(settings, tmp_path / "serve.log") as process:
        known = tmp_path / "known_hosts"
        known.write_text(process.known_hosts_line())
        argv = ["ssh", "-p", str(process.port), "-i", str(user_key.path), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}", "-o", "LogLevel=ERROR",
                "-T", "-l", "submit", "127.0.0.1", "whoami"]
        assert subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
        wait_until(lambda: "connection closed" in process.log(), what="the connection's line")
    lines = [json.loads(line) for line in process.log().splitlines()]
    assert any(line["msg"].startswith("replica ") and line["logger"] == "gateway" for line in lines)
    (closed,) = [line for line in lines if line["msg"] == "connection closed"]
    assert (closed["command"], closed["account_name"], closed["outcome"]) == ("whoami", "alice", "command")
