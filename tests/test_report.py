"""`pypissh-migrate report`: a known history (testbed.report_history) gives exactly the counts,
statuses, trend and verdict worked out by hand below, on SQLite and on PostgreSQL, and every output
format (table, JSON, CSV) says the same."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from click.testing import CliRunner

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from gateway.registry.reports import RangeTotals
from migrate.cli import cli
from migrate.report import logic, tabular
from migrate.report.build import build_report
from migrate.report.model import (
    ACTIVE,
    CATEGORIES,
    DORMANT,
    MIGRATED,
    MIXED_USE,
    NEVER_USED,
    QUIET,
    STILL_USING,
    Marker,
    Period,
    category_of,
)
from testbed import postgres, report_history
from testbed.report_history import SINCE, UNTIL, at
from tests.helpers import cli_runner

UTC = dt.timezone.utc
GENERATED = dt.datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PERIOD = Period(at(1, 5), at(3, 2))

# Hand-worked from testbed/report_history.py. Per week: sessions, forwarded, refused_upstream,
# refused_schedule, bad_request, client_aborted, upstream_error, unknown, other, active accounts.
WEEKS = {
    "2026-W02": (4, 2, 0, 0, 1, 0, 0, 0, 1, 4),  # alice, bob; dave's bad request; carol's register
    "2026-W03": (4, 2, 1, 0, 0, 0, 1, 0, 0, 2),  # alice twice (one refused upstream), bob twice
    "2026-W04": (2, 1, 0, 0, 0, 1, 0, 0, 0, 2),  # alice; dave aborted
    "2026-W05": (1, 1, 0, 0, 0, 0, 0, 0, 0, 1),  # alice
    "2026-W06": (2, 2, 0, 0, 0, 0, 0, 0, 0, 2),  # alice, dave
    "2026-W07": (3, 2, 0, 1, 0, 0, 0, 0, 0, 2),  # brownout: alice refused, carol (exempt) through
    "2026-W08": (2, 2, 0, 0, 0, 0, 0, 0, 0, 2),  # alice, carol
    "2026-W09": (4, 3, 0, 0, 0, 0, 0, 0, 1, 3),  # alice, dave (and his internal error), gina
}
TOTALS = dict(zip(("sessions", *CATEGORIES), (22, 15, 1, 1, 1, 1, 1, 0, 2)))

# account: status, last use, sessions, forwarded, last upload, projects, fingerprint labels,
# SSH clients, User-Agents, weak key, notices
ACCOUNTS = {
    "alice": (STILL_USING, at(2, 23, 9), 10, 8, at(2, 23, 9), ("alpha",), ("alice",),
              (report_history.OPENSSH_74,), ("Python-urllib/2.7",), False, (("first-notice", at(1, 20, 10)),)),
    "carol": (STILL_USING, at(2, 16, 10), 3, 2, at(2, 16, 10), ("gamma",), ("carol",),
              (report_history.PUTTY,), (), False, (("first-notice", at(1, 20, 10)),)),
    "dave": (MIXED_USE, at(2, 25, 14), 5, 2, at(2, 24, 14), ("delta", "delta-utils"), ("dave", "dave-old"),
             (report_history.OPENSSH_53, report_history.OPENSSH_92), ("Python-urllib/2.6", "Python-urllib/3.11"),
             True, (("reminder", at(2, 25, 15)),)),
    "gina": (ACTIVE, at(2, 26, 10), 1, 1, at(2, 26, 10), ("eta",), ("gina",), (report_history.OPENSSH_92,),
             ("Python-urllib/3.11",), False, ()),
    "frank": (QUIET, at(12, 1, 8, year=2025), 0, 0, None, (), (), (), (), False, ()),
    "bob": (MIGRATED, at(1, 15, 10), 3, 2, at(1, 13, 10), ("beta",), ("bob",), (report_history.OPENSSH_82,),
            ("Python-urllib/3.8",), False, (("first-notice", at(1, 20, 10)),)),
    "erin": (NEVER_USED, None, 0, 0, None, (), (), (), (), False, ()),
}
# The evidence on the index, per account: project, file, published, how that is known, the SSH
# upload it follows. bob's release came after his last SSH upload of `beta` (migrated in W06);
# dave's after his first upload of `delta`, before he used SSH again (mixed use). alice's old
# `alpha` file and gina's `eta` file seen at the first read prove nothing.
EVIDENCE = {
    "bob": (("beta", "beta-2.0.tar.gz", at(2, 2, 10), "index", at(1, 13, 10)),),
    "dave": (("delta", "delta-1.1.tar.gz", at(2, 10, 9), "first seen", at(2, 3, 14)),),
}
# project: last SSH upload, last attempt, sessions, forwarded, accounts (most recent attempt first)
PROJECTS = {
    "eta": (at(2, 26, 10), at(2, 26, 10), 1, 1, ("gina",)),
    "delta-utils": (at(2, 24, 14), at(2, 25, 14), 2, 1, ("dave",)),
    "alpha": (at(2, 23, 9), at(2, 23, 9), 10, 8, ("alice",)),
    "gamma": (at(2, 16, 10), at(2, 16, 10), 3, 2, ("carol",)),
    "delta": (at(2, 3, 14), at(2, 3, 14), 2, 1, ("dave",)),
    "beta": (at(1, 13, 10), at(1, 15, 10), 3, 2, ("bob",)),
}
# marker: weeks compared, mean sessions and accounts per week before and after, direction
TREND = {
    "notice phase": (4, 2.5, 2.0, 2.0, 1.75, "falling"),
    "campaign 'first-notice' (3 delivered)": (4, 2.5, 2.0, 2.0, 1.75, "falling"),
    "brownout": (2, 1.5, 3.0, 1.5, 2.5, "rising"),
}


def _seeded(url: str) -> str:
    upgrade(url)
    registry = Registry.from_url(url)
    report_history.seed(registry)
    registry.engine.dispose()
    return url


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory) -> str:
    return _seeded(f"sqlite:///{tmp_path_factory.mktemp('report') / 'registry.sqlite3'}")


@pytest.fixture(scope="module")
def postgresql_url():
    reason = postgres.unavailable_reason()
    if reason:
        pytest.skip(reason)
    with postgres.temporary_database("report_test") as url:
        yield _seeded(url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def report(request):
    """The report of the seeded history, built from each database."""
    registry = Registry.from_url(request.getfixturevalue(f"{request.param}_url"))
    yield build_report(registry, PERIOD, generated_at=GENERATED)
    registry.engine.dispose()


@pytest.fixture(scope="module")
def keys_by_fingerprint() -> dict[str, str]:
    return {key.fingerprint: label for label, key in report_history.keys().items()}


def report_command(url: str, *args: str):
    """`report` over the fixture's period, which must succeed."""
    result = cli_runner(cli, database_url=url)("report", "--since", SINCE, "--until", UNTIL, *args)
    assert result.exit_code == 0, result.output
    return result


