"""The report in the terminal: the verdict first, then the evidence, as rich tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from migrate.report.model import (
    CATEGORIES,
    CATEGORY_LABELS,
    KNOWN_FROM,
    NOT_READ_YET,
    STATUS_HELP,
    STATUSES,
    AccountReport,
    Counts,
    Report,
)
from migrate.report.plot import marker_label

BAR_WIDTH = 32
BAR_STYLES = {
    "forwarded": "green",
    "refused_upstream": "red",
    "refused_schedule": "dark_orange",
    "bad_request": "magenta",
    "client_aborted": "grey50",
    "upstream_error": "blue",
    "unknown": "yellow",
    "other": "grey70",
}
SHORT_LABELS = {
    "forwarded": "forwarded",
    "refused_upstream": "refused\nupstream",
    "refused_schedule": "refused\nschedule",
    "bad_request": "bad\nrequest",
    "client_aborted": "client\naborted",
    "upstream_error": "upstream\nerror",
    "unknown": "outcome\nunknown",
    "other": "other",
}


def when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def _list(values: Sequence[str]) -> str:
    return "\n".join(values) if values else "-"


def _notified(account: AccountReport) -> str:
    return "\n".join(f"{n.campaign} {n.sent_at:%Y-%m-%d}" for n in account.notices) or "-"


# Short values that read badly when split: other columns give way first in a narrow terminal.
_WHOLE = ("account", "status", "last use", "last upload", "last SSH upload", "last attempt", "week", "from",
          "published")


def _table(title: str, columns: list[str], *, right: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", header_style="bold", show_lines=False)
    for column in columns:  # fold rather than cut: every value stays readable and copyable
        table.add_column(column, justify="right" if column in right else "left", overflow="fold",
                         no_wrap=column in _WHOLE)
    return table


def bar(counts: Counts, scale: float) -> Text:
    """A stacked bar of one week's sessions, one colour per outcome category."""
    text = Text()
    for name in CATEGORIES:
        value = counts[name]
        if value:
            text.append("█" * max(1, round(value * scale)), style=BAR_STYLES[name])
    return text


def verdict_panel(report: Report) -> Panel:
    style = "yellow" if report.verdict.empty else ("green" if report.verdict.safe else "red")
    return Panel(verdict_body(report), title=VERDICT_TITLE, border_style=style, title_align="left")


def verdict_text(report: Report) -> Text:
    """The verdict without a box, for a pipe or a file."""
    text = Text(VERDICT_TITLE + "\n", style="bold")
    text.append(verdict_body(report))
    return text


VERDICT_TITLE = "Is it safe to switch off?"


def verdict_body(report: Report) -> Text:
    verdict = report.verdict
    body = Text(verdict.headline + "\n", style="bold")
    body.append(verdict.overall)
    if verdict.exempt_still_using:
        body.append("\nExempt accounts that keep working after the sunset: "
                    + ", ".join(a.name for a in verdict.exempt_still_using) + ".")
    if verdict.migrated:
        body.append("\nMigrated, by the evidence on the index (not counted as breaking): "
                    + ", ".join(a.name for a in verdict.migrated) + ".")
    return body


def would_break_table(report: Report) -> Table:
    table = _table("Accounts that would break at sunset today",
                   ["account", "status", "last use", "sessions", "forwarded", "last upload", "projects",
                    "SSH client / User-Agent", "notified"], right=("sessions", "forwarded"))
    for a in report.verdict.would_break:
        clients = _list([*a.ssh_clients, *a.user_agents])
        table.add_row(a.name, a.status, when(a.last_use), str(a.sessions), str(a.counts["forwarded"]),
                      when(a.last_upload), _list(a.projects), clients, _notified(a))
    return table


def trend_table(report: Report) -> Table:
    table = _table("Trend: mean per week in the whole weeks before each event and after it (after its end, "
                   "for a brownout)", ["event", "weeks", "sessions before", "after", "accounts before", "after ",
                                       "direction"],
                   right=("weeks", "sessions before", "after", "accounts before", "after "))
    for t in report.verdict.trend:
        table.add_row(marker_label(t.marker), str(t.weeks), f"{t.before_sessions:.1f}", f"{t.after_sessions:.1f}",
                      f"{t.before_accounts:.1f}", f"{t.after_accounts:.1f}", t.direction)
    return table


def weeks_table(report: Report) -> Table:
    peak = max([w.sessions for w in report.weeks] + [1])
    scale = BAR_WIDTH / peak
    labels = [SHORT_LABELS[c] for c in CATEGORIES]
    table = _table("SSH sessions per week by outcome",
                   ["week", "from", "sessions", *labels, "active\naccounts", "migrated", "sessions by outcome"],
                   right=("sessions", *labels, "active\naccounts", "migrated"))
    for w in report.weeks:
        table.add_row(w.label + ("*" if w.partial else ""), f"{w.start:%Y-%m-%d}", str(w.sessions),
                      *[str(w.counts[c]) for c in CATEGORIES], str(w.active_accounts), str(w.migrations),
                      bar(w.counts, scale))
    total = report.totals
    table.add_row("total", "-", str(total.total), *[str(total[c]) for c in CATEGORIES],
                  str(sum(1 for a in report.accounts if a.sessions)), str(sum(w.migrations for w in report.weeks)),
                  "", style="bold")
    return table


