"""Comic-page layouts: a page cut into panels, each holding a composite of its own, with gutters and borders.

A page's provenance is ``{"panels": [{"box": [x0, y0, x1, y1], "record": <a composite record>}], "border": px,
"paper": grey}``: each panel is a whole composite record of the box's size, so it is re-made like any other and
pasted at its box. Borders are drawn over the panel's edge and hide what they cover, so masks stay exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from animeseg._lazy import cv2


def layout(rng: np.random.Generator, width: int, height: int, panels: tuple[int, int]) -> list[list[int]]:
    """Panel boxes ``[x0, y0, x1, y1]`` for a page of ``width`` x ``height``: the page (less a margin) cut into
    ``panels`` (low, high) pieces by horizontal rows first, then some rows into columns, as pages are read."""
    margin = int(round(min(width, height) * rng.uniform(0.02, 0.05)))
    gutter = max(2, int(round(min(width, height) * rng.uniform(0.01, 0.03))))
    count = int(rng.integers(panels[0], panels[1] + 1))
    rows = max(1, min(count, int(rng.integers(1, 4))))
    per_row = [1] * rows
    for _ in range(count - rows):
        per_row[int(rng.integers(rows))] += 1
    heights = rng.uniform(0.6, 1.4, rows)
    ys = np.concatenate([[0], np.cumsum(heights / heights.sum())])
    boxes: list[list[int]] = []
    inner_w, inner_h = width - 2 * margin, height - 2 * margin
    for r, cols in enumerate(per_row):
        y0 = margin + int(round(ys[r] * inner_h)) + (gutter // 2 if r else 0)
        y1 = margin + int(round(ys[r + 1] * inner_h)) - (gutter // 2 if r < rows - 1 else 0)
        widths = rng.uniform(0.6, 1.4, cols)
        xs = np.concatenate([[0], np.cumsum(widths / widths.sum())])
        for c in range(cols):
            x0 = margin + int(round(xs[c] * inner_w)) + (gutter // 2 if c else 0)
            x1 = margin + int(round(xs[c + 1] * inner_w)) - (gutter // 2 if c < cols - 1 else 0)
            if x1 - x0 >= 16 and y1 - y0 >= 16:
                boxes.append([x0, y0, x1, y1])
    return boxes


def assemble(
    size: tuple[int, int], page: dict[str, Any], panels: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Paste panel images and masks at their boxes: ``(image (H, W, 3) uint8, masks (N, H, W) bool)``.

    ``panels`` holds, per box of ``page["panels"]``, the panel's image (h, w, 3) and its masks (n, h, w); the
    page's masks are the panels' in order, less what the borders cover.
    """
    w, h = size
    image = np.full((h, w, 3), page["paper"], np.uint8)
    border = np.zeros((h, w), np.uint8)
    masks: list[np.ndarray] = []
    t = int(page["border"])
    for spec, (img, m) in zip(page["panels"], panels, strict=True):
        x0, y0, x1, y1 = spec["box"]
        image[y0:y1, x0:x1] = img
        if t > 0:
            cv2.rectangle(border, (x0, y0), (x1 - 1, y1 - 1), 255, t)
        for one in m:
            full = np.zeros((h, w), bool)
            full[y0:y1, x0:x1] = one
            masks.append(full)
    covered = border > 0
    image[covered] = 0
    out = np.array([m & ~covered for m in masks], bool).reshape(-1, h, w)
    return image, out