# -- what the database computes, on both dialects ---------------------------------------------------
def test_weekly_sessions_by_outcome_and_active_accounts(report):
    """Every ISO week of the period, with sessions per outcome category and distinct accounts."""
    found = {w.label: (w.sessions, *(w.counts[c] for c in CATEGORIES), w.active_accounts) for w in report.weeks}
    assert found == WEEKS
    assert [w.start for w in report.weeks] == [dt.date(2026, 1, 5) + dt.timedelta(weeks=i) for i in range(8)]
    assert not any(w.partial for w in report.weeks)
    assert {"sessions": report.totals.total, **report.totals.as_dict()} == TOTALS


def test_accounts_statuses_and_evidence(report, keys_by_fingerprint):
    """Per account: status, last use, sessions, projects, keys, client banners, weak key, notices."""
    found = {}
    for a in report.accounts:
        found[a.name] = (a.status, a.last_use, a.sessions, a.counts["forwarded"], a.last_upload, a.projects,
                         tuple(sorted(keys_by_fingerprint[f] for f in a.fingerprints)), a.ssh_clients,
                         a.user_agents, a.weak_key, tuple((n.campaign, n.sent_at) for n in a.notices))
    assert found == ACCOUNTS
    assert [a.name for a in report.accounts] == list(ACCOUNTS)  # still using first, most sessions first
    dave = next(a for a in report.accounts if a.name == "dave")
    assert dave.counts.as_dict() == {"forwarded": 2, "refused_upstream": 0, "refused_schedule": 0,
                                     "bad_request": 1, "client_aborted": 1, "upstream_error": 0, "unknown": 0,
                                     "other": 1}
    assert report.status_counts() == {STILL_USING: 2, MIXED_USE: 1, ACTIVE: 1, DORMANT: 0, QUIET: 1, MIGRATED: 1,
                                      NEVER_USED: 1}


