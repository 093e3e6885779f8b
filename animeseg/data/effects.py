"""Effects in front of the characters: petals, sparkles, snow, light streaks, speech bubbles and lettering.

Each effect is recorded in a composite's provenance as ``{"kind", "seed"}``; :func:`draw` turns a list of them
into one colour layer and its alpha, a pure function of the records and the canvas size. Where that alpha is
>= 0.5 an effect hides the character under it, so the masks lose those pixels (step 4 of the recipe in
:mod:`animeseg.data.painting`); light streaks stay below that and hide nothing.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

from animeseg._lazy import cv2

KINDS = ("petals", "sparkles", "snow", "streaks", "bubbles", "text")
_FONTS = (0, 1, 2, 3, 4, 6, 7)  # OpenCV's built-in Hershey fonts: no font file needed
_LETTERS = string.ascii_uppercase + "!?"


def _star(cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """A four-pointed sparkle's outline, (8, 1, 2) int32."""
    pts = []
    for k in range(8):
        rr = r if k % 2 == 0 else r * 0.22
        t = angle + k * np.pi / 4
        pts.append((cx + rr * np.cos(t), cy + rr * np.sin(t)))
    return np.round(np.array(pts)).astype(np.int32).reshape(-1, 1, 2)


def _text(layer: np.ndarray, alpha: np.ndarray, text: str, org: tuple, font: int, size: float, colour, thick: int):
    """Hershey lettering in ``colour`` onto the float layer (OpenCV draws text on 8-bit images only)."""
    ink = np.zeros(alpha.shape, np.uint8)
    cv2.putText(ink, text, (int(org[0]), int(org[1])), font, size, 255, thick, cv2.LINE_AA)
    a = ink.astype(np.float32) / 255.0
    on = a > 0
    layer[on] = colour
    np.maximum(alpha, a, out=alpha)


