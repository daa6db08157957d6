"""The report's chart as inline SVG for the HTML page: the shapes, worked out here, that the
template `chart.svg.j2` draws.

Hand-written rather than drawn by a plotting library: the chart is a few dozen rectangles, lines
and labels, and matplotlib would add tens of megabytes to every install for this one picture. So
`report --format html` works on a core install; the PNG (`--chart`) still uses matplotlib, and both
take colours, the time axis and the marker rules from `plot`, so they show the same thing.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from migrate.report import plot
from migrate.report.model import CATEGORIES, CATEGORY_LABELS, Change, Report

WIDTH = 1100
PLOT_LEFT, PLOT_RIGHT = 70.0, 1030.0
PLOT_TOP, PLOT_BOTTOM = 48.0, 330.0
# Below the slanted date labels of the x axis (about 40 px deep), with room to spare.
LEGEND_TOP = 410.0
LEGEND_ROW = 20.0
LEGEND_COLUMNS = 3
SESSIONS_HEADROOM = 1.15  # room above the tallest bar, as in the PNG
ACCOUNTS_HEADROOM = 1.25
DASHES = {"--": "6 4", ":": "2 3", "-": ""}  # the PNG's line styles as SVG dash arrays


@dataclass(frozen=True)
class Scale:
    """A linear map from data values to pixels."""

    low: float
    high: float
    low_px: float
    high_px: float

    def __call__(self, value: float) -> float:
        if self.high == self.low:
            return self.low_px
        return self.low_px + (value - self.low) / (self.high - self.low) * (self.high_px - self.low_px)


@dataclass(frozen=True)
class Bar:
    week: str
    category: str
    label: str
    count: int
    x: float
    y: float
    width: float
    height: float
    color: str


@dataclass(frozen=True)
class Point:
    week: str
    value: int
    x: float
    y: float


@dataclass(frozen=True)
class MigrationMark:
    """Accounts that migrated in one week: a diamond near the top of the plot, with the count."""

    week: str
    count: int
    x: float
    y: float

    @property
    def diamond(self) -> str:
        return f"{self.x},{self.y - 6} {self.x + 6},{self.y} {self.x},{self.y + 6} {self.x - 6},{self.y}"


@dataclass(frozen=True)
class MarkerShape:
    """A retirement date: a vertical line (`width` 0) or a band."""

    kind: str
    label: str
    date: str
    x: float
    width: float
    color: str
    dash: str


@dataclass(frozen=True)
class ChangeMark:
    """An admin change from the journal: a small triangle above the plot, with a faint line down."""

    kind: str
    label: str  # what, when, who and why (the mark's tooltip)
    date: str
    x: float
    color: str

    @property
    def triangle(self) -> str:
        return f"{self.x - 5},{PLOT_TOP - 12} {self.x + 5},{PLOT_TOP - 12} {self.x},{PLOT_TOP - 3}"


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class LegendEntry:
    label: str
    color: str
    shape: str  # box | line | band | point | triangle
    dash: str
    x: float
    y: float


@dataclass(frozen=True)
class SvgChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    title: str
    bars: tuple[Bar, ...]
    points: tuple[Point, ...]
    markers: tuple[MarkerShape, ...]
    x_ticks: tuple[Tick, ...]
    session_ticks: tuple[Tick, ...]
    account_ticks: tuple[Tick, ...]
    legend: tuple[LegendEntry, ...]
    after_period: tuple[float, float] | None  # x and width of the shaded span after the period
    changes: tuple[ChangeMark, ...] = ()
    migrations: tuple[MigrationMark, ...] = ()
    accounts_color: str = plot.ACCOUNTS_COLOR
    migrations_color: str = plot.MIGRATIONS_COLOR
    after_period_color: str = plot.AFTER_PERIOD_COLOR

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x},{p.y}" for p in self.points)


def _px(value: float) -> float:
    return round(value, 1)


def nice_ticks(maximum: float, headroom: float, count: int = 5) -> tuple[int, list[int]]:
    """The axis top and whole-number ticks at a step of 1, 2 or 5 times a power of ten."""
    wanted = max(maximum * headroom, 1.0)
    raw = wanted / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(int(m * magnitude) for m in (1, 2, 5, 10) if m * magnitude >= raw)
    top = step * math.ceil(wanted / step)
    return top, list(range(0, top + 1, step))


def _seconds(when: dt.datetime, since: dt.datetime) -> float:
    return (when - since).total_seconds()


def layout(report: Report) -> SvgChart:
    """Every shape of the chart, in SVG user units (the view box is WIDTH wide)."""
    axis = plot.time_axis(report)
    x = Scale(0.0, _seconds(axis.right, axis.since), PLOT_LEFT, PLOT_RIGHT)

    def at(when: dt.datetime) -> float:
        return x(_seconds(when, axis.since))

    stacks = [sum(w.counts[name] for name in CATEGORIES) for w in report.weeks]
    sessions_top, session_values = nice_ticks(max(stacks, default=0), SESSIONS_HEADROOM)
    sessions = Scale(0, sessions_top, PLOT_BOTTOM, PLOT_TOP)
    accounts_top, account_values = nice_ticks(max((w.active_accounts for w in report.weeks), default=0),
                                              ACCOUNTS_HEADROOM)
    accounts = Scale(0, accounts_top, PLOT_BOTTOM, PLOT_TOP)
    bar_width = at(axis.since + dt.timedelta(days=plot.BAR_DAYS)) - PLOT_LEFT

    bars: list[Bar] = []
    points: list[Point] = []
    for week in report.weeks:
        centre = at(plot.week_centre(week))
        below = 0
        for name in CATEGORIES:
            count = week.counts[name]
            if not count:
                continue
            top_px, bottom_px = sessions(below + count), sessions(below)
            bars.append(Bar(week.label, name, CATEGORY_LABELS[name], count, _px(centre - bar_width / 2),
                            _px(top_px), _px(bar_width), _px(bottom_px - top_px), plot.COLORS[name]))
            below += count
        points.append(Point(week.label, week.active_accounts, _px(centre), _px(accounts(week.active_accounts))))

    markers, outside = [], []
    for placed in (plot.place_marker(m, axis) for m in report.markers):
        if not placed.shown:
            outside.append(placed)
            continue
        left = max(at(placed.start), PLOT_LEFT)
        width = min(at(placed.end), PLOT_RIGHT) - left if placed.end is not None else 0.0  # a band
        markers.append(MarkerShape(placed.marker.kind, placed.label, f"{placed.start:%Y-%m-%d}", _px(left),
                                   _px(width), placed.color, DASHES.get(placed.style, "")))

    changes = tuple(ChangeMark(c.kind, _change_title(c), f"{c.at:%Y-%m-%d}", _px(at(plot.naive(c.at))),
                               plot.CHANGE_COLORS.get(c.kind, plot.DEFAULT_MARKER_STYLE[0]))
                    for c in report.changes if axis.contains(plot.naive(c.at)))
    migrations = tuple(MigrationMark(week.label, week.migrations, _px(at(centre)), PLOT_TOP + 12)
                       for week, centre in plot.migration_weeks(report))

    after_period = None
    if axis.right > axis.until:
        after_period = (_px(at(axis.until)), _px(PLOT_RIGHT - at(axis.until)))

    entries = [(CATEGORY_LABELS[name], plot.COLORS[name], "box", "") for name in CATEGORIES
               if any(w.counts[name] for w in report.weeks)]
    entries += [(m.label, m.color, "band" if m.width else "line", m.dash) for m in markers]
    entries += [(p.label, p.color, "line", DASHES.get(p.style, "")) for p in outside]
    entries += [(plot.CHANGE_LEGEND[kind], plot.CHANGE_COLORS[kind], "triangle", "") for kind in plot.CHANGE_LEGEND
                if any(c.kind == kind for c in changes)]
    entries.append(("active accounts", plot.ACCOUNTS_COLOR, "point", ""))
    if migrations:
        entries.append((plot.MIGRATIONS_LABEL, plot.MIGRATIONS_COLOR, "diamond", ""))
    legend = tuple(_legend_entry(index, *entry) for index, entry in enumerate(entries))
    rows = math.ceil(len(legend) / LEGEND_COLUMNS)

    return SvgChart(
        width=WIDTH,
        height=int(LEGEND_TOP + rows * LEGEND_ROW + 10),
        left=PLOT_LEFT, right=PLOT_RIGHT, top=PLOT_TOP, bottom=PLOT_BOTTOM,
        title=plot.chart_title(report),
        bars=tuple(bars),
        points=tuple(points),
        markers=tuple(markers),
        x_ticks=tuple(Tick(_px(at(day)), f"{day:%Y-%m-%d}") for day in plot.tick_mondays(axis, len(report.weeks))),
        session_ticks=tuple(Tick(_px(sessions(v)), str(v)) for v in session_values),
        account_ticks=tuple(Tick(_px(accounts(v)), str(v)) for v in account_values),
        legend=legend,
        after_period=after_period,
        changes=changes,
        migrations=migrations,
    )


def _change_title(change: Change) -> str:
    why = f" ({change.reason})" if change.reason else ""
    return f"{change.at:%Y-%m-%d %H:%M} UTC: {change.label}, by {change.actor}{why}"


def _legend_entry(index: int, label: str, color: str, shape: str, dash: str) -> LegendEntry:
    column_width = (PLOT_RIGHT - PLOT_LEFT) / LEGEND_COLUMNS
    row, column = divmod(index, LEGEND_COLUMNS)
    return LegendEntry(label, color, shape, dash, _px(PLOT_LEFT + column * column_width),
                       _px(LEGEND_TOP + row * LEGEND_ROW))