def test_evidence_from_the_index_sets_migrated_and_mixed_use(report):
    """Per account: the release made another way after its SSH uploads, dated and sourced; the week of bob's migration."""
    found = {a.name: tuple((e.project, e.filename, e.published_at, e.source, e.follows) for e in a.evidence)
             for a in report.accounts if a.evidence}
    assert found == EVIDENCE
    bob = next(a for a in report.accounts if a.name == "bob")
    assert bob.migrated_at == at(2, 2, 10)
    assert {w.label: w.migrations for w in report.weeks if w.migrations} == {"2026-W06": 1}
    assert report.evidence_read_at == at(2, 27)


def test_projects_with_their_last_ssh_upload(report):
    """Per project: the last forwarded upload, the last attempt, sessions and who uploaded it."""
    found = {p.name: (p.last_upload, p.last_attempt, p.sessions, p.uploads, p.accounts) for p in report.projects}
    assert found == PROJECTS
    assert [p.name for p in report.projects] == list(PROJECTS)


def test_trend_around_notice_campaign_and_brownout(report):
    """Mean weekly usage before and after each dated step; cancelled windows and reminders are no steps."""
    found = {t.marker.label: (t.weeks, t.before_sessions, t.after_sessions, t.before_accounts, t.after_accounts,
                              t.direction) for t in report.verdict.trend}
    assert found == TREND
    assert [(m.kind, m.starts_at) for m in report.markers] == [
        ("notice", at(1, 19)), ("campaign", at(1, 20, 10)), ("brownout", at(2, 9, 10)), ("sunset", at(4, 1))]


def test_changes_come_from_the_journal(report):
    """The schedule changes and the notify run of the period, from the admin journal, on both databases."""
    assert [(c.at, c.kind, c.label, c.reason) for c in report.changes] == [
        (at(1, 12, 9), "schedule", "notice set: 2026-01-19 00:00", "announced on the blog"),
        (at(1, 12, 9), "schedule", "sunset set: 2026-04-01 00:00", None),
        (at(1, 20, 10), "campaign", "notify 'first-notice': 3 sent, 1 failed", None),
        (at(2, 2, 9), "schedule", "brownout 2 set: 2026-02-09 10:00 to 2026-02-09 22:00", None),
        (at(2, 2, 9), "schedule", "brownout 3 set: 2026-02-16 10:00 to 2026-02-16 22:00", None),
        (at(2, 10, 11), "schedule", "brownout 3 cancelled (was 2026-02-16 10:00 to 2026-02-16 22:00)",
         "one is enough")]
    assert {c.actor for c in report.changes} == {"ops"}


def test_json_and_table_list_the_changes(sqlite_url):
    """`report --format json` has the changes with who and why; the table prints them in a section."""
    data = json.loads(report_command(sqlite_url, "--format", "json").stdout)
    assert data["changes"][0] == {"at": "2026-01-12T09:00:00Z", "kind": "schedule",
                                  "label": "notice set: 2026-01-19 00:00", "actor": "ops",
                                  "reason": "announced on the blog"}
    assert [c["kind"] for c in data["changes"]].count("campaign") == 1
    table = report_command(sqlite_url).stdout
    section = table.split("Schedule changes and notify runs in the period (admin journal)")[1]
    assert "brownout 3 cancelled" in section and "one is enough" in section