def _scribble(layer: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, box: tuple, ink: tuple) -> None:
    """Lines of lettering inside ``box`` (x0, y0, x1, y1): random capitals, or vertical stroke columns as
    Japanese text looks at a glance."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if rng.random() < 0.5:
        rows = int(rng.integers(1, 4))
        size = max(0.3, bh / (rows + 1) / 30)
        for r in range(rows):
            text = "".join(rng.choice(list(_LETTERS), int(rng.integers(3, 9))))
            y = int(y0 + (r + 1) * bh / (rows + 1) + 10 * size)
            font = int(rng.choice(_FONTS))
            _text(layer, alpha, text, (x0 + bw * 0.05, y), font, size, ink, max(1, round(size * 1.5)))
        return
    cols = int(rng.integers(2, 6))
    step = bw / (cols + 1)
    for c in range(cols):
        x = x0 + (c + 1) * step
        y = y0 + bh * 0.1
        while y < y1 - bh * 0.15:
            g = step * 0.35
            pts = np.round([(x + rng.uniform(-g, g), y + rng.uniform(0, g)) for _ in range(3)]).astype(np.int32)
            cv2.polylines(layer, [pts.reshape(-1, 1, 2)], False, ink, 1, cv2.LINE_AA)
            cv2.polylines(alpha, [pts.reshape(-1, 1, 2)], False, 1.0, 1, cv2.LINE_AA)
            y += g * 2.2


def _one(kind: str, rng: np.random.Generator, layer: np.ndarray, alpha: np.ndarray) -> None:
    h, w = alpha.shape
    s = min(w, h)
    if kind == "petals":
        tints = [(255, 190, 210), (255, 225, 235), (250, 250, 250), (240, 120, 150)]
        colour = tuple(float(c) for c in tints[int(rng.integers(len(tints)))])
        for _ in range(int(rng.integers(8, 40))):
            c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            ax = (max(2, int(rng.uniform(0.008, 0.03) * s)), max(1, int(rng.uniform(0.004, 0.015) * s)))
            ang = float(rng.uniform(0, 180))
            cv2.ellipse(layer, c, ax, ang, 0, 360, colour, -1, cv2.LINE_AA)
            cv2.ellipse(alpha, c, ax, ang, 0, 360, float(rng.uniform(0.7, 1.0)), -1, cv2.LINE_AA)
    elif kind == "sparkles":
        for _ in range(int(rng.integers(4, 25))):
            colour = (255.0, 255.0, float(rng.uniform(150, 255)))
            star = _star(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.01, 0.06) * s, rng.uniform(0, np.pi))
            cv2.fillPoly(layer, [star], colour, cv2.LINE_AA)
            cv2.fillPoly(alpha, [star], 1.0, cv2.LINE_AA)
    elif kind == "snow":
        flakes = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(30, 200))):
            c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            cv2.circle(flakes, c, max(1, int(rng.uniform(0.002, 0.012) * s)), float(rng.uniform(0.6, 1.0)), -1)
        flakes = cv2.GaussianBlur(flakes, (0, 0), float(rng.uniform(0.5, 1.5)))
        layer[flakes > 0] = (250.0, 250.0, 255.0)
        np.maximum(alpha, flakes, out=alpha)
    elif kind == "streaks":  # light through a window, lens streaks: bright, thin, see-through
        band = np.zeros((h, w), np.float32)
        angle = rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xs * np.cos(angle) + ys * np.sin(angle)
        for _ in range(int(rng.integers(1, 5))):
            centre, width = rng.uniform(t.min(), t.max()), rng.uniform(0.01, 0.08) * s
            band = np.maximum(band, np.exp(-(((t - centre) / width) ** 2)) * rng.uniform(0.15, 0.45))
        layer[band > 0.01] = (255.0, 250.0, float(rng.uniform(200, 255)))
        np.maximum(alpha, band, out=alpha)
    elif kind == "bubbles":  # a speech balloon with its tail and lettering
        bw, bh = rng.uniform(0.15, 0.35) * w, rng.uniform(0.1, 0.25) * h
        cx, cy = rng.uniform(bw / 2, w - bw / 2), rng.uniform(bh / 2, h - bh / 2)
        tail = np.round([(cx - bw * 0.1, cy), (cx + bw * 0.1, cy), (cx + rng.uniform(-bw, bw) * 0.6, cy + bh)])
        shape = np.zeros((h, w), np.uint8)
        cv2.ellipse(shape, (int(cx), int(cy)), (int(bw / 2), int(bh / 2)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        cv2.fillPoly(shape, [tail.astype(np.int32).reshape(-1, 1, 2)], 255, cv2.LINE_AA)
        edge = cv2.morphologyEx(shape, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 64
        inside = shape >= 128
        layer[inside] = (255.0, 255.0, 255.0)
        layer[edge] = (20.0, 20.0, 20.0)
        np.maximum(alpha, shape.astype(np.float32) / 255.0, out=alpha)
        box = (cx - bw * 0.35, cy - bh * 0.3, cx + bw * 0.35, cy + bh * 0.3)
        _scribble(layer, alpha, rng, box, (20.0, 20.0, 20.0))
    elif kind == "text":  # captions and sound effects: big letters with an outline
        size = rng.uniform(0.6, 2.5) * s / 400
        text = "".join(rng.choice(list(_LETTERS), int(rng.integers(2, 7))))
        org = (int(rng.uniform(0, 0.7) * w), int(rng.uniform(0.15, 1.0) * h))
        font = int(rng.choice(_FONTS))
        thick = max(1, round(size * rng.uniform(1.5, 4)))
        fill = tuple(float(c) for c in rng.uniform(0, 255, 3))
        _text(layer, alpha, text, org, font, size, (255.0, 255.0, 255.0), thick + 4)
        _text(layer, alpha, text, org, font, size, fill, thick)
    else:
        raise ValueError(f"unknown effect {kind!r} (expected one of: {', '.join(KINDS)})")


def draw(records: list[dict[str, Any]], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The effects of ``records``, in order: ``(colour (H, W, 3) float32 in [0, 255], alpha (H, W) float32 in
    [0, 1])``."""
    layer = np.zeros((height, width, 3), np.float32)
    alpha = np.zeros((height, width), np.float32)
    for rec in records:
        _one(rec["kind"], np.random.default_rng(rec["seed"]), layer, alpha)
    return layer, np.clip(alpha, 0.0, 1.0)
