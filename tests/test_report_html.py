"""The report's HTML page and chart: the page opens in headless Debian chromium without errors and
its screenshot shows the chart; the inline SVG puts every bar, point and date where the axes say;
the PNG chart (matplotlib, the [report] extra) is a valid image with the retirement dates marked."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from matplotlib import dates as mdates
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from gateway.registry import Registry
from gateway.registry.migrate_db import upgrade
from migrate.cli import cli
from migrate.report import chart
from migrate.report.build import build_report
from migrate.report.model import CATEGORIES, Period
from testbed import report_history
from testbed.report_history import SINCE, UNTIL, at

CHROMIUM = shutil.which("chromium")
GENERATED = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)
FORWARDED_GREEN = (0x4C, 0x9A, 0x2A)  # chart.COLORS["forwarded"]
MARKED = ["notice phase 2026-01-19", "campaign 'first-notice' (3 delivered) 2026-01-20",
          "brownout 2026-02-09 10:00-22:00", "sunset 2026-04-01"]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report_html') / 'registry.sqlite3'}"
    upgrade(url)
    registry = Registry.from_url(url)
    report_history.seed(registry)
    registry.engine.dispose()
    return url


@pytest.fixture(scope="module")
def written(database_url, tmp_path_factory):
    """`report --format html --output page.html --chart chart.png` on the seeded history."""
    folder = tmp_path_factory.mktemp("report_out")
    page, png = folder / "page.html", folder / "chart.png"
    result = CliRunner().invoke(cli, ["--set", f"database_url={database_url}", "report", "--since", SINCE,
                                      "--until", UNTIL, "--format", "html", "--output", str(page),
                                      "--chart", str(png)])
    assert result.exit_code == 0, result.output
    return page, png


@pytest.fixture(scope="module")
def browsed(written, tmp_path_factory):
    """Headless chromium's screenshot of the page and its log (console messages included)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (./dev test installs it)")
    page, _ = written
    folder = tmp_path_factory.mktemp("chromium")
    shot = folder / "screenshot.png"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={folder / 'profile'}",
         "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return shot, done.stderr


def _svg(html: str) -> ET.Element:
    (chart,) = re.findall(r"<svg .*?</svg>", html, re.DOTALL)
    return ET.fromstring(chart)


def _ticks(svg: ET.Element, group: str, coordinate: str) -> dict[str, float]:
    """Tick label -> its position on the axis, as the reader sees it."""
    found = {}
    for text in svg.find(f"{SVG}g[@class='{group}']").iter(f"{SVG}text"):
        found[text.text] = float(text.get(coordinate)) - (4 if coordinate == "y" else 0)  # baseline offset
    return found


@pytest.fixture(scope="module")
def seeded_report(database_url):
    registry = Registry.from_url(database_url)
    report = build_report(registry, Period(at(1, 5), at(3, 2)), generated_at=GENERATED)
    registry.engine.dispose()
    return report


def test_html_page_is_self_contained(written):
    """The page loads nothing from elsewhere: inline CSS, the chart as inline SVG, no images or scripts."""
    html = written[0].read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<img" not in html and html.count("<svg ") == 1
    assert not re.search(r'(src|href)="(https?:)?//', html) and "url(" not in html and "<script" not in html
    for section in ("verdict", "would-break", "trend", "weeks", "accounts", "projects", "markers", "evidence"):
        assert f'id="{section}"' in html
    assert "Not yet safe to switch off: 2 accounts would break" in html


def test_html_carries_the_evidence_from_the_index(written):
    """The page names the migrated account in the verdict and lists each release made another way."""
    html = written[0].read_text()
    assert "Migrated, by the evidence on the index (not counted as breaking): bob." in html
    (table,) = re.findall(r'<table id="evidence">.*?</table>', html, re.DOTALL)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)[1:]]
    assert rows == [
        ["dave", "mixed-use", "delta", "delta-1.1.tar.gz", "2026-02-10 09:00", "first seen by evidence refresh",
         "2026-02-03 14:00"],
        ["bob", "migrated", "beta", "beta-2.0.tar.gz", "2026-02-02 10:00", "upload time on the index",
         "2026-01-13 10:00"]]


def test_html_opens_in_chromium_without_errors(browsed):
    """Chromium renders the page with no console message, script error or failed load."""
    _, log = browsed
    problems = [line for line in log.splitlines()
                if ":CONSOLE" in line or "Uncaught" in line or "Failed to load" in line or "net::ERR" in line]
    assert problems == []


