"""How a composite is painted from its provenance record: placement geometry, the mask recipe, painting and the
exact visible alphas (used by :mod:`animeseg.data.sources.composite`, which draws the records).

The mask recipe (step 1-3, OpenCV alone):

1. ``warped = cv2.warpAffine(alpha, matrix, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)`` for each pasted
   foreground, with ``alpha`` the foreground file's alpha channel (the flip is part of ``matrix``);
2. ``mask = warped >= 128``;
3. later foregrounds (higher ``z``) occlude earlier ones: ``mask_k &= ~mask_j`` for every ``j > k``;
4. effects in front of the characters (``record["effects"]``, :mod:`animeseg.data.effects`) hide what they cover
   with alpha >= 128.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from animeseg._lazy import cv2
from animeseg.data import backdrops, effects, renderings
from animeseg.data.distractors import paste_distractors

MASK_THRESHOLD = 128


# --------------------------------------------------------------------------------------------------- geometry
def warp_masks(alphas: list[np.ndarray], matrices: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """Step 1-2 of the recipe: each alpha channel warped onto the canvas and thresholded, before occlusion."""
    out = []
    for alpha, m in zip(alphas, matrices, strict=True):
        warped = cv2.warpAffine(
            alpha, np.asarray(m, np.float64), (width, height), flags=cv2.INTER_LINEAR, borderValue=0
        )
        out.append(warped >= MASK_THRESHOLD)
    return out


def occlude(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Step 3 of the recipe: every mask loses the pixels of the masks above it (later in the list)."""
    out = []
    above = np.zeros_like(masks[0]) if masks else None
    for m in reversed(masks):
        out.append(m & ~above)
        above = above | m
    return out[::-1]


def drop_hidden(
    warped: list[np.ndarray], full: list[float], min_visible: float, min_area: int
) -> tuple[list[int], list[np.ndarray], list[float], list[tuple[int, float, str]]]:
    """Which pasted characters to keep: none may end up (after occlusion) with less than ``min_visible`` of its
    ``full`` area visible or fewer than ``min_area`` pixels.

    Removes one at a time, the smallest-in-pixels or else the least visible first, because removing one uncovers
    the ones below it. Returns (kept indices, their occluded masks, their visible shares, [(index, share,
    reason)] of the removed ones).
    """
    keep = list(range(len(warped)))
    gone: list[tuple[int, float, str]] = []
    while keep:
        visible = occlude([warped[i] for i in keep])
        areas = [int(np.count_nonzero(v)) for v in visible]
        shares = [a / max(full[i], 1e-9) for a, i in zip(areas, keep, strict=True)]
        small = [j for j, a in enumerate(areas) if a < min_area]
        worst = int(np.argmin(shares))
        if not small and shares[worst] >= min_visible:
            return keep, visible, shares, gone
        j = small[0] if small else worst
        gone.append((keep.pop(j), shares[j], "too small" if small else "mostly hidden or out of frame"))
    return [], [], [], gone


