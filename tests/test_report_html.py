"""The report's HTML page and chart: the page opens in headless Debian chromium without errors and
its screenshot shows the chart; the PNG chart is a valid image with the retirement dates marked."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess

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
from migrate.report.model import Period
from testbed import report_history
from testbed.report_history import SINCE, UNTIL, at

CHROMIUM = shutil.which("chromium")
GENERATED = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)
FORWARDED_GREEN = (0x4C, 0x9A, 0x2A)  # chart.COLORS["forwarded"]
MARKED = ["notice phase 2026-01-19", "campaign 'first-notice' (3 delivered) 2026-01-20",
          "brownout 2026-02-09 10:00-22:00", "sunset 2026-04-01"]


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


def test_html_page_is_self_contained(written):
    """The page loads nothing from elsewhere: inline CSS, the chart as a PNG data URI, no scripts."""
    html = written[0].read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert re.search(r'<img[^>]+src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', html)
    assert not re.search(r'(src|href)="(https?:)?//', html) and "url(" not in html and "<script" not in html
    for section in ("verdict", "would-break", "trend", "weeks", "accounts", "projects", "markers"):
        assert f'id="{section}"' in html
    assert "Not yet safe to switch off: 2 accounts would break" in html


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


def test_chart_names_a_far_sunset_outside_the_chart(database_url):
    """A sunset long after a short period stays in the legend, flagged as outside the chart."""
    registry = Registry.from_url(database_url)
    report = build_report(registry, Period(at(1, 5), at(1, 19)), generated_at=GENERATED)
    registry.engine.dispose()
    labels = [text.get_text() for text in chart.figure(report).axes[0].get_legend().get_texts()]
    assert "sunset 2026-04-01 (outside the chart)" in labels
