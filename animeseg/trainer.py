"""Ultralytics' segmentation trainer with the AMP check kept offline.

A module of its own because it imports Ultralytics at import time: multi-GPU workers unpickle the trainer class by
name in new processes, so the class must live at module level, and :mod:`animeseg.train` must stay importable
without Ultralytics.
"""

from __future__ import annotations

from typing import Any

from animeseg._offline import import_ultralytics

import_ultralytics()

from ultralytics.models.yolo.segment import SegmentationTrainer  # noqa: E402


def _amp_check(model: Any) -> bool:
    from animeseg import train

    return train.offline_check_amp(model)  # looked up at call time, so tests can observe it


class AnimesegTrainer(SegmentationTrainer):
    """Ultralytics' segmentation trainer whose AMP check never downloads (see ``train.offline_check_amp``)."""

    def _setup_train(self):
        import ultralytics.engine.trainer as engine

        original = engine.check_amp
        engine.check_amp = _amp_check
        try:
            return super()._setup_train()
        finally:
            engine.check_amp = original
