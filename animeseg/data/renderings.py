"""Renderings of a whole composite in the looks people bring besides full colour: line art, monochrome,
screentone, pencil sketch, flat colours and old-anime palettes.

A rendering changes pixels only, never where a character is, so the masks stay exact. Its provenance records
``{"kind", "seed"}``; :func:`render` is a pure function of the image and that record.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from animeseg._lazy import cv2

KINDS = ("lineart", "mono", "screentone", "sketch", "flat", "oldanime")


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def ink_lines(grey: np.ndarray, sigma: float, sharpness: float) -> np.ndarray:
    """Extended difference of Gaussians: (H, W) float32 in [0, 1], 0 where a drawn line would be.

    ``grey`` (H, W) float32 in [0, 255]; ``sigma`` the line scale in pixels; ``sharpness`` how hard the lines are.
    """
    g = grey / 255.0
    d = cv2.GaussianBlur(g, (0, 0), sigma) - 0.98 * cv2.GaussianBlur(g, (0, 0), sigma * 1.6)
    return np.where(d >= -0.004, 1.0, 1.0 + np.tanh(sharpness * (d + 0.004))).clip(0, 1).astype(np.float32)


def _paper(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    tone = rng.uniform(235, 255)
    return (tone + rng.standard_normal((h, w)).astype(np.float32) * rng.uniform(0, 3)).astype(np.float32)


def _ink(rng: np.random.Generator) -> np.ndarray:
    """Black, dark blue, sepia or red ink."""
    inks = [(15, 15, 20), (20, 30, 70), (70, 45, 25), (140, 25, 25)]
    weights = [0.7, 0.1, 0.1, 0.1]
    return np.array(inks[int(rng.choice(len(inks), p=weights))], np.float32)


def render(image: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB rendered as ``spec["kind"]``: (H, W, 3) uint8."""
    kind = spec["kind"]
    rng = np.random.default_rng(spec["seed"])
    h, w = image.shape[:2]
    grey = _grey(image)
    if kind == "lineart":  # ink on paper: outlines only, as in ink drawings and uncoloured pages
        lines = ink_lines(grey, rng.uniform(0.6, 1.6), rng.uniform(60, 200))
        if rng.random() < 0.5:  # thicker strokes
            lines = cv2.erode(lines, np.ones((2, 2), np.uint8))
        paper, ink = _paper(rng, h, w), _ink(rng)
        out = paper[..., None] * lines[..., None] + ink * (1 - lines[..., None])
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if kind == "mono":  # greyscale or one-colour print
        gamma = rng.uniform(0.7, 1.4)
        g = 255.0 * (grey / 255.0) ** gamma
        tint = np.array([1.0, 1.0, 1.0], np.float32)
        if rng.random() < 0.3:  # sepia or cyanotype
            tint = np.array([1.0, 0.9, 0.72] if rng.random() < 0.6 else [0.75, 0.88, 1.0], np.float32)
        return np.clip(g[..., None] * tint + 0.5, 0, 255).astype(np.uint8)
    if kind == "screentone":  # manga: black ink lines, flat blacks, dot screens for the mid tones
        lines = ink_lines(grey, rng.uniform(0.6, 1.3), rng.uniform(80, 200))
        period = int(rng.integers(3, 7))
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = np.deg2rad(rng.choice([0.0, 45.0, 30.0]))
        u = (xs * np.cos(angle) + ys * np.sin(angle)) % period - period / 2
        v = (-xs * np.sin(angle) + ys * np.cos(angle)) % period - period / 2
        dot = np.hypot(u, v) / (period / np.sqrt(2))  # 0 at a dot's centre, 1 at the cell's corner
        tone = cv2.GaussianBlur(grey, (0, 0), 1.0) / 255.0
        black, white = rng.uniform(0.12, 0.3), rng.uniform(0.65, 0.85)
        screened = np.where(tone < black, 0.0, np.where(tone > white, 1.0, (dot > (1 - tone) * 1.1).astype(np.float32)))
        out = np.minimum(screened, lines) * 255.0
        return np.repeat(np.clip(out + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if kind == "sketch":  # pencil: colour-dodge of the grey by its blurred negative, light strokes on paper
        blurred = cv2.GaussianBlur(255.0 - grey, (0, 0), rng.uniform(2.0, 6.0))
        dodge = np.clip(grey * 255.0 / np.maximum(255.0 - blurred, 1.0), 0, 255)
        dodge = 255.0 - (255.0 - dodge) * rng.uniform(0.8, 1.6)
        hatch = rng.standard_normal((h, w)).astype(np.float32)
        hatch = cv2.GaussianBlur(hatch, (0, 0), sigmaX=rng.uniform(2, 5), sigmaY=0.5) * rng.uniform(4, 12)
        out = np.clip(dodge, 0, 255) * (_paper(rng, h, w) / 255.0) + hatch * (dodge < 200)
        lead = np.array([1.0, 1.0, 1.0], np.float32) if rng.random() < 0.7 else np.array([1.0, 0.93, 0.85])
        return np.clip(out[..., None] * lead + 0.5, 0, 255).astype(np.uint8)
    if kind == "flat":  # cel colours: a small palette, dark outlines
        k = int(rng.integers(4, 12))
        small = cv2.resize(image, (max(8, w // 8), max(8, h // 8)), interpolation=cv2.INTER_AREA)
        pts = small.reshape(-1, 3).astype(np.float32)
        criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 10, 1.0)
        cv2.setRNGSeed(int(spec["seed"]) % (2**31))
        _, _, centres = cv2.kmeans(pts, min(k, len(pts)), None, criteria, 1, cv2.KMEANS_PP_CENTERS)
        smooth = cv2.bilateralFilter(image, 7, 40, 7).reshape(-1, 1, 3).astype(np.float32)
        nearest = np.argmin(((smooth - centres[None]) ** 2).sum(-1), axis=1)
        out = centres[nearest].reshape(h, w, 3)
        if rng.random() < 0.7:
            lines = ink_lines(grey, rng.uniform(0.7, 1.3), 120.0)
            out = out * lines[..., None] + 30.0 * (1 - lines[..., None])
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if kind == "oldanime":  # 80s/90s cels: muted, warm or cool cast, soft, grainy, vignetted
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] *= rng.uniform(0.55, 0.9)
        out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        out = out * rng.uniform(0.88, 1.08, 3).astype(np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
        f = rng.uniform(0.4, 0.8)
        small = cv2.resize(out, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((xs - w / 2) / w, (ys - h / 2) / h)
        out = out * (1.0 - rng.uniform(0.1, 0.4) * r**2)[..., None]
        out = out + rng.standard_normal((h, w, 1)).astype(np.float32) * rng.uniform(2, 7)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown rendering {kind!r} (expected one of: {', '.join(KINDS)})")