def test_screenshot_shows_the_chart(browsed):
    """The screenshot is a valid PNG whose chart region holds the chart's bars, not a blank box."""
    shot, _ = browsed
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1200, 1600)
        pixels = image.convert("RGB")
        width, height = pixels.size
        data = pixels.load()
        green = [(x, y) for y in range(0, height, 2) for x in range(0, width, 2)
                 if all(abs(data[x, y][i] - FORWARDED_GREEN[i]) <= 12 for i in range(3))]
        assert len(green) > 2000  # the forwarded bars, sampled every other pixel
        xs, ys = [x for x, _ in green], [y for _, y in green]
        region = pixels.crop((min(xs), min(ys), max(xs) + 1, max(ys) + 1))
        histogram = region.convert("L").histogram()
        non_white = sum(histogram[:240]) / sum(histogram)
        assert region.width > 500 and region.height > 150
        assert non_white > 0.3


def test_svg_bars_stand_on_the_scale_of_the_axes(written, seeded_report):
    """Each week's bars are stacked from the axis in category order, as tall as their counts on the
    left axis's scale, centred on the week between its Monday ticks; the points follow the right axis."""
    svg = _svg(written[0].read_text())
    days = _ticks(svg, "x-ticks", "x")
    sessions, accounts = _ticks(svg, "session-ticks", "y"), _ticks(svg, "account-ticks", "y")
    per_session = (sessions["0"] - sessions["5"]) / 5
    per_account = (accounts["0"] - accounts["5"]) / 5
    bars = {(b.get("data-week"), b.get("data-category")): b for b in svg.iter(f"{SVG}rect")
            if b.get("class") == "bar"}
    points = {p.get("data-week"): p for p in svg.iter(f"{SVG}circle") if p.get("class") == "point"}
    assert int(bars["2026-W07", "refused_schedule"].get("data-count")) == 1  # the brownout's refusal
    assert int(bars["2026-W09", "forwarded"].get("data-count")) == 3
    for week in seeded_report.weeks:
        monday = days[f"{week.start:%Y-%m-%d}"]
        next_monday = days[f"{week.start + dt.timedelta(weeks=1):%Y-%m-%d}"]
        bottom = sessions["0"]
        for name in CATEGORIES:
            bar = bars.get((week.label, name))
            if not week.counts[name]:
                assert bar is None
                continue
            x, y, width, height = (float(bar.get(a)) for a in ("x", "y", "width", "height"))
            assert int(bar.get("data-count")) == week.counts[name]
            assert height == pytest.approx(week.counts[name] * per_session, abs=0.2)
            assert y + height == pytest.approx(bottom, abs=0.2)
            assert x + width / 2 == pytest.approx((monday + next_monday) / 2, abs=0.2)
            assert width == pytest.approx((next_monday - monday) * 6 / 7, abs=0.2)
            bottom = y
        point = points[week.label]
        assert float(point.get("cx")) == pytest.approx((monday + next_monday) / 2, abs=0.2)
        assert float(point.get("cy")) == pytest.approx(accounts["0"] - week.active_accounts * per_account, abs=0.2)


def test_svg_marks_notice_campaign_brownout_and_sunset(written):
    """Lines at the notice, campaign and sunset dates and a band from the brownout's start, each placed
    on the time axis by its date and time and named in the legend."""
    svg = _svg(written[0].read_text())
    days = _ticks(svg, "x-ticks", "x")
    week = days["2026-01-26"] - days["2026-01-19"]

    def x_of(day: str, offset: dt.timedelta = dt.timedelta()) -> float:
        return days[day] + offset / dt.timedelta(weeks=1) * week

    marks = {m.get("data-kind"): m for m in svg.find(f"{SVG}g[@class='markers']")}
    assert sorted(marks) == ["brownout", "campaign", "notice", "sunset"]
    assert float(marks["notice"].get("x1")) == pytest.approx(x_of("2026-01-19"), abs=0.2)
    assert float(marks["campaign"].get("x1")) == pytest.approx(x_of("2026-01-19", dt.timedelta(days=1, hours=10)), abs=0.2)
    assert float(marks["sunset"].get("x1")) == pytest.approx(x_of("2026-03-30", dt.timedelta(days=2)), abs=0.2)
    band = marks["brownout"]
    assert band.tag == f"{SVG}rect"
    assert float(band.get("x")) == pytest.approx(x_of("2026-02-09", dt.timedelta(hours=10)), abs=0.2)
    assert float(band.get("width")) == pytest.approx(week / 7, abs=0.2)  # 12 hours drawn a day wide
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "legend-label"]
    assert [label for label in labels if label in MARKED] == MARKED
    assert "forwarded" in labels and "active accounts" in labels