def test_verdict_names_who_would_break_at_sunset(report):
    """alice (notified, still using) and dave (never reached, mixed use) would break; exempt carol,
    disabled gina and migrated bob would not; so it is not yet safe to switch off."""
    verdict = report.verdict
    assert not verdict.safe
    assert [a.name for a in verdict.would_break] == ["alice", "dave"]
    assert [a.name for a in verdict.exempt_still_using] == ["carol"]
    assert [a.name for a in verdict.migrated] == ["bob"]  # and dave, in mixed use, still breaks
    assert verdict.headline == ("Not yet safe to switch off: 2 accounts would break at the sunset on 2026-04-01 "
                                "if it were today (alice, dave); contact them before switching off.")
    assert verdict.overall == ("Usage is flat: 2.8 sessions and 2.2 active accounts a week in the first 4 weeks "
                               "of the period, 2.8 and 2.2 in the last 4 weeks.")


def test_report_is_as_of_the_end_of_the_period(sqlite_url):
    """A period ending 18 January sees no notice, campaign or brownout yet: everyone who used the
    path is active, and alice's last use is the last one before that end."""
    registry = Registry.from_url(sqlite_url)
    early = build_report(registry, Period(at(1, 5), at(1, 19)), generated_at=GENERATED)
    registry.engine.dispose()
    statuses = {a.name: (a.status, a.last_use) for a in early.accounts}
    assert statuses["alice"] == (ACTIVE, at(1, 13, 11))
    assert statuses["bob"] == (ACTIVE, at(1, 15, 10))
    assert statuses["frank"] == (DORMANT, at(12, 1, 8, year=2025))
    assert [m.kind for m in early.markers] == ["sunset"]
    assert early.verdict.trend == ()


