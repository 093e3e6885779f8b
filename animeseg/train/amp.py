"""Ultralytics' automatic-mixed-precision check without its download (used by :mod:`animeseg.train.trainer`).

A module of its own, without Ultralytics at import time, so the YOLO training loop, the trainer class and the
tests share one function (the trainer looks it up at each call, so a test can observe it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: GPUs Ultralytics' own AMP check refuses (NaN losses with float16); kept identical to ``check_amp``.
_AMP_BAD_GPUS = re.compile(
    r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.IGNORECASE
)


def offline_check_amp(model: torch.nn.Module) -> bool:
    """Ultralytics' ``check_amp`` without its download: whether to train this model with mixed precision.

    The original compares FP32 and AMP detections of ``yolo26n.pt``, fetching it from GitHub when missing. We run
    it only when that file is already on disk; otherwise we keep its GPU blacklist and answer like its own
    offline branch does (AMP on), saying so.
    """
    import torch

    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.utils import LOGGER, WEIGHTS_DIR
    from ultralytics.utils.checks import check_amp

    device = next(model.parameters()).device
    if device.type in {"cpu", "mps"}:
        return False
    if (Path(WEIGHTS_DIR) / "yolo26n.pt").is_file():
        return check_amp(model)
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
        if _AMP_BAD_GPUS.search(gpu):
            LOGGER.warning(f"AMP: {gpu} is known to give NaN losses with AMP; training in FP32.")
            return False
    LOGGER.info(
        "AMP: check skipped (offline, its reference model is not on disk); training with AMP. "
        "Pass --arg amp=False if losses become NaN."
    )
    return True
