"""The record that flows between stages: detected (or labelled) instances of one image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Instances:
    """Instances of one image, all arrays aligned on the first axis (N instances).

    Attributes:
        boxes: (N, 4) float32, ``x1, y1, x2, y2`` in pixels of the full-resolution image.
        scores: (N,) float32 confidences in [0, 1] (1.0 for ground truth).
        classes: (N,) int64 class ids.
        masks: (N, H, W) bool masks at full image resolution.
        names: class id -> class name.
        refine: one dict per instance saying which mask was kept and why (empty dicts when not refined).
        track_ids: (N,) int64 ids linking instances across the frames of one sequence (see
            :mod:`animeseg.track`); None when the instances were not tracked.
        alphas: (N, H, W) uint8 soft alpha (0-255) of each instance, from a refiner that predicts one (the
            learned refiner); None otherwise. ``--alpha matte`` cut-outs use it instead of image matting.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    refine: list[dict[str, Any]] = field(default_factory=list)
    track_ids: np.ndarray | None = None
    alphas: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        self.masks = np.asarray(self.masks, dtype=bool)
        n = len(self.boxes)
        if not (len(self.scores) == len(self.classes) == len(self.masks) == n):
            raise ValueError(
                f"Instances arrays disagree: boxes {n}, scores {len(self.scores)}, "
                f"classes {len(self.classes)}, masks {len(self.masks)}"
            )
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be (N, H, W), got shape {self.masks.shape}")
        if not self.refine:
            self.refine = [{} for _ in range(n)]
        elif len(self.refine) != n:
            raise ValueError(f"refine has {len(self.refine)} records for {n} instances")
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
            if len(self.track_ids) != n:
                raise ValueError(f"track_ids has {len(self.track_ids)} ids for {n} instances")
        if self.alphas is not None:
            self.alphas = np.asarray(self.alphas, dtype=np.uint8)
            if self.alphas.shape != self.masks.shape:
                raise ValueError(f"alphas {self.alphas.shape} do not match masks {self.masks.shape}")

    @classmethod
    def empty(cls, height: int, width: int, names: dict[int, str] | None = None) -> Instances:
        """No instances, for an image of ``height`` x ``width``."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, height, width), bool), dict(names or {}))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the image the masks belong to."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def __getitem__(self, index: Any) -> Instances:
        """A subset by integer array, slice or boolean mask (always returns Instances)."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Instances(
            self.boxes[idx],
            self.scores[idx],
            self.classes[idx],
            self.masks[idx],
            dict(self.names),
            [self.refine[i] for i in idx],
            self.track_ids[idx] if self.track_ids is not None else None,
            self.alphas[idx] if self.alphas is not None else None,
        )

    def boxes_from_masks(self) -> np.ndarray:
        """Tight (N, 4) xyxy boxes around each mask (pixel edges, so a 1-pixel mask is 1 wide); zeros if empty."""
        from animeseg.masks import mask_to_box

        return np.array([mask_to_box(m) for m in self.masks], dtype=np.float32).reshape(-1, 4)

    def areas(self) -> np.ndarray:
        """(N,) int64 mask areas in pixels."""
        return self.masks.reshape(len(self), -1).sum(1).astype(np.int64)

    def class_names(self) -> list[str]:
        """Name of each instance's class (the id as text when unnamed)."""
        return [self.names.get(int(c), str(int(c))) for c in self.classes]


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as an array, or a ValueError when it is not RGB (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    return image


def unrefined_record(reason: str = "no refiner") -> dict[str, Any]:
    """The refinement record of an instance that kept the detector's mask without any refiner being asked."""
    return {
        "method": "none",
        "refined": False,
        "candidate": None,
        "candidate_score": None,
        "agreement": None,
        "reason": reason,
    }