# -- the formats agree --------------------------------------------------------------------------------
def _table_rows(text: str, title: str) -> list[list[str]]:
    """The rows of the table printed under `title`, as the report prints tables into a pipe: a
    header (its upper lines indented when a heading wraps), then one row a line (a value of
    several lines continues on indented lines), columns at least two blanks apart."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line == title)
    rows, header = [], False
    for line in lines[start + 1:]:
        if not line:
            break
        if line.startswith(" "):
            continue
        if header:
            rows.append(re.split(r"\s{2,}", line.strip()))
        header = True
    return rows


def test_table_shows_the_counts(sqlite_url):
    """The default terminal table has the verdict, every week's counts and every account's status."""
    text = report_command(sqlite_url).stdout
    assert "Not yet safe to switch off: 2 accounts would break" in text
    weeks = {row[0]: tuple(int(v) for v in row[2:12]) for row in _table_rows(text, "SSH sessions per week by outcome")}
    assert weeks == {**WEEKS, "total": (22, 15, 1, 1, 1, 1, 1, 0, 2, 5)}
    accounts = {row[0].split(" (")[0]: (row[1], row[2], int(row[3]), int(row[4]))
                for row in _table_rows(text, "Accounts")}
    assert accounts == {name: (v[0], f"{v[1]:%Y-%m-%d %H:%M}" if v[1] else "-", v[2], v[3])
                        for name, v in ACCOUNTS.items()}
    breaking = [row[0] for row in _table_rows(text, "Accounts that would break at sunset today")]
    assert breaking == ["alice", "dave"]
    title = "Evidence on the index: releases made another way after SSH uploads"
    assert [row[:6] for row in _table_rows(text, title)] == [
        ["dave", MIXED_USE, "delta", "delta-1.1.tar.gz", "2026-02-10 09:00", "first seen by evidence refresh"],
        ["bob", MIGRATED, "beta", "beta-2.0.tar.gz", "2026-02-02 10:00", "upload time on the index"]]
    assert "Migrated, by the evidence on the index (not counted as breaking): bob." in text
    assert "Evidence from the index as last read 2026-02-27 00:00 UTC" in text
    assert "SHA256:" in text and "…" not in text  # fingerprints are printed whole


def test_json_agrees_with_the_table(sqlite_url):
    """`--format json` parses and carries the same weeks, accounts, projects, trend and verdict."""
    data = json.loads(report_command(sqlite_url, "--format", "json").stdout)
    weeks = {w["week"]: (w["sessions"], *(w[c] for c in CATEGORIES), w["active_accounts"]) for w in data["weeks"]}
    assert weeks == WEEKS
    assert {k: data["summary"][k] for k in TOTALS} == TOTALS
    accounts = {a["account"]: (a["status"], a["last_use"], a["sessions"], a["forwarded"]) for a in data["accounts"]}
    assert accounts == {name: (v[0], tabular.stamp(v[1]), v[2], v[3]) for name, v in ACCOUNTS.items()}
    assert data["accounts"][2]["weak_key"] is True and data["accounts"][2]["account"] == "dave"
    assert data["accounts"][0]["notified"] == [{"campaign": "first-notice", "sent_at": "2026-01-20T10:00:00Z"}]
    projects = {p["project"]: (p["last_upload"], p["sessions"], p["forwarded"]) for p in data["projects"]}
    assert projects == {name: (tabular.stamp(v[0]), v[2], v[3]) for name, v in PROJECTS.items()}
    trend = {t["marker"]: (t["weeks_compared"], t["direction"]) for t in data["trend"]}
    assert trend == {label: (v[0], v[5]) for label, v in TREND.items()}
    assert data["summary"]["safe_to_switch_off"] is False
    assert [a["account"] for a in data["verdict"]["would_break"]] == ["alice", "dave"]
    assert data["verdict"]["exempt_still_using"] == ["carol"]
    assert data["verdict"]["migrated"] == ["bob"]
    assert {w["week"]: w["migrations"] for w in data["weeks"] if w["migrations"]} == {"2026-W06": 1}
    evidence = {e["account"]: (e["status"], e["project"], e["filename"], e["published_at"], e["known_from"],
                               e["after_ssh_upload"]) for e in data["evidence"]}
    assert evidence == {
        "dave": (MIXED_USE, "delta", "delta-1.1.tar.gz", "2026-02-10T09:00:00Z", "first seen by evidence refresh",
                 "2026-02-03T14:00:00Z"),
        "bob": (MIGRATED, "beta", "beta-2.0.tar.gz", "2026-02-02T10:00:00Z", "upload time on the index",
                "2026-01-13T10:00:00Z")}
    bob = next(a for a in data["accounts"] if a["account"] == "bob")
    assert bob["migrated_at"] == "2026-02-02T10:00:00Z" and bob["evidence"][0]["filename"] == "beta-2.0.tar.gz"
    assert data["summary"]["status_migrated"] == 1 and data["summary"]["status_mixed_use"] == 1
    assert data["summary"]["since"] == "2026-01-05T00:00:00Z" and data["summary"]["until"] == "2026-03-02T00:00:00Z"


def _csv_sections(text: str) -> dict[str, list[dict[str, str]]]:
    sections: dict[str, list[dict[str, str]]] = {}
    for block in text.strip("\n").split("\n\n"):
        rows = list(csv.reader(io.StringIO(block)))
        header = rows[0]
        assert header[0] == "section"
        name = rows[1][0] if len(rows) > 1 else None
        assert all(row[0] == name for row in rows[1:])
        sections[name or f"empty-{len(sections)}"] = [dict(zip(header[1:], row[1:])) for row in rows[1:]]
    return sections


def _csv_summary(text: str) -> dict[str, str]:
    return {row["key"]: row["value"] for row in _csv_sections(text)["summary"]}


def test_csv_on_stdout_agrees_with_json(sqlite_url):
    """`--format csv` prints every section with its own header; its values equal the JSON's."""
    data = json.loads(report_command(sqlite_url, "--format", "json").stdout)
    sections = _csv_sections(report_command(sqlite_url, "--format", "csv").stdout)
    assert list(sections) == list(tabular.SECTIONS)
    assert {r["key"]: r["value"] for r in sections["summary"]}["sessions"] == "22"
    assert [r["week"] for r in sections["weeks"]] == list(WEEKS)
    for row, week in zip(sections["weeks"], data["weeks"]):
        assert {c: int(row[c]) for c in ("sessions", *CATEGORIES, "active_accounts")} == \
               {c: week[c] for c in ("sessions", *CATEGORIES, "active_accounts")}
    for row, account in zip(sections["accounts"], data["accounts"]):
        assert row["account"] == account["account"] and row["status"] == account["status"]
        assert row["last_use"] == (account["last_use"] or "")
        assert row["projects"].split(" | ") == (account["projects"] or [""])
        assert row["weak_key"] == ("true" if account["weak_key"] else "false")
    assert [r["account"] for r in sections["would_break"]] == ["alice", "dave"]
    assert [(r["marker"], r["direction"]) for r in sections["trend"]] == [(t["marker"], t["direction"])
                                                                          for t in data["trend"]]
    assert [r["project"] for r in sections["projects"]] == list(PROJECTS)
    assert sections["evidence"] == [{k: v or "" for k, v in row.items()} for row in data["evidence"]]
    bob = next(r for r in sections["accounts"] if r["account"] == "bob")
    assert bob["evidence"] == "beta-2.0.tar.gz@2026-02-02T10:00:00Z" and bob["migrated_at"] == "2026-02-02T10:00:00Z"
    assert [r["migrations"] for r in sections["weeks"]] == ["0", "0", "0", "0", "1", "0", "0", "0"]


