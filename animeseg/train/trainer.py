"""Ultralytics' segmentation trainer with the AMP check kept offline.

A module of its own because it imports Ultralytics at import time: multi-GPU workers unpickle the trainer class by
name in new processes, so the class must live at module level, and :mod:`animeseg.train.yolo` must stay importable
without Ultralytics.
"""

from __future__ import annotations

import os
from typing import Any

from animeseg._offline import import_ultralytics

import_ultralytics()

import torch  # noqa: E402
from ultralytics.models.yolo.segment import SegmentationTrainer  # noqa: E402


def _amp_check(model: Any) -> bool:
    from animeseg.train import amp

    return amp.offline_check_amp(model)  # looked up at call time, so tests can observe it


class AnimesegTrainer(SegmentationTrainer):
    """Ultralytics' segmentation trainer whose AMP check never downloads
    (:func:`animeseg.train.amp.offline_check_amp`)."""

    def _setup_train(self):
        import ultralytics.engine.trainer as engine

        if self.device.type == "cpu":
            # Ultralytics trains on one thread fewer than the cores (one thread on a 2-core laptop): half speed.
            torch.set_num_threads(os.cpu_count() or 1)
        original = engine.check_amp
        engine.check_amp = _amp_check
        try:
            return super()._setup_train()
        finally:
            engine.check_amp = original
