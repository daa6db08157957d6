"""The report's chart: weekly sessions by outcome, active accounts, and the retirement's dates.

Drawn with matplotlib's Agg canvas (no display, no pyplot global state), so it works on a server
and in threads. `figure()` returns the figure so tests can check what was drawn before it is saved.
"""

from __future__ import annotations

import datetime as dt
import io

from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from migrate.report.model import CATEGORIES, CATEGORY_LABELS, Marker, Report

COLORS = {
    "forwarded": "#4c9a2a",
    "refused_upstream": "#c0392b",
    "refused_schedule": "#e67e22",
    "bad_request": "#8e44ad",
    "client_aborted": "#7f8c8d",
    "upstream_error": "#2c3e50",
    "other": "#bdc3c7",
}
MARKER_STYLES = {  # kind -> (color, line style)
    "notice": ("#1f5fbf", "--"),
    "campaign": ("#7d3c98", ":"),
    "brownout": ("#e67e22", "-"),
    "pause": ("#555555", "-"),
    "sunset": ("#b03a2e", "-"),
}


def _naive(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None)


def marker_label(marker: Marker) -> str:
    day = f"{marker.starts_at:%Y-%m-%d}"
    if marker.kind in ("brownout", "pause") and marker.ends_at:
        same_day = marker.ends_at.date() == marker.starts_at.date()
        day += f" {marker.starts_at:%H:%M}-{marker.ends_at:%H:%M}" if same_day else f" to {marker.ends_at:%Y-%m-%d}"
    return f"{marker.label} {day}"


def figure(report: Report) -> Figure:
    fig = Figure(figsize=(11, 5.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    since, until = _naive(report.period.since), _naive(report.period.until)
    right = until
    sunset = next((m for m in report.markers if m.kind == "sunset"), None)
    if sunset and until < _naive(sunset.starts_at) <= until + (until - since):
        right = _naive(sunset.starts_at) + dt.timedelta(days=3)  # near enough to show how close it is

    centres = [dt.datetime.combine(w.start, dt.time()) + dt.timedelta(days=3.5) for w in report.weeks]
    bottom = [0] * len(report.weeks)
    for name in CATEGORIES:
        heights = [w.counts[name] for w in report.weeks]
        if not any(heights):
            continue
        ax.bar(centres, heights, width=6, bottom=bottom, color=COLORS[name], label=CATEGORY_LABELS[name])
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_ylabel("SSH sessions per week")
    ax.set_ylim(0, max([*bottom, 1]) * 1.15)

    accounts_axis = ax.twinx()
    accounts_axis.plot(centres, [w.active_accounts for w in report.weeks], color="#111111", marker="o",
                       linewidth=1.8, label="active accounts")
    accounts_axis.set_ylabel("active accounts per week")
    accounts_axis.set_ylim(0, max([w.active_accounts for w in report.weeks] + [1]) * 1.25)

    for marker in report.markers:
        color, style = MARKER_STYLES.get(marker.kind, ("#333333", "-"))
        start = _naive(marker.starts_at)
        label = marker_label(marker)
        shown = since <= start <= right or (marker.ends_at and since <= _naive(marker.ends_at) <= right)
        if not shown:
            label += " (outside the chart)"
            ax.plot([], [], color=color, linestyle=style, label=label)
        elif marker.kind in ("brownout", "pause") and marker.ends_at:
            # A brownout of hours would be invisible at this scale: at least a day wide.
            end = max(_naive(marker.ends_at), start + dt.timedelta(days=1))
            ax.axvspan(start, end, color=color, alpha=0.35, label=label)
        else:
            ax.axvline(start, color=color, linestyle=style, linewidth=2, label=label)

    if right > until:
        ax.axvspan(until, right, color="#9aa3ad", alpha=0.12, linewidth=0)
        ax.text(until + (right - until) / 2, ax.get_ylim()[1] * 0.95, "after the period", ha="center", va="top",
                fontsize=9, color="#5a6270")
    ax.set_xlim(since, right)
    ax.xaxis.set_major_locator(mdates.WeekdayLocator(byweekday=mdates.MO,
                                                     interval=max(1, round(len(report.weeks) / 12))))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.set_title(f"SSH upload path, {report.period.since:%Y-%m-%d} to "
                 f"{report.period.until - dt.timedelta(seconds=1):%Y-%m-%d}: sessions by outcome and active accounts")
    ax.grid(axis="y", alpha=0.3)
    fig.autofmt_xdate()
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = accounts_axis.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=3, fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.07, right=0.93, top=0.92, bottom=0.36)
    return fig


def png(report: Report) -> bytes:
    buffer = io.BytesIO()
    figure(report).savefig(buffer, format="png")
    return buffer.getvalue()