def test_csv_output_folder_has_one_file_per_section(sqlite_url, tmp_path):
    """`--format csv --output DIR` writes <section>.csv files with plain headers."""
    folder = tmp_path / "csv"
    result = report_command(sqlite_url, "--format", "csv", "--output", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.csv" for s in tabular.SECTIONS)
    assert f"wrote {folder / 'weeks.csv'}" in result.output
    with (folder / "weeks.csv").open(newline="") as handle:
        weeks = list(csv.DictReader(handle))
    assert [(r["week"], int(r["sessions"]), int(r["active_accounts"])) for r in weeks] == \
           [(label, v[0], v[-1]) for label, v in WEEKS.items()]
    with (folder / "accounts.csv").open(newline="") as handle:
        dave = next(r for r in csv.DictReader(handle) if r["account"] == "dave")
    assert dave["ssh_clients"] == f"{report_history.OPENSSH_53} | {report_history.OPENSSH_92}"
    assert dave["notified"] == "reminder@2026-02-25T15:00:00Z"


def test_empty_period_is_refused_with_advice(sqlite_url):
    """A --since after --until is a usage error that says how to fix it."""
    result = CliRunner().invoke(cli, ["--set", f"database_url={sqlite_url}", "report", "--since", "2026-03-05",
                                      "--until", "2026-03-01"])
    assert result.exit_code == 2
    assert "the period is empty" in result.output and "earlier --since" in result.output


def test_help_describes_the_formats():
    """`report --help` explains the period, the formats and the CSV layout."""
    result = CliRunner().invoke(cli, ["report", "--help"])
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.output)
    for expected in ("--since DATE|Nd|Nw", "--format [table|csv|json|html]", "--chart FILE.png",
                     "one <section>.csv per section", "quiet-since-notice"):
        assert expected in text


# -- pure rules ---------------------------------------------------------------------------------------
def test_outcomes_map_to_report_categories():
    """The gateway's outcomes fall into the report's categories; the rest is 'other'."""
    assert [category_of(o) for o in ("forwarded", "refused_upstream", "refused_schedule", "bad_request",
                                     "client_aborted", "upstream_error", "forwarding")] == list(CATEGORIES[:-1])
    assert category_of("forwarding") == "unknown"  # a replica died while forwarding: maybe published
    assert {category_of(o) for o in ("local", "no_credential", "refused_policy", "internal_error", "busy")} == {"other"}


@pytest.mark.parametrize("last_use, notices, notice_start, expected", [
    (None, [], None, NEVER_USED),
    (at(2, 20), [], None, ACTIVE),
    (at(2, 20), [at(1, 20)], None, STILL_USING),
    (at(1, 10), [at(1, 20)], None, QUIET),
    (at(1, 10), [], at(1, 19), QUIET),  # the notice phase counts when no email went out
    (at(2, 27), [at(2, 28)], None, ACTIVE),  # a notice of two days ago proves nothing yet
    (at(12, 1, year=2025), [], None, DORMANT),
    (at(12, 1, year=2025), [], at(12, 15, year=2025), QUIET),
])
def test_account_status_rules(last_use, notices, notice_start, expected):
    """Statuses as of the end of the period 2026-01-05 to 2026-03-01."""
    assert logic.account_status(last_use=last_use, notices=notices, notice_start=notice_start,
                                period=PERIOD) == expected


