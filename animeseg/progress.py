"""How long work reports progress without printing: an optional callback that receives :class:`Step` records.

Library functions take ``on_progress: ProgressCallback | None``; the command line turns the steps into progress
bars (``animeseg.cli.render``), a web page or a Ray driver can turn them into anything else. Warnings go through
:mod:`logging` (logger ``animeseg``) or into the returned result, never to the terminal directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: The library's logger; the command line attaches a handler that prints one line per record.
logger = logging.getLogger("animeseg")


@dataclass
class Step:
    """Where one task stands.

    Attributes:
        task: a stable key of the task (``predict``, ``evaluate``, a source's name...); one bar per task.
        done: units finished so far (images, frames, epochs...).
        total: units expected, None when unknown; it may change while the task runs (video frame counts).
        label: what is being worked on now (a file name, "epoch 3/10"), for display.
        info: further figures worth showing (``{"instances": 12, "s/image": 0.41}``).
    """

    task: str
    done: int
    total: int | None = None
    label: str = ""
    info: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[Step], None]


def report(on_progress: ProgressCallback | None, step: Step) -> None:
    """Send ``step`` to ``on_progress`` when there is one."""
    if on_progress is not None:
        on_progress(step)
