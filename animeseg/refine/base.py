"""The refiner interface: one class per method, returning candidate masks for boxes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Candidates:
    """Candidate masks for N instances, K candidates each.

    Attributes:
        masks: (N, K, H, W) bool at full image resolution.
        scores: (N, K) float32, the refiner's own confidence in each candidate (SAM's predicted IoU, say).
        alphas: (N, K, H, W) uint8 soft alpha of each candidate (0-255; its mask is where it is >= 128), from
            refiners that predict one (the learned refiner); None otherwise. Cut-outs use it.
    """

    masks: np.ndarray
    scores: np.ndarray
    alphas: np.ndarray | None = None


@runtime_checkable
class Refiner(Protocol):
    """Anything that proposes better masks for detected instances.

    ``name`` is recorded in each instance's refinement record. ``candidates`` receives the RGB image (H, W, 3)
    uint8, the instances' boxes (N, 4) xyxy float pixels and their current masks (N, H, W) bool, and returns
    :class:`Candidates`; it must not drop or reorder instances.
    """

    name: str

    def candidates(self, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray) -> Candidates: ...


@contextmanager
def torch_threads() -> Iterator[None]:
    """Run torch on every CPU the process may use inside the block, then restore the count found.

    Ultralytics' ``select_device`` (called by every YOLO predict and ``--device`` check) sets torch to
    ``cpu_count - 1`` threads: one on a 2-core machine, where a SAM encoder then takes about 1.5x as long. The
    count is only ever raised here, never lowered.
    """
    import torch

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores > before:
        torch.set_num_threads(cores)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SamCalls:
    """What every PyTorch SAM refiner keeps: boxes per decoder call by device, and counts of encoder and decoder
    calls (tests and benches read them). A subclass sets ``self.model`` (with an ``image_encoder``), then calls
    :meth:`_count_calls`."""

    model: Any

    def _count_calls(self, chunk: int | None) -> None:
        """``chunk``: most boxes per decoder call; None: 4 on a CPU, 64 on a GPU."""
        if chunk is None:
            chunk = 4 if self.device.type == "cpu" else 64
        self.chunk = max(1, int(chunk))
        self.encoder_calls = 0
        self.decoder_calls = 0
        self.model.image_encoder.register_forward_pre_hook(self._count_encoder)

    def _count_encoder(self, module: Any, args: Any) -> None:
        self.encoder_calls += 1

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device
