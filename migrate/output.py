"""Terminal output for the admin tools: rich tables and consistent dates."""

from __future__ import annotations

import datetime as dt

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)


def when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


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
    if console.is_terminal:
        width = sum((c.min_width or 6) + 3 for c in result.columns) + 1
    else:
        width = Measurement.get(console, console.options.update(width=1000), result).maximum
    if width <= console.width:
        console.print(result)
        return
    # Console.print never goes wider than the console, so a wider one prints this table.
    Console(file=console.file, width=width, highlight=False, soft_wrap=True, force_terminal=console.is_terminal,
            no_color=console.no_color, color_system=console.color_system).print(result)
