"""Terminal output: one stderr console, progress bars and summary tables in one style."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

#: Messages, progress and tables go to stderr so stdout stays clean for piping. Text is never wrapped:
#: a message naming a file must stay one line that grep and logs can take whole.
console = Console(stderr=True, highlight=False, soft_wrap=True)


def progress(*extra_columns: Any, transient: bool = False) -> Progress:
    """A rich progress bar with count, elapsed and remaining time, plus any ``extra_columns``."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not console.is_terminal and not _force_progress(),
    )


def _force_progress() -> bool:
    import os

    return os.environ.get("ANIMESEG_PROGRESS", "") == "1"


def warn(message: str) -> None:
    """One warning line (bad input skipped, option ignored...). ``message`` is plain text, never markup: file
    names and hints such as ``art[1].png`` or ``'.[web]'`` print as they are."""
    console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def error(message: str) -> None:
    """One error line (plain text, as :func:`warn`)."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def summary_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A compact table for the end of a command; print it with ``console.print``."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
