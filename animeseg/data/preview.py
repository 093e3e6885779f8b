"""``preview.jpg``: a grid of written images with their ground-truth masks drawn, to look at before training."""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

import numpy as np

from animeseg._lazy import cv2
from animeseg.io import read_image
from animeseg.masks import decode_rle


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct bright RGB colours (golden-ratio hues)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((0.12 + i * 0.618034) % 1.0, 0.85, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def draw_instances(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """``image`` (H, W, 3) with each (H, W) bool mask filled in its own colour and outlined."""
    out = image.astype(np.float32)
    colours = palette(len(masks))
    for mask, colour in zip(masks, colours, strict=True):
        out[mask] = out[mask] * (1 - alpha) + np.array(colour, np.float32) * alpha
    out = out.astype(np.uint8)
    for mask, colour in zip(masks, colours, strict=True):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 1, lineType=cv2.LINE_AA)
    return out


def tile(image: np.ndarray, masks: list[np.ndarray], caption: str, size: int) -> np.ndarray:
    """One ``size`` x ``size`` cell: the image fitted (letterboxed on dark grey), masks drawn, caption below."""
    h, w = image.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    small_masks = [
        cv2.resize(m.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST).astype(bool) for m in masks
    ]
    cell = np.full((size, size, 3), 32, np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    cell[y0 : y0 + nh, x0 : x0 + nw] = draw_instances(small, small_masks)
    cv2.rectangle(cell, (0, size - 18), (size, size), (0, 0, 0), -1)
    cv2.putText(cell, caption[:40], (4, size - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return cell


def render_preview(root: Path, samples: list[dict[str, Any]], cell: int = 256, columns: int = 4) -> np.ndarray | None:
    """The preview grid of ``samples`` (``file`` relative to ``root``, ``masks`` as COCO RLEs, ``caption``)."""
    cells = []
    for s in samples:
        image = read_image(Path(root) / s["file"])
        masks = [decode_rle(r) for r in s["masks"]]
        cells.append(tile(image, masks, s["caption"], cell))
    if not cells:
        return None
    columns = min(columns, len(cells))
    rows = -(-len(cells) // columns)
    grid = np.full((rows * cell + (rows + 1) * 4, columns * cell + (columns + 1) * 4, 3), 16, np.uint8)
    for i, c in enumerate(cells):
        r, k = divmod(i, columns)
        y, x = 4 + r * (cell + 4), 4 + k * (cell + 4)
        grid[y : y + cell, x : x + cell] = c
    return grid