def test_svg_marks_the_journals_schedule_changes_and_notify_runs(written):
    """Each schedule change and notify run of the journal is a mark above the chart at the time it
    was made, titled with what changed, who did it and why, and named in the legend."""
    svg = _svg(written[0].read_text())
    days = _ticks(svg, "x-ticks", "x")
    week = days["2026-01-26"] - days["2026-01-19"]
    changes = list(svg.find(f"{SVG}g[@class='changes']"))
    assert [(c.get("data-kind"), c.get("data-date")) for c in changes] == [
        ("schedule", "2026-01-12"), ("schedule", "2026-01-12"), ("campaign", "2026-01-20"),
        ("schedule", "2026-02-02"), ("schedule", "2026-02-02"), ("schedule", "2026-02-10")]
    titles = [c.find(f"{SVG}title").text for c in changes]
    assert titles[0] == ("2026-01-12 09:00 UTC: notice set: 2026-01-19 00:00, by ops (announced on the blog)")
    assert titles[2] == "2026-01-20 10:00 UTC: notify 'first-notice': 3 sent, 1 failed, by ops"
    assert titles[5] == ("2026-02-10 11:00 UTC: brownout 3 cancelled (was 2026-02-16 10:00 to 2026-02-16 22:00), "
                         "by ops (one is enough)")
    tip = changes[5].find(f"{SVG}polygon").get("points").split()[-1]
    assert float(tip.split(",")[0]) == pytest.approx(days["2026-02-09"] + (1 + 11 / 24) / 7 * week, abs=0.2)
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "legend-label"]
    assert "schedule changed (admin journal)" in labels and "notify run (admin journal)" in labels


def test_html_lists_the_journals_changes(written):
    """The page's table of changes names each one with its time, who made it and why."""
    page = written[0].read_text()
    table = page.split('<table id="changes">')[1].split("</table>")[0]
    rows = re.findall(r"<tr data-kind=\"(\w+)\"><td class=\"t\">([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>"
                      r"<td>([^<]+)</td></tr>", table)
    assert len(rows) == 6
    assert rows[4] == ("schedule", "2026-02-02 09:00", "brownout 3 set: 2026-02-16 10:00 to 2026-02-16 22:00",
                       "ops", "-")


def test_svg_marks_migrations_per_week(written):
    """A diamond with the count stands over each week in which accounts migrated, named in the legend."""
    svg = _svg(written[0].read_text())
    days = _ticks(svg, "x-ticks", "x")
    (mark,) = svg.find(f"{SVG}g[@class='migrations']").iter(f"{SVG}polygon")
    assert (mark.get("data-week"), mark.get("data-count")) == ("2026-W06", "1")
    xs = [float(point.split(",")[0]) for point in mark.get("points").split()]
    assert (min(xs) + max(xs)) / 2 == pytest.approx((days["2026-02-02"] + days["2026-02-09"]) / 2, abs=0.2)
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "legend-label"]
    assert "accounts migrated that week (evidence on the index)" in labels


def test_svg_names_a_far_sunset_outside_the_chart(database_url):
    """A sunset long after a short period is not drawn but stays in the legend, flagged as outside."""
    from migrate.report import html

    registry = Registry.from_url(database_url)
    report = build_report(registry, Period(at(1, 5), at(1, 19)), generated_at=GENERATED)
    registry.engine.dispose()
    svg = _svg(html.render(report))
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "legend-label"]
    assert "sunset 2026-04-01 (outside the chart)" in labels
    assert "sunset" not in [m.get("data-kind") for m in svg.find(f"{SVG}g[@class='markers']")]


def test_chart_png_is_a_valid_image(written):
    """`--chart FILE.png` writes a PNG of the whole figure with something drawn on it."""
    with Image.open(written[1]) as image:
        image.verify()
    with Image.open(written[1]) as image:
        assert image.format == "PNG" and image.size == (1100, 560)
        extrema = image.convert("L").getextrema()
        assert extrema[0] < 100 and extrema[1] > 240


