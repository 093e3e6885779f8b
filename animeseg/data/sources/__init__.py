"""Dataset sources: each turns one ``sources`` entry of ``datasets.yaml`` into examples.

A source works in two steps so that the work can be spread over processes and memory stays flat:

* :meth:`Source.tasks` (main process) lists the work cheaply: file paths, annotation offsets, composite numbers.
  It decides the train/val split of every task.
* :meth:`Source.load` (any process) turns one task into an :class:`~animeseg.data.example.Example`, reading only
  the files that task needs. It must depend on the task and the config alone, never on state built by ``tasks``,
  because a worker process builds its own ``Source`` from the same config.
"""

from __future__ import annotations

from animeseg.data.config import SourceConfig
from animeseg.data.sources.base import (
    TRAIN,
    VAL,
    BuildContext,
    Listing,
    Source,
    Task,
    choose_val,
    relative,
    repeat_count,
    stable_hash,
)

__all__ = [
    "TRAIN",
    "VAL",
    "BuildContext",
    "Listing",
    "Source",
    "Task",
    "choose_val",
    "make_source",
    "relative",
    "repeat_count",
    "stable_hash",
]


def make_source(config: SourceConfig, ctx: BuildContext) -> Source:
    """The :class:`Source` for a validated source entry."""
    from animeseg.data.sources.coco import CocoSource
    from animeseg.data.sources.composite import CompositeSource
    from animeseg.data.sources.labelme import LabelmeSource
    from animeseg.data.sources.mask_pairs import MaskPairsSource
    from animeseg.data.sources.yolo import YoloSource

    kinds = {
        "composite": CompositeSource,
        "mask_pairs": MaskPairsSource,
        "coco": CocoSource,
        "labelme": LabelmeSource,
        "yolo": YoloSource,
    }
    return kinds[config.type](config, ctx)