def test_period_parsing():
    """--until takes its whole day; --since takes a date or a span back (90d, 12w); default 90 days."""
    now = dt.datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
    assert logic.parse_period("2026-01-05", "2026-03-01", now) == PERIOD
    assert logic.parse_period(None, None, now) == Period(now - dt.timedelta(days=90), now)
    assert logic.parse_period("12w", "2026-03-01", now) == Period(at(3, 2) - dt.timedelta(weeks=12), at(3, 2))
    assert logic.parse_period("2026-02-01T06:00", "2026-02-02T00:00+01:00", now) == \
           Period(at(2, 1, 6), at(2, 1, 23))
    assert logic.parse_period("2026-02-01t06:00z", "2026-02-01 07:00Z", now) == Period(at(2, 1, 6), at(2, 1, 7))
    with pytest.raises(ValueError, match="not a date"):
        logic.parse_period("yesterday", None, now)


def test_partial_weeks_and_trend_too_early():
    """A mid-week period marks its edge weeks partial; a marker in the last week is 'too early'."""
    period = Period(at(1, 7), at(1, 21))
    empty = RangeTotals(0, 0, {})
    totals = {span: empty for _, span in logic.table_weeks(period) + logic.trend_weeks(period)}
    weeks = logic.weeks(period, totals)
    assert [(w.label, w.partial) for w in weeks] == [("2026-W02", True), ("2026-W03", False), ("2026-W04", True)]
    late = logic.trend(Marker("notice", "notice phase", at(1, 19)), logic.week_samples(period, totals), period)
    assert late is not None and (late.weeks, late.direction) == (0, "too early")


def test_verdict_wording_follows_the_sunset(report):
    """The headline speaks of a sunset to come, one already passed, or none scheduled; with nobody
    left on the path it says it is safe."""
    accounts, weeks = report.accounts, report.weeks
    passed = logic.verdict(accounts, (), weeks, sunset=at(2, 1), until=at(3, 2)).headline
    assert "2 accounts still used or tried the path after the sunset on 2026-02-01 (alice, dave)" in passed
    unscheduled = logic.verdict(accounts, (), weeks, sunset=None, until=at(3, 2)).headline
    assert "2 accounts would break if the path were switched off today" in unscheduled
    quiet = [a for a in accounts if a.name not in ("alice", "dave")]
    safe = logic.verdict(quiet, (), weeks, sunset=at(4, 1), until=at(3, 2))
    assert safe.safe and safe.would_break == ()
    assert safe.headline.startswith("Safe to switch off: every account that used the SSH path")


def test_registry_nobody_used_is_safe_to_switch_off(tmp_path):
    """Accounts with keys and no session at all: safe, said in every format, every week listed."""
    url = f"sqlite:///{tmp_path / 'quiet.sqlite3'}"
    upgrade(url)
    registry = Registry.from_url(url)
    registry.accounts.add_account("erin")
    registry.keys.add_key("erin", report_history.keys()["erin"])
    registry.engine.dispose()
    data = json.loads(report_command(url, "--format", "json").stdout)
    assert data["summary"]["safe_to_switch_off"] is True and data["summary"]["verdict"] == "safe"
    assert data["summary"]["headline"] == "Safe to switch off: nobody used the SSH path in this period."
    assert data["summary"]["overall_trend"] == "No SSH session in this period."
    assert [w["sessions"] for w in data["weeks"]] == [0] * 8
    assert "nobody used the SSH path" in report_command(url).stdout
    sections = _csv_sections(report_command(url, "--format", "csv").stdout)
    assert len(sections) == len(tabular.SECTIONS)


