"""The report for scripts: JSON, and CSV as one table per section.

CSV layout. Each section is one table with its own header row:

    summary      key, value
    would_break  the accounts the verdict names, with the evidence
    trend        usage before and after each notice, campaign, brownout and sunset
    weeks        one row per ISO week
    accounts     one row per account
    projects     one row per project uploaded over SSH in the period
    markers      the retirement's dates
    changes      schedule changes and notify runs in the period, from the admin journal
    evidence     per account, each release on the index made another way after its SSH uploads

With `--output DIR` each section is written to `DIR/<section>.csv`. On standard output the
sections follow each other, each starting with its header row whose first cell is `section`, every
data row starting with the section's name, and a blank line between sections. Cells holding
several values (projects, fingerprints, client banners) separate them with " | "; a notice is
written `campaign@sent_at`, a release `filename@published_at`. Times are ISO
8601 in UTC ("2026-02-23T09:00:00Z"), empty when there is none; booleans are true/false.
JSON holds the same values under the same names, lists as arrays.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

from gateway.lifecycle.migration import Evidence
from migrate.report.model import CATEGORIES, KNOWN_FROM, STATUS_HELP, STATUSES, AccountReport, Report, Trend

SECTIONS = ("summary", "would_break", "trend", "weeks", "accounts", "projects", "markers", "changes",
            "evidence")
LIST_SEPARATOR = " | "


def stamp(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def account_row(account: AccountReport) -> dict[str, Any]:
    return {
        "account": account.name,
        "email": account.email,
        "status": account.status,
        "exempt": account.exempt,
        "disabled": account.disabled,
        "active_keys": account.active_keys,
        "weak_key": account.weak_key,
        "last_use": stamp(account.last_use),
        "sessions": account.sessions,
        **account.counts.as_dict(),
        "last_upload": stamp(account.last_upload),
        "projects": list(account.projects),
        "fingerprints": list(account.fingerprints),
        "ssh_clients": list(account.ssh_clients),
        "user_agents": list(account.user_agents),
        "notified": [{"campaign": n.campaign, "sent_at": stamp(n.sent_at)} for n in account.notices],
        "migrated_at": stamp(account.migrated_at),
        "evidence": [evidence_row(e) for e in account.evidence],
    }


def evidence_row(item: Evidence) -> dict[str, Any]:
    return {
        "project": item.project,
        "filename": item.filename,
        "published_at": stamp(item.published_at),
        "known_from": KNOWN_FROM[item.source],
        "after_ssh_upload": stamp(item.follows),
    }


def trend_row(item: Trend) -> dict[str, Any]:
    return {
        "marker": item.marker.label,
        "kind": item.marker.kind,
        "starts_at": stamp(item.marker.starts_at),
        "ends_at": stamp(item.marker.ends_at),
        "weeks_compared": item.weeks,
        "sessions_per_week_before": round(item.before_sessions, 2),
        "sessions_per_week_after": round(item.after_sessions, 2),
        "accounts_per_week_before": round(item.before_accounts, 2),
        "accounts_per_week_after": round(item.after_accounts, 2),
        "direction": item.direction,
    }


def summary(report: Report) -> dict[str, Any]:
    statuses = report.status_counts()
    return {
        "since": stamp(report.period.since),
        "until": stamp(report.period.until),
        "generated_at": stamp(report.generated_at),
        "database": report.database,
        "verdict": report.verdict.state,
        "safe_to_switch_off": report.verdict.safe,
        "headline": report.verdict.headline,
        "overall_trend": report.verdict.overall,
        "sessions": report.totals.total,
        **report.totals.as_dict(),
        "active_accounts": sum(1 for a in report.accounts if a.sessions),
        "accounts": len(report.accounts),
        **{f"status_{status.replace('-', '_')}": statuses[status] for status in STATUSES},
        "would_break": len(report.verdict.would_break),
        "sessions_of_deleted_accounts": report.unattributed_sessions,
        "evidence_read_at": stamp(report.evidence_read_at),
    }


def to_dict(report: Report) -> dict[str, Any]:
    return {
        "summary": summary(report),
        "verdict": {
            "state": report.verdict.state,
            "safe_to_switch_off": report.verdict.safe,
            "headline": report.verdict.headline,
            "overall_trend": report.verdict.overall,
            "would_break": [account_row(a) for a in report.verdict.would_break],
            "exempt_still_using": [a.name for a in report.verdict.exempt_still_using],
            "migrated": [a.name for a in report.verdict.migrated],
        },
        "trend": [trend_row(t) for t in report.verdict.trend],
        "weeks": [{
            "week": w.label, "week_start": w.start.isoformat(), "partial": w.partial,
            "sessions": w.sessions, **w.counts.as_dict(), "active_accounts": w.active_accounts,
            "migrations": w.migrations,
        } for w in report.weeks],
        "accounts": [account_row(a) for a in report.accounts],
        "projects": [{
            "project": p.name, "sessions": p.sessions, "forwarded": p.uploads,
            "last_upload": stamp(p.last_upload), "last_attempt": stamp(p.last_attempt),
            "accounts": list(p.accounts),
        } for p in report.projects],
        "markers": [{"kind": m.kind, "label": m.label, "starts_at": stamp(m.starts_at),
                     "ends_at": stamp(m.ends_at)} for m in report.markers],
        "changes": [{"at": stamp(c.at), "kind": c.kind, "label": c.label, "actor": c.actor, "reason": c.reason}
                    for c in report.changes],
        "evidence": [{"account": a.name, "status": a.status, **evidence_row(e)}
                     for a in report.accounts for e in a.evidence],
        "statuses": dict(STATUS_HELP),
    }


def to_json(report: Report) -> str:
    # Compact: json's indenting encoder is pure Python and takes seconds on thousands of accounts.
    return json.dumps(to_dict(report), ensure_ascii=False) + "\n"


# -- CSV ------------------------------------------------------------------------------------------
ACCOUNT_COLUMNS = ["account", "email", "status", "exempt", "disabled", "active_keys", "weak_key", "last_use",
                   "sessions", *CATEGORIES, "last_upload", "projects", "fingerprints", "ssh_clients",
                   "user_agents", "notified", "migrated_at", "evidence"]
COLUMNS = {
    "summary": ["key", "value"],
    "would_break": ACCOUNT_COLUMNS,
    "trend": ["marker", "kind", "starts_at", "ends_at", "weeks_compared", "sessions_per_week_before",
              "sessions_per_week_after", "accounts_per_week_before", "accounts_per_week_after", "direction"],
    "weeks": ["week", "week_start", "partial", "sessions", *CATEGORIES, "active_accounts", "migrations"],
    "accounts": ACCOUNT_COLUMNS,
    "projects": ["project", "sessions", "forwarded", "last_upload", "last_attempt", "accounts"],
    "markers": ["kind", "label", "starts_at", "ends_at"],
    "changes": ["at", "kind", "label", "actor", "reason"],
    "evidence": ["account", "status", "project", "filename", "published_at", "known_from", "after_ssh_upload"],
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return LIST_SEPARATOR.join(_item(v) for v in value)
    return str(value)


def _item(value: Any) -> str:
    if isinstance(value, dict) and "campaign" in value:
        return f"{value['campaign']}@{value['sent_at']}"
    if isinstance(value, dict):
        return f"{value['filename']}@{value['published_at']}"
    return str(value)


def section_rows(report: Report) -> dict[str, list[list[str]]]:
    """Each section's data rows as strings, in `COLUMNS` order."""
    data = to_dict(report)
    records = {
        "summary": [{"key": k, "value": v} for k, v in data["summary"].items()],
        "would_break": data["verdict"]["would_break"],
        "trend": data["trend"],
        "weeks": data["weeks"],
        "accounts": data["accounts"],
        "projects": data["projects"],
        "markers": data["markers"],
        "changes": data["changes"],
        "evidence": data["evidence"],
    }
    return {name: [[_cell(record[c]) for c in COLUMNS[name]] for record in records[name]] for name in SECTIONS}


def to_csv(report: Report) -> str:
    """All sections in one stream (see the module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for number, (name, rows) in enumerate(section_rows(report).items()):
        if number:
            out.write("\n")
        writer.writerow(["section", *COLUMNS[name]])
        for row in rows:
            writer.writerow([name, *row])
    return out.getvalue()


def write_csv_dir(report: Report, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in section_rows(report).items():
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(COLUMNS[name])
            writer.writerows(rows)
        written.append(path)
    return written
