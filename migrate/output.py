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
