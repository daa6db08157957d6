"""`pypissh-migrate report`: who still uploads over SSH, and is it safe to switch the path off?"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from gateway import setting_texts
from gateway.cliutil import Context, database_name, pass_context

if TYPE_CHECKING:
    from migrate.report.model import Report

FORMATS = ("table", "csv", "json", "html")
# A pipe has no width: only a line longer than this (no table of the report) would wrap.
PLAIN_WIDTH = 1000


def _write(path: Path, data: str | bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}; choose another --output") from None
    click.echo(f"wrote {path}", err=True)


@click.command("report")
@click.option("--since", default="90d", show_default=True, metavar="DATE|Nd|Nw",
              help="Start of the period: a date (YYYY-MM-DD), an ISO time, or a span back from --until "
                   "such as 90d or 12w.")
@click.option("--until", metavar="DATE",
              help="End of the period: a date (that whole day is included) or an ISO time. Default: now.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table for people; csv or json for scripts; html for one self-contained page with the chart.")
@click.option("--output", type=click.Path(path_type=Path),
              help="Write to PATH instead of standard output. With --format csv, PATH is a folder that "
                   "gets one <section>.csv per section (or one file holding every section if PATH ends in .csv).")
@click.option("--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Also write the chart (weekly sessions and active accounts, retirement dates marked) as a PNG "
                   "(needs the [report] extra: matplotlib).")
@pass_context
def report(obj: Context, since: str, until: str | None, fmt: str, output: Path | None,
           chart_path: Path | None) -> None:
    """Report who still uploads over the SSH path and whether it is safe to switch it off.

    From the upload events of the period: SSH sessions per ISO week by outcome and active accounts;
    per account its last use, sessions, projects, key fingerprints, client banners, weak keys,
    notices delivered and a status (notified-still-using, mixed-use, active, dormant,
    quiet-since-notice, migrated, never-used); per project its last SSH upload. The verdict names
    the accounts that would break if the sunset were today, with the evidence, and compares usage
    before and after each notice, campaign and brownout. `migrated` and `mixed-use` come from the
    index (run `pypissh-migrate evidence refresh` first): migrated accounts are left off the
    accounts that would break, and the releases that show it are listed. A registry with no
    accounts or no keys is reported as empty, never as safe. Every format names the registry it
    read. Everything is as of the end of the period; times are UTC.

    CSV sections: summary, would_break, trend, weeks, accounts, projects, markers, evidence. On
    standard output they follow each other, each with its own header row whose first column is
    `section`, separated by a blank line; lists inside a cell are separated by " | ".
    """
    from migrate.report import build, logic

    chart = _chart_module() if chart_path is not None else None
    try:
        period = logic.parse_period(since, until, obj.now())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    result = build.build_report(obj.registry(), period, generated_at=obj.now(),
                                database=database_name(obj.settings()))

    if chart is not None and chart_path is not None:  # loaded for --chart only
        _write(chart_path, chart.png(result))

    if fmt == "json":
        from migrate.report import tabular

        _emit(tabular.to_json(result), output)
    elif fmt == "csv":
        from migrate.report import tabular

        if output is not None and output.suffix.lower() != ".csv":
            try:
                for path in tabular.write_csv_dir(result, output):
                    click.echo(f"wrote {path}", err=True)
            except OSError as exc:
                raise click.ClickException(f"cannot write CSV files into {output}: {exc.strerror or exc}") from None
        else:
            _emit(tabular.to_csv(result), output)
    elif fmt == "html":
        from migrate.report import html

        _emit(html.render(result), output)
    else:
        from migrate.report import terminal

        console = Console(highlight=False)
        if output is None and console.is_terminal:
            terminal.render(result, console)
        else:
            _emit(plain_report(result), output)


def plain_report(result: Report) -> str:
    """The table report for a pipe or a file: plain columns as wide as their contents, never folded
    to a width nobody's terminal has, and no trailing blanks (for grep, awk, cut and less)."""
    from migrate.report import terminal

    buffer = io.StringIO()
    terminal.render(result, Console(file=buffer, width=PLAIN_WIDTH, highlight=False, color_system=None))
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def _chart_module():
    """The PNG renderer, or a one-line error naming the extra that brings matplotlib."""
    try:
        from migrate.report import chart
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "matplotlib":
            raise
        raise click.ClickException(setting_texts.missing_extra("the chart", "matplotlib", "report")) from None
    return chart


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        _write(output, text)