def bar_legend() -> Text:
    text = Text("bars: ")
    for name in CATEGORIES:
        text.append("█", style=BAR_STYLES[name])
        text.append(f" {CATEGORY_LABELS[name]}  ")
    text.append("\n* week only partly in the period; the total of active accounts counts distinct accounts; "
                "migrated: accounts whose last release made another way (evidence on the index) fell in the week")
    return text


def evidence_table(report: Report) -> Table:
    """Each account's releases made another way after its SSH uploads: project, file, when."""
    table = _table("Evidence on the index: releases made another way after SSH uploads",
                   ["account", "status", "project", "file", "published", "known from", "after SSH upload"])
    for a in report.accounts:
        for e in a.evidence:
            table.add_row(a.name, a.status, e.project, e.filename, when(e.published_at), KNOWN_FROM[e.source],
                          when(e.follows))
    return table


def evidence_note(report: Report) -> Text:
    if report.evidence_read_at is None:
        return Text(NOT_READ_YET)
    return Text(f"Evidence from the index as last read {when(report.evidence_read_at)} UTC "
                "(pypissh-migrate evidence refresh).")


def accounts_table(report: Report) -> Table:
    table = _table("Accounts", ["account", "status", "last use", "sessions", "forwarded", "last upload",
                                "projects", "key fingerprints", "SSH client", "User-Agent", "weak key",
                                "notified"], right=("sessions", "forwarded"))
    for a in report.accounts:
        name = a.name + (" (exempt)" if a.exempt else "") + (" (disabled)" if a.disabled else "")
        table.add_row(name, a.status, when(a.last_use), str(a.sessions), str(a.counts["forwarded"]),
                      when(a.last_upload), _list(a.projects), _list(a.fingerprints), _list(a.ssh_clients),
                      _list(a.user_agents), "yes" if a.weak_key else "no", _notified(a))
    fingerprints = table.columns[7]  # pasted into `keys revoke`: never split over lines
    fingerprints.no_wrap = True
    fingerprints.min_width = max([len(f) for a in report.accounts for f in a.fingerprints] + [16])
    return table


def projects_table(report: Report) -> Table:
    table = _table("Projects uploaded over SSH in the period",
                   ["project", "last SSH upload", "last attempt", "sessions", "forwarded", "accounts"],
                   right=("sessions", "forwarded"))
    for p in report.projects:
        table.add_row(p.name, when(p.last_upload), when(p.last_attempt), str(p.sessions), str(p.uploads),
                      ", ".join(p.accounts) or "-")
    return table


def changes_table(report: Report) -> Table:
    table = _table("Schedule changes and notify runs in the period (admin journal)",
                   ["when", "what", "by", "reason"])
    for change in report.changes:
        table.add_row(when(change.at), change.label, change.actor, change.reason or "-")
    return table


def statuses_table(report: Report) -> Table:
    counts = report.status_counts()
    table = _table("Account statuses", ["status", "accounts", "meaning"], right=("accounts",))
    for status in STATUSES:
        table.add_row(status, str(counts[status]), STATUS_HELP[status])
    return table


def render(report: Report, console: Console) -> None:
    """The report on `console`: boxed tables on a terminal; for a pipe or a file, plain columns
    as wide as their contents (for grep, awk and less), and the verdict as plain lines."""
    plain = not console.is_terminal
    period = report.period
    last_day = period.until - dt.timedelta(microseconds=1)
    console.print(Text(f"SSH upload path report: {period.since:%Y-%m-%d %H:%M} to {last_day:%Y-%m-%d %H:%M} UTC "
                       f"({period.days:.0f} days), generated {when(report.generated_at)} UTC; times are UTC",
                       style="bold"))
    console.print(Text(f"registry: {report.database or '-'}"))
    console.print(verdict_text(report) if plain else verdict_panel(report))
    parts: list = []
    if report.verdict.would_break:
        parts.append(would_break_table(report))
    if report.verdict.trend:
        parts.append(trend_table(report))
    parts += [weeks_table(report), bar_legend(), accounts_table(report), statuses_table(report),
              projects_table(report)]
    if report.changes:
        parts.append(changes_table(report))
    if any(a.evidence for a in report.accounts):
        parts.append(evidence_table(report))
    parts.append(evidence_note(report))
    if report.unattributed_sessions:
        parts.append(Text(f"{report.unattributed_sessions} session(s) in the period belong to accounts "
                          "deleted since; they are counted in the weeks but not under any account."))
    upcoming = [m for m in report.markers if m.starts_at >= period.until]
    if upcoming:
        parts.append(Text("After this period: " + "; ".join(marker_label(m) for m in upcoming)))
    for part in parts:
        if plain and isinstance(part, Table):
            part.box = None
            part.pad_edge = False
        console.print()
        console.print(part)