def test_chart_marks_notice_campaign_brownout_and_sunset(database_url):
    """The figure draws a line at the notice and campaign dates, a band over the brownout and a line
    at the sunset, each named with its date in the legend."""
    registry = Registry.from_url(database_url)
    report = build_report(registry, Period(at(1, 5), at(3, 2)), generated_at=GENERATED)
    registry.engine.dispose()
    figure = chart.figure(report)
    axes = figure.axes[0]
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert [label for label in labels if label in MARKED] == MARKED
    assert "forwarded" in labels and "active accounts" in labels

    def drawn(label: str):
        return next(artist for artist in [*axes.lines, *axes.patches] if artist.get_label() == label)

    for label, day in (("notice phase 2026-01-19", at(1, 19)), ("sunset 2026-04-01", at(4, 1))):
        line = drawn(label)
        assert isinstance(line, Line2D)
        assert list(line.get_xdata(orig=False)) == [mdates.date2num(day.replace(tzinfo=None))] * 2
    band = drawn("brownout 2026-02-09 10:00-22:00")
    assert isinstance(band, Rectangle)
    assert band.get_x() == pytest.approx(mdates.date2num(at(2, 9, 10).replace(tzinfo=None)))
    left, right = axes.get_xlim()
    assert left == pytest.approx(mdates.date2num(dt.datetime(2026, 1, 5)))
    assert right > mdates.date2num(dt.datetime(2026, 4, 1))  # the sunset is near enough to show


def test_chart_marks_migrations_per_week(seeded_report):
    """The PNG's figure marks the week of each migration, with the count, and names the marks in the legend."""
    axes = chart.figure(seeded_report).axes[0]
    (marks,) = [c for c in axes.collections if c.get_label() == "accounts migrated that week (evidence on the index)"]
    assert [x for x, _ in marks.get_offsets()] == [mdates.date2num(dt.datetime(2026, 2, 5, 12))]
    assert "1" in [t.get_text() for t in axes.texts]
    assert "accounts migrated that week (evidence on the index)" in [t.get_text() for t in axes.get_legend().get_texts()]


def test_chart_names_a_far_sunset_outside_the_chart(database_url):
    """A sunset long after a short period stays in the legend, flagged as outside the chart."""
    registry = Registry.from_url(database_url)
    report = build_report(registry, Period(at(1, 5), at(1, 19)), generated_at=GENERATED)
    registry.engine.dispose()
    labels = [text.get_text() for text in chart.figure(report).axes[0].get_legend().get_texts()]
    assert "sunset 2026-04-01 (outside the chart)" in labels


# Run in the page by headless chromium: every table's right edge and the chart's x-axis labels'
# lowest point and legend's highest, written into the DOM that --dump-dom prints.
MEASURE = """<script>
window.addEventListener("load", () => {
  const tables = {};
  for (const t of document.querySelectorAll("table")) tables[t.id] = t.getBoundingClientRect().right;
  const bottom = (el) => el.getBoundingClientRect().bottom, top = (el) => el.getBoundingClientRect().top;
  const labels = [...document.querySelectorAll("#chart svg g.x-ticks text")];
  const legend = [...document.querySelectorAll("#chart svg g.legend *")];
  document.body.setAttribute("data-measured", JSON.stringify({
    viewport: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth, tables,
    labels_bottom: Math.max(...labels.map(bottom)), legend_top: Math.min(...legend.map(top)),
    labels: labels.length}));
});
</script>"""


@pytest.fixture(scope="module")
def measured(written, tmp_path_factory) -> dict:
    """The page as laid out by headless chromium in a 1280 px wide window."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (./dev test installs it)")
    page, _ = written
    folder = tmp_path_factory.mktemp("chromium-1280")
    probe = folder / "page.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={folder / 'profile'}",
         "--window-size=1280,1600", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'data-measured="([^"]*)"', done.stdout)
    assert found, done.stdout[-2000:]
    import html as html_module
    import json

    return json.loads(html_module.unescape(found.group(1)))


def test_every_table_fits_a_1280_px_window(measured):
    """In a 1280 px window no table runs past the right edge and the page needs no sideways scroll."""
    assert measured["tables"] and "accounts" in measured["tables"]
    for name, right in measured["tables"].items():
        assert right <= measured["viewport"], (name, right, measured["viewport"])
    assert measured["scroll"] <= measured["viewport"]


def test_chart_date_labels_stay_clear_of_the_legend(measured):
    """The x-axis's slanted dates end above the legend's first row, with room between."""
    assert measured["labels"] >= 8
    assert measured["labels_bottom"] + 4 <= measured["legend_top"], measured
