"""Generated backdrops: the plain backgrounds of character art (white, flat colour, gradient, paper, pattern).

A composite whose ``backdrop`` share comes up gets one of these instead of a crop of a background file. Its
provenance records ``{"kind", "seed"}``; :func:`make` turns that back into the same pixels, so everything but the
kind (colours, directions, pattern sizes) follows from the seed.
"""

from __future__ import annotations

import colorsys
from typing import Any

import numpy as np

from animeseg._lazy import cv2

KINDS = ("white", "flat", "gradient", "paper", "pattern")


def _colour(rng: np.random.Generator, pale: bool = False) -> np.ndarray:
    """An RGB colour (3,) float32: any hue; pale ones as illustrators' backdrops mostly are."""
    h = rng.random()
    s = rng.uniform(0.05, 0.35) if pale else rng.uniform(0.2, 0.9)
    v = rng.uniform(0.85, 1.0) if pale else rng.uniform(0.25, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    """Low-frequency noise (H, W) float32 in about [-1, 1]: a ``cells``-wide random grid, resized smoothly."""
    grid = rng.standard_normal((max(2, cells * h // max(w, 1)), cells)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def make(spec: dict[str, Any], width: int, height: int) -> np.ndarray:
    """The backdrop of ``spec`` (``{"kind", "seed"}``) at ``width`` x ``height``: (H, W, 3) float32 in [0, 255]."""
    kind = spec["kind"]
    rng = np.random.default_rng(spec["seed"])
    w, h = width, height
    if kind == "white":
        tint = 255 - rng.uniform(0, 14, 3).astype(np.float32)
        return np.broadcast_to(tint, (h, w, 3)).astype(np.float32)
    if kind == "flat":
        return np.broadcast_to(_colour(rng, pale=rng.random() < 0.5), (h, w, 3)).astype(np.float32)
    if kind == "gradient":
        a, b = _colour(rng, pale=rng.random() < 0.6), _colour(rng, pale=rng.random() < 0.6)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        if rng.random() < 0.3:  # radial, a glow behind the character
            cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.7) * h
            t = np.hypot(xs - cx, ys - cy) / np.hypot(w, h) * rng.uniform(1.2, 2.5)
        else:
            angle = rng.uniform(0, 2 * np.pi)
            t = (xs * np.cos(angle) + ys * np.sin(angle)) / max(w, h)
            t = t - t.min()
            t = t / max(float(t.max()), 1e-6)
        t = np.clip(t, 0, 1)[..., None]
        return (a * (1 - t) + b * t).astype(np.float32)
    if kind == "paper":
        base = np.array([rng.uniform(235, 255), rng.uniform(228, 250), rng.uniform(205, 240)], np.float32)
        fibres = _smooth_noise(rng, w, h, int(rng.integers(8, 40))) * rng.uniform(2, 8)
        grain = rng.standard_normal((h, w)).astype(np.float32) * rng.uniform(1, 5)
        return np.clip(base + (fibres + grain)[..., None], 0, 255).astype(np.float32)
    if kind == "pattern":
        a, b = _colour(rng, pale=True), _colour(rng, pale=rng.random() < 0.5)
        period = int(rng.integers(8, 48))
        ys, xs = np.mgrid[0:h, 0:w]
        style = int(rng.integers(4))
        if style == 0:  # polka dots
            r = period * rng.uniform(0.15, 0.35)
            on = np.hypot((xs % period) - period / 2, (ys % period) - period / 2) < r
        elif style == 1:  # stripes at an angle
            angle = rng.uniform(0, np.pi)
            on = ((xs * np.cos(angle) + ys * np.sin(angle)) // (period / 2)) % 2 == 0
        elif style == 2:  # checks
            on = ((xs // period) + (ys // period)) % 2 == 0
        else:  # grid lines
            width = max(1, period // 8)
            on = ((xs % period) < width) | ((ys % period) < width)
        out = np.where(on[..., None], b, a).astype(np.float32)
        return cv2.GaussianBlur(out, (0, 0), 0.6)
    raise ValueError(f"unknown backdrop kind {kind!r} (expected one of: {', '.join(KINDS)})")
