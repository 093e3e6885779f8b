"""The record every source produces, and the resizing rules they share.

An :class:`Example` is one image at its *written* size (long side at most ``imgsz``; never upscaled) with its
instance masks at that same size. Sources downscale each mask as soon as it is made, so a large original never
holds more than one full-resolution mask at a time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from animeseg._lazy import cv2
from animeseg.io import _pil_open


class SkipItem(Exception):
    """An item that cannot be used: ``file`` and a one-line ``reason`` go to the warning and the manifest."""

    #: How the manifest counts it: ``bad`` (warned about), ``empty`` or ``crowd`` (counted silently).
    kind = "bad"

    def __init__(self, file: str | Path, reason: str):
        self.file, self.reason = str(file), reason
        super().__init__(f"{file}: {reason}")


class EmptyItem(SkipItem):
    """An item with nothing to learn from (no instances) and ``keep_empty`` off: left out, counted, no warning."""

    kind = "empty"


class CrowdItem(SkipItem):
    """An image left out because it holds a crowd / ignore region (``crowd: skip_image``): counted, no warning."""

    kind = "crowd"


@dataclass
class Example:
    """One image ready to write.

    Attributes:
        image: (H, W, 3) uint8 RGB at the written size.
        masks: (N, H, W) bool instance masks at the written size, or None when ``rles`` holds the instances.
        classes: (N,) int64 class ids.
        provenance: what the image was made from (source files, composite parameters...), JSON-ready.
        polygons: optional (K, 2) float polygons in [0, 1] per instance (None entries allowed): outlines a source
            already has (a YOLO label, a COCO polygon) are kept; the others are traced from the masks.
        rles: optional COCO RLE per instance at the written size, instead of ``masks``: a source that has
            polygons rasterises them straight to RLE (no full-size mask per instance).
        copy_from: an original file whose bytes may be copied unchanged (no resize, no orientation change).
        dropped: instance counts left out, by reason ("label 'dog' not mapped", "crowd region"...).
        files_read: how many source files were opened to make it.
        bad_files: (file, reason) of source files that could not be used while making it (a composite goes on
            without a broken foreground); they are listed in the manifest once each.
    """

    image: np.ndarray
    masks: np.ndarray | None
    classes: np.ndarray
    provenance: dict[str, Any]
    polygons: list[np.ndarray | None] | None = None
    rles: list[dict[str, Any]] | None = None
    copy_from: Path | None = None
    dropped: Counter = field(default_factory=Counter)
    files_read: int = 1
    bad_files: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if self.masks is not None:
            self.masks = np.asarray(self.masks, dtype=bool).reshape(-1, h, w)
        n = len(self.masks) if self.masks is not None else len(self.rles or [])
        if n != len(self.classes) or (self.polygons is not None and len(self.polygons) != n):
            raise ValueError(f"{n} instances for {len(self.classes)} classes")


def fit_size(width: int, height: int, imgsz: int) -> tuple[int, int]:
    """(width, height) with the long side at most ``imgsz``, aspect kept; never upscaled."""
    long_side = max(width, height)
    if long_side <= imgsz:
        return int(width), int(height)
    s = imgsz / long_side
    return max(1, round(width * s)), max(1, round(height * s))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image to (width, height); area averaging when shrinking (no aliasing)."""
    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    shrink = size[0] < image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a (H, W) bool mask to (width, height): area coverage >= 50 %, so areas stay unbiased."""
    if mask.shape[1] == size[0] and mask.shape[0] == size[1]:
        return mask
    cover = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    return cover >= 128


def stack_masks(masks: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """A list of (H, W) bool masks as one (N, H, W) array (N may be 0)."""
    if not masks:
        return np.zeros((0, height, width), bool)
    return np.stack(masks).astype(bool)


def copyable(path: Path) -> bool:
    """True when ``path``'s bytes can be written unchanged: a JPEG or PNG in RGB or grey, without EXIF rotation or
    transparency, so what Ultralytics decodes from the copy is exactly the image the labels were made on."""
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        return False
    try:
        with _pil_open(path) as im:
            return (
                im.format in ("JPEG", "PNG")
                and im.mode in ("RGB", "L")
                and "transparency" not in im.info
                and im.getexif().get(0x0112, 1) == 1
            )
    except Exception:
        return False
