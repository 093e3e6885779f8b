"""Distractors: hard negatives for composites (the ``distractors`` option of a composite source).

A distractor is an unlabelled patch cut from a background image, in a smooth random shape (an ellipse, a rounded
rectangle or a star-shaped polygon), pasted into a composite under its characters: it teaches a detector that a
cut-out-looking object is not a character by its outline alone. A distractor is recorded in the composite's
provenance line as ``{"file", "crop", "size", "at", "seed"}``: the background file (relative to the source's
backgrounds folder), the region cut from it ``[x0, y0, x1, y1]``, the patch's ``[width, height]`` in the
composite, its top-left corner there (it may stick out of the frame) and the seed of its shape.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from animeseg._lazy import cv2
from animeseg.data.geometry import cover_crop
from animeseg.data.sources.base import relative
from animeseg.errors import InputError


def distractor_alpha(seed: int, width: int, height: int) -> np.ndarray:
    """The anti-aliased shape of a distractor patch, (height, width) uint8: an ellipse, a rounded rectangle or a
    star-shaped polygon, drawn at 4x and area-averaged down; a pure function of ``seed``."""
    rng = np.random.default_rng(seed)
    s = 4
    big_w, big_h = width * s, height * s
    shape = np.zeros((big_h, big_w), np.uint8)
    kind = int(rng.integers(3))
    centre = (big_w // 2, big_h // 2)
    if kind == 0:
        cv2.ellipse(shape, centre, (big_w // 2 - 1, big_h // 2 - 1), 0, 0, 360, 255, -1)
    elif kind == 1:
        r = max(1, int(rng.uniform(0.05, 0.45) * min(big_w, big_h)))
        cv2.rectangle(shape, (r, 0), (big_w - 1 - r, big_h - 1), 255, -1)
        cv2.rectangle(shape, (0, r), (big_w - 1, big_h - 1 - r), 255, -1)
        for cx, cy in ((r, r), (big_w - 1 - r, r), (r, big_h - 1 - r), (big_w - 1 - r, big_h - 1 - r)):
            cv2.circle(shape, (cx, cy), r, 255, -1)
    else:
        k = int(rng.integers(5, 13))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = rng.uniform(0.55, 1.0, k)
        pts = np.stack(
            [
                centre[0] + radii * np.cos(angles) * (big_w / 2 - 1),
                centre[1] + radii * np.sin(angles) * (big_h / 2 - 1),
            ],
            1,
        )
        cv2.fillPoly(shape, [np.round(pts).astype(np.int32)], 255)
    return cv2.resize(shape, (width, height), interpolation=cv2.INTER_AREA)


def paste_distractors(canvas: np.ndarray, records: list[dict[str, Any]], sources: list[np.ndarray]) -> None:
    """Blend the distractors ``records`` into ``canvas`` (H, W, 3) float32 in place; ``sources`` are the decoded
    background files they are cut from (RGB), in the same order."""
    if len(sources) != len(records):
        raise ValueError(f"{len(records)} distractors need their {len(records)} background images, got {len(sources)}")
    h, w = canvas.shape[:2]
    for d, source in zip(records, sources, strict=True):
        x0, y0, x1, y1 = d["crop"]
        pw, ph = d["size"]
        ax, ay = d["at"]
        cx0, cy0, cx1, cy1 = max(ax, 0), max(ay, 0), min(ax + pw, w), min(ay + ph, h)
        if cx0 >= cx1 or cy0 >= cy1:
            continue
        patch = cv2.resize(source[y0:y1, x0:x1], (pw, ph), interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = distractor_alpha(d["seed"], pw, ph).astype(np.float32)[..., None] / 255.0
        px0, py0 = cx0 - ax, cy0 - ay
        a = alpha[py0 : py0 + cy1 - cy0, px0 : px0 + cx1 - cx0]
        p = patch[py0 : py0 + cy1 - cy0, px0 : px0 + cx1 - cx0]
        canvas[cy0:cy1, cx0:cx1] = canvas[cy0:cy1, cx0:cx1] * (1.0 - a) + p * a


def draw_distractors(
    rng: np.random.Generator,
    options: dict[str, Any],
    backgrounds: list[Path],
    root: Path,
    size: tuple[int, int],
    load: Callable[[Path], np.ndarray],
    bad: list[tuple[str, str]],
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Draw one composite's distractors: ``(records, background images they are cut from)``.

    ``options``: the source's, with ``distractors`` (count range) and ``distractor_scale`` (height as a share of
    the canvas height); ``backgrounds``: the files to cut from (``root``: their folder, for the records);
    ``size``: the canvas ``(width, height)``; ``load`` decodes a file (may raise :class:`InputError`: the file
    goes to ``bad`` and the patch is dropped). Nothing is drawn from ``rng`` when the count range is ``[0, 0]``.
    """
    lo, hi = options["distractors"]
    if hi == 0:
        return [], []
    w, h = size
    records: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        path = backgrounds[int(rng.integers(len(backgrounds)))]
        height = float(rng.uniform(*options["distractor_scale"])) * h
        aspect = float(np.exp(rng.uniform(np.log(0.25), np.log(1.5))))  # width / height: tall things mostly
        fx, fy, fw, ax, ay = (float(v) for v in rng.random(5))
        seed = int(rng.integers(2**31))
        try:
            source = load(path)
        except InputError as e:
            bad.append((str(path), e.problem))
            continue
        pw, ph = max(4, round(height * aspect)), max(4, round(height))
        # a region of the source with the patch's aspect, a quarter to all of the source's extent
        x0, y0, x1, y1 = cover_crop(source.shape[1], source.shape[0], pw, ph, 1.0 / (0.25 + 0.75 * fw), fx, fy)
        records.append(
            {
                "file": relative(path, root),
                "crop": [x0, y0, x1, y1],
                "size": [pw, ph],
                "at": [round(ax * w - pw / 2), round(ay * h - ph / 2)],
                "seed": seed,
            }
        )
        images.append(source)
    return records, images
