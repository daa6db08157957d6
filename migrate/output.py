"""Output for the admin tools: rich tables for people (plain columns when piped), JSON and CSV
for scripts, and consistent dates."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)


def when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def stamp(value: dt.datetime | None) -> str | None:
    """A time for scripts: UTC ISO 8601, e.g. 2026-11-24T09:30:00Z (None stays None)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


TABLE_FORMATS = ("table", "json", "csv")
TEXT_FORMATS = ("text", "json")
F = TypeVar("F", bound=Callable[..., object])  # a command function


def format_option(choices: Sequence[str] = TABLE_FORMATS) -> Callable[[F], F]:
    """--format for a listing: people get the first choice; scripts json (and csv for tables)."""
    return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True,
                        help=f"{choices[0]} for people; " + " or ".join(choices[1:]) + " for scripts.")


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return stamp(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def emit_json(data: Any) -> None:
    """One JSON document on stdout (times in UTC ISO 8601)."""
    click.echo(json.dumps(data, indent=2, default=_plain))


def emit_csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """A CSV table on stdout: a header row, then one row per item; lists joined by spaces."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _cell(row[c]) for c in columns])
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return stamp(value) or ""
    return str(value)


def table(title: str | None, columns: list[str]) -> Table:
    result = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        result.add_column(column)
    return result


def print_table(result: Table, *, whole: tuple[str, ...] = ("fingerprint",)) -> None:
    """Print a table without ever cutting the values of the `whole` columns (fingerprints are
    copied into commands). Piped output gets the table's natural width; a terminal keeps its
    width, with the other columns folded to fit."""
    from rich.measure import Measurement

    for column in result.columns:
        if column.header in whole:
            cells = [str(cell) for cell in column.cells]
            column.no_wrap = True
            column.min_width = max([len(str(column.header)), *map(len, cells)])
        else:
            column.overflow = "fold"
    if not console.is_terminal:
        # Piped: plain columns, no box drawing, for grep, awk and cut.
        result.box = None
        result.pad_edge = False
    if console.is_terminal:
        width = sum((c.min_width or 6) + 3 for c in result.columns) + 1
    else:
        width = Measurement.get(console, console.options.update(width=1000), result).maximum
    if width <= console.width:
        console.print(result)
        return
    # Console.print never goes wider than the console, so a wider one prints this table. Rich types
    # the color_system it reports as str; it is one of the names Console takes.
    Console(file=console.file, width=width, highlight=False, soft_wrap=True, force_terminal=console.is_terminal,
            no_color=console.no_color, color_system=console.color_system).print(result)  # type: ignore[arg-type]