@pytest.mark.parametrize("seed", ["nothing", "accounts without keys"])
def test_empty_registry_is_never_called_safe(tmp_path, seed):
    """A registry with no accounts, or no keys, gets the `empty` verdict naming its database in
    every format (table, JSON, CSV, HTML), never "safe to switch off"."""
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    upgrade(url)
    if seed == "accounts without keys":
        registry = Registry.from_url(url)
        registry.accounts.add_account("erin")
        registry.engine.dispose()
    expected = (f"the registry at {url} is empty ({'no accounts' if seed == 'nothing' else 'no keys'}): "
                "nothing to judge; is this the right database_url?")
    data = json.loads(report_command(url, "--format", "json").stdout)
    assert data["summary"]["verdict"] == data["verdict"]["state"] == "empty"
    assert data["summary"]["safe_to_switch_off"] is False
    assert data["summary"]["headline"] == expected and data["summary"]["database"] == url
    table = report_command(url).stdout
    assert f"registry: {url}" in table and "Safe to switch off" not in table
    assert "is empty" in table and "right database_url?" in table
    summary = _csv_summary(report_command(url, "--format", "csv").stdout)
    assert (summary["verdict"], summary["database"], summary["safe_to_switch_off"]) == ("empty", url, "false")
    page = report_command(url, "--format", "html").stdout
    assert 'data-verdict="empty"' in page and f'<code id="database">{url}</code>' in page
    assert "Safe to switch off" not in page


def test_every_format_names_its_database(sqlite_url):
    """Table, JSON, CSV and HTML of a real history each name the registry they read."""
    assert f"registry: {sqlite_url}" in report_command(sqlite_url).stdout
    assert json.loads(report_command(sqlite_url, "--format", "json").stdout)["summary"]["database"] == sqlite_url
    assert _csv_summary(report_command(sqlite_url, "--format", "csv").stdout)["database"] == sqlite_url
    assert f'<code id="database">{sqlite_url}</code>' in report_command(sqlite_url, "--format", "html").stdout


def test_report_on_a_missing_registry_creates_nothing(tmp_path):
    """`report` pointed at a registry that does not exist exits 1 naming it and `init`; no file appears."""
    url = f"sqlite:///{tmp_path / 'var' / 'pypissh.sqlite3'}"
    result = CliRunner().invoke(cli, ["--set", f"database_url={url}", "report"])
    assert result.exit_code == 1
    assert result.output == (f"Error: no registry at {url}; create it with `pypissh-gateway init` (or "
                             "`pypissh-gateway db upgrade`), or point database_url (or home) at the existing one\n")
    assert not (tmp_path / "var").exists()


def test_table_to_a_file_is_plain_text(sqlite_url, tmp_path):
    """`--output FILE` with the table format writes the same tables without colour codes."""
    target = tmp_path / "report.txt"
    report_command(sqlite_url, "--output", str(target))
    text = target.read_text()
    assert "\x1b[" not in text
    weeks = {row[0]: int(row[2]) for row in _table_rows(text, "SSH sessions per week by outcome")}
    assert weeks == {**{label: v[0] for label, v in WEEKS.items()}, "total": 22}


def test_table_into_a_pipe_has_plain_columns(sqlite_url, tmp_path):
    """The real script with stdout a pipe: no box drawing, no colour, no trailing blanks, no value
    folded over lines (a fingerprint whole on its account's line), no line padded to a fixed width."""
    from tests.cli import environment, run_cli
    from tests.helpers import BOX_DRAWING

    done = run_cli("pypissh-migrate", "--set", f"database_url={sqlite_url}", "report", "--since", SINCE,
                   "--until", UNTIL, env=environment(PYPISSH_HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert not BOX_DRAWING & set(done.stdout) and "\x1b[" not in done.stdout
    assert all(line == line.rstrip() for line in lines)
    alice = next(line for line in lines if line.startswith("alice ") and "SHA256:" in line)
    assert "SSH-2.0-OpenSSH_7.4" in alice and "Python-urllib/2.7" in alice
    assert len({len(line) for line in lines if line}) > 10  # each table as wide as itself
    assert "Is it safe to switch off?" in lines
