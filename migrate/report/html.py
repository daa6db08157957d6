"""The report as one self-contained HTML page: inline CSS and the chart as inline SVG (no scripts,
no images, nothing loaded from elsewhere, no plotting library needed)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import jinja2

from migrate.report import svg
from migrate.report.model import CATEGORIES, CATEGORY_LABELS, KNOWN_FROM, NOT_READ_YET, STATUS_HELP, STATUSES, Report
from migrate.report.plot import marker_label


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("migrate.report", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def render(report: Report) -> str:
    period = report.period
    return _environment().get_template("report.html.j2").render(
        report=report,
        c=svg.layout(report),
        since=f"{period.since:%Y-%m-%d %H:%M}",
        last_day=f"{period.until - dt.timedelta(microseconds=1):%Y-%m-%d %H:%M}",
        generated=_when(report.generated_at),
        when=_when,
        marker_label=marker_label,
        categories=CATEGORIES,
        labels=CATEGORY_LABELS,
        statuses=STATUSES,
        status_counts=report.status_counts(),
        status_help=STATUS_HELP,
        active_accounts=sum(1 for a in report.accounts if a.sessions),
        migrations=sum(w.migrations for w in report.weeks),
        evidence_rows=[(a, e) for a in report.accounts for e in a.evidence],
        known_from=KNOWN_FROM,
        not_read_yet=NOT_READ_YET,
    )
