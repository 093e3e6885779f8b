"""The refiner interface: one class per method, returning candidate masks for boxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class Candidates:
    """Candidate masks for N instances, K candidates each.

    Attributes:
        masks: (N, K, H, W) bool at full image resolution.
        scores: (N, K) float32, the refiner's own confidence in each candidate (SAM's predicted IoU, say).
    """

    masks: np.ndarray
    scores: np.ndarray


@runtime_checkable
class Refiner(Protocol):
    """Anything that proposes better masks for detected instances.

    ``name`` is recorded in each instance's refinement record. ``candidates`` receives the RGB image (H, W, 3)
    uint8, the instances' boxes (N, 4) xyxy float pixels and their current masks (N, H, W) bool, and returns
    :class:`Candidates`; it must not drop or reorder instances.
    """

    name: str

    def candidates(self, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray) -> Candidates: ...
