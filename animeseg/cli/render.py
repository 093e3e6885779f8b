"""What the library reports, made visible: progress steps as bars, log records as one line each."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from rich.markup import escape
from rich.progress import TextColumn

from animeseg.cli.console import console, progress
from animeseg.progress import Step


class _ConsoleHandler(logging.Handler):
    """Log records of the ``animeseg`` logger as console lines: warnings and errors labelled, info plain. Messages
    are plain text, never markup (a file called ``art[1].png`` prints as it is)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted must not end a run
            self.handleError(record)
            return
        if record.levelno >= logging.ERROR:
            console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False, markup=True)
        elif record.levelno >= logging.WARNING:
            console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False, markup=True)
        else:
            console.print(message, soft_wrap=True, highlight=False, markup=False)


def setup_logging() -> None:
    """Show the library's warnings and notes on the console (once per process, whatever the command)."""
    logger = logging.getLogger("animeseg")
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    logger.setLevel(logging.INFO)


def _info_text(info: dict[str, Any]) -> str:
    parts = []
    for key, value in info.items():
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        parts.append(f"{text} {key}")
    return "  ".join(parts)


class ProgressBars:
    """A ``on_progress`` callback that draws one rich bar per task; use as a context manager.

    Each :class:`~animeseg.progress.Step` moves its task's bar to ``done`` of ``total``; ``label`` becomes the
    bar's description (shortened) and ``info`` is shown after the count.
    """

    def __init__(self, transient: bool = False) -> None:
        self.bar = progress(TextColumn("{task.fields[info]}"), transient=transient)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ProgressBars:
        self.bar.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.__exit__(kind, exc, tb)

    def __call__(self, step: Step) -> None:
        label = step.label or step.task
        label = label if len(label) <= 40 else "..." + label[-37:]
        if step.task not in self.tasks:
            self.tasks[step.task] = self.bar.add_task(label, total=step.total, info="")
        self.bar.update(
            self.tasks[step.task], completed=step.done, total=step.total, description=label, info=_info_text(step.info)
        )


def print_run_summary(summary: Any) -> None:
    """The end-of-run table of ``animeseg predict`` (a :class:`animeseg.runs.RunSummary`)."""
    from animeseg.cli.console import console, summary_table

    console.print(summary_table(f"animeseg predict -> {summary.out}", ["", "count"], summary.rows()))
    if summary.retryable:
        console.print(f"{summary.failed} input(s) failed (one line each above); run again with --resume to retry them")
    elif summary.failed:
        console.print(f"{summary.failed} input(s) failed (one line each above): they are not usable images or videos")
    if summary.predictions is not None:
        console.print(f"predictions: {summary.predictions}", soft_wrap=True)
