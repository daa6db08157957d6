"""The report's chart as a PNG (`report --chart FILE.png`): weekly sessions by outcome, active
accounts, and the retirement's dates.

Needs matplotlib, which comes with the `[report]` extra; the HTML page draws the same chart as
inline SVG without it (`svg`). Drawn with matplotlib's Agg canvas (no display, no pyplot global
state), so it works on a server and in threads. `figure()` returns the figure so tests can check
what was drawn before it is saved.
"""

from __future__ import annotations

import datetime as dt
import io

from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from migrate.report import plot
from migrate.report.model import CATEGORIES, CATEGORY_LABELS, Report
from migrate.report.plot import COLORS


def _x(when: dt.datetime) -> float:
    """A time as a position on the x axis (matplotlib's date numbers, the days since its epoch)."""
    return float(mdates.date2num(when))


def figure(report: Report) -> Figure:
    fig = Figure(figsize=(11, 5.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    axis = plot.time_axis(report)

    centres = [_x(plot.week_centre(w)) for w in report.weeks]
    bottom = [0] * len(report.weeks)
    for name in CATEGORIES:
        heights = [w.counts[name] for w in report.weeks]
        if not any(heights):
            continue
        ax.bar(centres, heights, width=plot.BAR_DAYS, bottom=bottom, color=COLORS[name], label=CATEGORY_LABELS[name])
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_ylabel("SSH sessions per week")
    ax.set_ylim(0, max([*bottom, 1]) * 1.15)

    accounts_axis = ax.twinx()
    accounts_axis.plot(centres, [w.active_accounts for w in report.weeks], color=plot.ACCOUNTS_COLOR, marker="o",
                       linewidth=1.8, label="active accounts")
    accounts_axis.set_ylabel("active accounts per week")
    accounts_axis.set_ylim(0, max([w.active_accounts for w in report.weeks] + [1]) * 1.25)

    migrated = plot.migration_weeks(report)
    if migrated:
        top = ax.get_ylim()[1]
        ax.scatter([_x(x) for _, x in migrated], [top * 0.95] * len(migrated), marker="D", s=40,
                   color=plot.MIGRATIONS_COLOR, label=plot.MIGRATIONS_LABEL, zorder=3)
        for week, x in migrated:
            ax.annotate(str(week.migrations), (_x(x), top * 0.95), xytext=(7, -4), textcoords="offset points",
                        fontsize=8, color=plot.MIGRATIONS_COLOR)

    for placed in (plot.place_marker(m, axis) for m in report.markers):
        if not placed.shown:
            ax.plot([], [], color=placed.color, linestyle=placed.style, label=placed.label)
        elif placed.end is not None:  # a band
            ax.axvspan(_x(placed.start), _x(placed.end), color=placed.color, alpha=0.35, label=placed.label)
        else:
            ax.axvline(_x(placed.start), color=placed.color, linestyle=placed.style, linewidth=2, label=placed.label)

    if axis.right > axis.until:
        ax.axvspan(_x(axis.until), _x(axis.right), color=plot.AFTER_PERIOD_COLOR, alpha=0.12, linewidth=0)
        ax.text(_x(axis.until + (axis.right - axis.until) / 2), ax.get_ylim()[1] * 0.95, "after the period",
                ha="center", va="top", fontsize=9, color="#5a6270")
    ax.set_xlim(_x(axis.since), _x(axis.right))
    ax.xaxis.set_major_locator(mdates.WeekdayLocator(byweekday=mdates.MO,
                                                     interval=max(1, round(len(report.weeks) / plot.MAX_TICKS))))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.set_title(plot.chart_title(report))
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