def jitter_hsv(rgb: np.ndarray, gains: list[float]) -> np.ndarray:
    """Multiply hue, saturation and value by ``gains`` (as Ultralytics' HSV augmentation does)."""
    if all(abs(g - 1.0) < 1e-9 for g in gains):
        return rgb
    hue, sat, val = cv2.split(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


# --------------------------------------------------------------------------------------------------- painting
def premultiply(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 -> premultiplied RGBA uint8 (colour scaled by alpha), so resampling never bleeds the colour of
    transparent pixels into the edges."""
    return cv2.cvtColor(np.ascontiguousarray(rgba), cv2.COLOR_RGBA2mRGBA)


def _shrink_for_warp(pm: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrinking a lot in one bilinear warp aliases line art: pre-shrink with area averaging to 1.5x the final
    scale, and return the image with the 3x3 matrix that maps *its* pixels to the canvas."""
    s = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    if s >= 0.6:
        return pm, m
    f = s * 1.5
    size = (max(1, round(pm.shape[1] * f)), max(1, round(pm.shape[0] * f)))
    fw, fh = size[0] / pm.shape[1], size[1] / pm.shape[0]
    small = cv2.resize(pm, size, interpolation=cv2.INTER_AREA)
    # pixel centre j of the shrunk image sits at (j + 0.5) / f - 0.5 in the original
    return small, m @ np.array([[1 / fw, 0, 0.5 / fw - 0.5], [0, 1 / fh, 0.5 / fh - 0.5], [0, 0, 1]])


def _roi(m: np.ndarray, fg_w: int, fg_h: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The canvas box a foreground of ``fg_w`` x ``fg_h`` lands in under ``m`` (None when off the canvas)."""
    corners = np.array([[-1, -1, 1], [fg_w, -1, 1], [-1, fg_h, 1], [fg_w, fg_h, 1]], np.float64) @ m[:2].T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def paint(
    background: np.ndarray | None,
    record: dict[str, Any],
    foregrounds: list[np.ndarray],
    distractors: list[np.ndarray] | None = None,
) -> np.ndarray:
    """The composite image of a provenance ``record``: (H, W, 3) uint8.

    ``background`` is the decoded background file (RGB; None when the record has a generated ``backdrop``);
    ``foregrounds`` are the foreground files of ``record["foregrounds"]``, in order, as *premultiplied* RGBA
    (:func:`premultiply`); ``distractors`` the decoded background files of ``record["distractors"]``, in order
    (needed only when the record has some). Effects go over the characters, then the rendering, blur, noise and
    JPEG re-encode, each only when the record has it.
    """
    w, h = record["size"]
    bg = record["background"]
    if "backdrop" in bg:
        canvas = backdrops.make(bg["backdrop"], w, h)
    else:
        if background is None:
            raise ValueError("this composite's record names a background file: pass its decoded image")
        x0, y0, x1, y1 = bg["crop"]
        crop = background[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if crop.shape[1] > w else cv2.INTER_LINEAR
        canvas = cv2.resize(crop, (w, h), interpolation=interp)
        if bg.get("flip"):
            canvas = canvas[:, ::-1]
        canvas = canvas.astype(np.float32)
    paste_distractors(canvas, record.get("distractors", []), distractors or [])
    for pm, fg in zip(foregrounds, record["foregrounds"], strict=True):
        m = np.vstack([np.asarray(fg["matrix"], np.float64), [0.0, 0.0, 1.0]])
        pm, m = _shrink_for_warp(pm, m)
        gains = fg.get("hsv", [1.0, 1.0, 1.0])
        if any(abs(g - 1.0) > 1e-9 for g in gains):  # jitter the straight colour, then premultiply again
            straight = cv2.cvtColor(pm, cv2.COLOR_mRGBA2RGBA)
            straight[..., :3] = jitter_hsv(np.ascontiguousarray(straight[..., :3]), gains)
            pm = premultiply(straight)
        roi = _roi(m, pm.shape[1], pm.shape[0], w, h)
        if roi is None:
            continue
        rx0, ry0, rx1, ry1 = roi
        shifted = (np.array([[1.0, 0, -rx0], [0, 1.0, -ry0], [0, 0, 1]]) @ m)[:2]
        warped = cv2.warpAffine(pm, shifted, (rx1 - rx0, ry1 - ry0), flags=cv2.INTER_LINEAR, borderValue=(0,) * 4)
        warped = warped.astype(np.float32)
        a = warped[..., 3:] / 255.0
        region = canvas[ry0:ry1, rx0:rx1]
        canvas[ry0:ry1, rx0:rx1] = region * (1.0 - a) + warped[..., :3]
    if record.get("effects"):
        rgb, alpha = effects.draw(record["effects"], w, h)
        canvas = canvas * (1.0 - alpha[..., None]) + rgb * alpha[..., None]
    if record.get("render"):
        canvas = renderings.render(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), record["render"])
        canvas = canvas.astype(np.float32)
    blur = record.get("blur", 0.0)
    if blur > 0.05:
        canvas = cv2.GaussianBlur(canvas, (0, 0), blur)
    noise = record.get("noise", {"sigma": 0.0})
    if noise["sigma"] > 0:
        rng = np.random.default_rng(noise["seed"])
        canvas = canvas + rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(noise["sigma"])
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    quality = record.get("jpeg")
    if quality is not None:  # compression artefacts as screenshots and re-posted art carry them
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        image = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]) if ok else image
    return image


def effects_cover(record: dict[str, Any]) -> np.ndarray | None:
    """Step 4 of the mask recipe: (H, W) bool, where the record's effects hide what is under them (None: no
    effects)."""
    if not record.get("effects"):
        return None
    w, h = record["size"]
    return effects.draw(record["effects"], w, h)[1] >= 0.5


def visible_alphas(record: dict[str, Any], foregrounds: list[np.ndarray]) -> np.ndarray:
    """The exact soft alpha of each character of a composite as it shows in the image: (N, H, W) float32 in [0, 1].

    Each foreground's alpha is warped the way :func:`paint` warps it, then covered by the characters above it
    (``a_i * prod(1 - a_j)`` over later ``j``), so the alphas of a composite add up to its foreground coverage.
    ``foregrounds`` are the RGBA files of ``record["foregrounds"]``, in order.
    """
    w, h = record["size"]
    out = np.zeros((len(foregrounds), h, w), np.float32)
    for i, (rgba, fg) in enumerate(zip(foregrounds, record["foregrounds"], strict=True)):
        m = np.vstack([np.asarray(fg["matrix"], np.float64), [0.0, 0.0, 1.0]])
        alpha, m = _shrink_for_warp(np.ascontiguousarray(rgba[..., 3]), m)
        out[i] = cv2.warpAffine(alpha, m[:2], (w, h), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32)
    out /= 255.0
    cover = np.ones((h, w), np.float32)  # what the characters (and effects) above let through
    if record.get("effects"):
        cover = 1.0 - effects.draw(record["effects"], w, h)[1]
    for i in range(len(out) - 1, -1, -1):
        own = out[i].copy()
        out[i] *= cover
        cover *= 1.0 - own
    return out
