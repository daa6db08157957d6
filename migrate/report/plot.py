"""What both drawings of the report's chart share: colours, the time axis and where each marker goes.

The HTML page draws the chart as inline SVG (`svg`, no dependency) and `--chart FILE.png` draws it
with matplotlib (`chart`, the `[report]` extra); both take their choices from here, so the two
pictures agree. Times are naive UTC datetimes from here on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from migrate.report.model import Marker, Report, Week

COLORS = {
    "forwarded": "#4c9a2a",
    "refused_upstream": "#c0392b",
    "refused_schedule": "#e67e22",
    "bad_request": "#8e44ad",
    "client_aborted": "#7f8c8d",
    "upstream_error": "#2c3e50",
    "unknown": "#f1c40f",
    "other": "#bdc3c7",
}
ACCOUNTS_COLOR = "#111111"
MIGRATIONS_COLOR = "#1e8449"
MIGRATIONS_LABEL = "accounts migrated that week (evidence on the index)"
AFTER_PERIOD_COLOR = "#9aa3ad"
MARKER_STYLES = {  # kind -> (color, line style: "--" dashed, ":" dotted, "-" solid)
    "notice": ("#1f5fbf", "--"),
    "campaign": ("#7d3c98", ":"),
    "brownout": ("#e67e22", "-"),
    "pause": ("#555555", "-"),
    "sunset": ("#b03a2e", "-"),
}
DEFAULT_MARKER_STYLE = ("#333333", "-")
# Admin changes from the journal, drawn as small marks above the plot at the time they were made.
CHANGE_COLORS = {"schedule": "#1d6f6f", "campaign": "#7d3c98"}
CHANGE_LEGEND = {"schedule": "schedule changed (admin journal)", "campaign": "notify run (admin journal)"}
BAR_DAYS = 6  # of the week's 7, so neighbouring weeks stay apart
MIN_BAND = dt.timedelta(days=1)  # a brownout of hours would be invisible at a scale of weeks
MAX_TICKS = 12


def naive(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class TimeAxis:
    """The chart's x range: the period, stretched to a sunset shortly after it."""

    since: dt.datetime
    until: dt.datetime  # end of the period
    right: dt.datetime  # right edge: `until`, or a little past a sunset near enough to show

    def contains(self, when: dt.datetime) -> bool:
        return self.since <= when <= self.right


def time_axis(report: Report) -> TimeAxis:
    since, until = naive(report.period.since), naive(report.period.until)
    right = until
    sunset = next((m for m in report.markers if m.kind == "sunset"), None)
    if sunset and until < naive(sunset.starts_at) <= until + (until - since):
        right = naive(sunset.starts_at) + dt.timedelta(days=3)  # near enough to show how close it is
    return TimeAxis(since, until, right)


def week_centre(week: Week) -> dt.datetime:
    return dt.datetime.combine(week.start, dt.time()) + dt.timedelta(days=3.5)


def marker_label(marker: Marker) -> str:
    day = f"{marker.starts_at:%Y-%m-%d}"
    if marker.kind in ("brownout", "pause") and marker.ends_at:
        same_day = marker.ends_at.date() == marker.starts_at.date()
        day += f" {marker.starts_at:%H:%M}-{marker.ends_at:%H:%M}" if same_day else f" to {marker.ends_at:%Y-%m-%d}"
    return f"{marker.label} {day}"


@dataclass(frozen=True)
class Placement:
    """How one marker is drawn: a line at `start`, a band from `start` to `end`, or only named in
    the legend (`shown` false) when it lies outside the chart."""

    marker: Marker
    label: str
    color: str
    style: str
    shown: bool
    start: dt.datetime
    end: dt.datetime | None = None  # set for bands

    @property
    def band(self) -> bool:
        return self.end is not None


def place_marker(marker: Marker, axis: TimeAxis) -> Placement:
    color, style = MARKER_STYLES.get(marker.kind, DEFAULT_MARKER_STYLE)
    start = naive(marker.starts_at)
    end = naive(marker.ends_at) if marker.ends_at else None
    label = marker_label(marker)
    if not (axis.contains(start) or (end is not None and axis.contains(end))):
        return Placement(marker, f"{label} (outside the chart)", color, style, False, start)
    if marker.kind in ("brownout", "pause") and end is not None:
        return Placement(marker, label, color, style, True, start, max(end, start + MIN_BAND))
    return Placement(marker, label, color, style, True, start)


def tick_mondays(axis: TimeAxis, weeks: int) -> list[dt.datetime]:
    """Mondays to label on the x axis: every week, or every few weeks for a long period."""
    step = max(1, round(weeks / MAX_TICKS))
    day = dt.datetime.combine(axis.since.date(), dt.time()) + dt.timedelta(days=-axis.since.weekday() % 7)
    if day < axis.since:
        day += dt.timedelta(weeks=1)
    found = []
    while day <= axis.right:
        found.append(day)
        day += dt.timedelta(weeks=step)
    return found


def migration_weeks(report: Report) -> list[tuple[Week, dt.datetime]]:
    """The weeks in which accounts migrated, each with the x position of its mark."""
    return [(w, week_centre(w)) for w in report.weeks if w.migrations]


def chart_title(report: Report) -> str:
    last_day = report.period.until - dt.timedelta(seconds=1)
    return (f"SSH upload path, {report.period.since:%Y-%m-%d} to {last_day:%Y-%m-%d}: "
            "sessions by outcome and active accounts")
