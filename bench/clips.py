"""Clips of real sprites walking across a real background, with exact per-frame identities, for tracking tests
and benchmarks.

Each character is a sprite (RGBA, exact alpha: the Ren'Py sprites, or any ``fg/`` folder such as the held-out
``open-sprites/fg/wanted-dragon``) moving at constant speed from one x position to another, optionally hopping;
characters drawn later pass in front; the camera may pan across a wider background. A character's ground-truth
mask in a frame is its visible alpha (its own alpha times what the characters in front leave) >= 0.5, and its
``track_ids`` entry is its index in the walker list, so the identity of every ground-truth instance is known in
every frame. :func:`temporal_scores` scores a clip's masks over time (temporal error and IoU).

Used by ``tests/test_track.py``, ``tests/test_stabilize.py``, ``bench/track.py`` and ``bench/stabilize.py``;
nothing here is part of the installed package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from animeseg.instances import Instances
from animeseg.io import read_image, read_rgba
from animeseg.masks import mask_iou


@dataclass(frozen=True)
class Walker:
    """A sprite walking from ``x0`` to ``x1`` (centre, fractions of the width); ``height`` is a fraction of the
    frame height, ``sink`` how far below the bottom edge its feet are (a fraction of its height). With ``legs``
    above 1 it runs back and forth: ``x0`` to ``x1``, back to ``x0``, ... (``legs`` stretches over the clip, each
    at constant speed), so a 60-frame clip can hold fast motion without the character leaving the frame."""

    sprite: str
    x0: float
    x1: float
    height: float = 0.8
    sink: float = 0.0
    flip: bool = False
    hop: float = 0.0  # height of its jumps, a fraction of the frame height
    hops: int = 0  # jumps over the clip
    legs: int = 1

    def x(self, f: float) -> float:
        """Centre at ``f`` in [0, 1] of the clip (fraction of the width, first frame's coordinates)."""
        leg, part = divmod(f * self.legs, 1.0)
        if leg >= self.legs:  # the last frame
            leg, part = self.legs - 1, 1.0
        forward = int(leg) % 2 == 0
        return self.x0 + (self.x1 - self.x0) * (part if forward else 1.0 - part)


#: Two characters walking towards each other and crossing once, mid-clip.
CROSSING = (
    Walker("eileen happy.png", 0.12, 0.88, 0.83),
    Walker("lucy happy.png", 0.88, 0.12, 0.80, sink=0.03, flip=True),
)
#: Three characters: two walk across a third who stands near the middle (three crossings).
THREE = (
    Walker("sylvie green normal.png", 0.50, 0.55, 0.78, sink=0.05),
    Walker("eileen happy.png", 0.10, 0.90, 0.85),
    Walker("lucy mad.png", 0.92, 0.08, 0.80, sink=0.03, flip=True),
)


@dataclass
class Clip:
    """``frames``: RGB (H, W, 3) uint8; ``truth``: one Instances per frame whose ``track_ids`` are the walkers'
    indices and whose ``alphas`` are their visible alphas; ``crossings``: how many times two characters pass
    each other."""

    name: str
    frames: list[np.ndarray]
    truth: list[Instances]
    crossings: int


def _sprite(path: Path, height: int, flip: bool) -> np.ndarray:
    rgba = read_rgba(path).astype(np.float32)
    if flip:
        rgba = rgba[:, ::-1]
    rgba[..., :3] *= rgba[..., 3:] / 255.0  # premultiplied, so resizing cannot bleed transparent pixels' colour
    width = max(8, round(rgba.shape[1] * height / rgba.shape[0]))
    return cv2.resize(rgba, (width, height), interpolation=cv2.INTER_AREA)


def make_clip(
    root: Path,
    walkers: Sequence[Walker] = CROSSING,
    frames: int = 24,
    size: tuple[int, int] = (320, 240),
    background: str = "bg meadow.jpg",
    name: str = "walk",
    pan: float = 0.0,
) -> Clip:
    """A ``frames``-frame clip of ``size`` (width, height) from ``root/fg`` sprites over ``root/bg/background``.

    ``pan``: the camera moves right by this fraction of the width over the clip (the background and every
    walker's path move left in the frame); walkers' positions are given in the first frame's coordinates.
    """
    width, height = size
    bg = read_image(root / "bg" / background)
    travel = round(abs(pan) * width)
    scale = max(height / bg.shape[0], (width + travel) / bg.shape[1])
    bg = cv2.resize(bg, (round(bg.shape[1] * scale), round(bg.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    y = (bg.shape[0] - height) // 2
    x = (bg.shape[1] - width - travel) // 2
    bg = bg[y : y + height, x : x + width + travel].astype(np.float32)
    sprites = [_sprite(root / "fg" / w.sprite, round(height * w.height), w.flip) for w in walkers]

    images, truth = [], []
    for t in range(frames):
        f = t / max(frames - 1, 1)
        shift = pan * f * width
        left = round(shift) if pan >= 0 else travel + round(shift)
        canvas = bg[:, left : left + width].copy()
        alphas = []
        for w, spr in zip(walkers, sprites, strict=True):
            sh, sw = spr.shape[:2]
            x0 = round(w.x(f) * width - sw / 2 - shift)
            y0 = height - sh + round(w.sink * sh) - round(w.hop * height * abs(np.sin(np.pi * w.hops * f)))
            full = np.zeros((height, width, 4), np.float32)
            xs, xe, ys, ye = max(x0, 0), min(x0 + sw, width), max(y0, 0), min(y0 + sh, height)
            if xe > xs and ye > ys:
                full[ys:ye, xs:xe] = spr[ys - y0 : ye - y0, xs - x0 : xe - x0]
            a = full[..., 3] / 255.0
            canvas = canvas * (1 - a[..., None]) + full[..., :3]
            alphas.append(a)
        visible = []
        for j, a in enumerate(alphas):
            v = a.copy()
            for later in alphas[j + 1 :]:
                v *= 1 - later
            visible.append(v)
        keep = [j for j, v in enumerate(visible) if (v >= 0.5).sum() >= 0.02 * max((alphas[j] >= 0.5).sum(), 1)]
        masks = np.array([visible[j] >= 0.5 for j in keep], bool).reshape(-1, height, width)
        soft = np.array([np.round(visible[j] * 255) for j in keep], np.uint8).reshape(masks.shape)
        inst = Instances(np.zeros((len(keep), 4)), np.ones(len(keep)), np.zeros(len(keep)), masks, {0: "person"})
        inst.alphas = soft
        inst.boxes = inst.boxes_from_masks()
        inst.track_ids = np.array(keep, np.int64)
        images.append(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
        truth.append(inst)
    steps = np.linspace(0.0, 1.0, 4 * frames + 1)
    crossings = sum(
        int(np.count_nonzero(np.diff(np.sign([a.x(f) - b.x(f) for f in steps if a.x(f) != b.x(f)]))))
        for i, a in enumerate(walkers)
        for b in walkers[i + 1 :]
    )
    return Clip(name, images, truth, int(crossings))


def identities(truth: Instances, predicted: Instances, ids: Sequence[int], min_iou: float = 0.5) -> dict[int, int]:
    """Ground-truth character -> the identity (``ids[i]`` of predicted instance i) matched to it in this frame:
    pairs by decreasing mask IoU, each used once, IoU at least ``min_iou``."""
    pairs = sorted(
        ((mask_iou(t, p), i, j) for i, t in enumerate(truth.masks) for j, p in enumerate(predicted.masks)),
        reverse=True,
    )
    out: dict[int, int] = {}
    used: set[int] = set()
    for iou, i, j in pairs:
        character = int(truth.track_ids[i])
        if iou < min_iou or character in out or j in used:
            continue
        out[character] = int(ids[j])
        used.add(j)
    return out


def temporal_scores(truth: Sequence[Instances], predicted: Sequence[Instances]) -> dict[str, float]:
    """Temporal error and per-frame mask IoU of a clip's predicted masks against its ground truth.

    In each frame each character takes the predicted mask matched to it (:func:`identities`: best IoU, at least
    0.5, each used once), or an empty mask. ``dtssd``: the mean over characters and frames t >= 1 (the character
    visible in t and t-1) of sum |(m_t - m_t-1) - (g_t - g_t-1)| / |g_t|, the binary form of the dtSSD of
    video-matting benchmarks; ``iou``: the mean over characters and frames of IoU(m_t, g_t). With true alphas
    (``truth[t].alphas``), ``alpha_dtssd`` is the same error on alphas in [0, 1] (the cut-outs' flicker): the
    prediction's ``alphas`` when it has them, else its binary masks.
    """
    errors, ious, soft_errors = [], [], []
    prev: dict[int, tuple[np.ndarray, ...]] = {}
    for t, p in zip(truth, predicted, strict=True):
        matched = identities(t, p, range(len(p)))
        seen = {}
        for k, character in enumerate(int(c) for c in t.track_ids):
            g = t.masks[k]
            j = matched.get(character)
            m = p.masks[j] if j is not None else np.zeros_like(g)
            ga = t.alphas[k] / np.float32(255) if t.alphas is not None else g.astype(np.float32)
            a = p.alphas[j] / np.float32(255) if j is not None and p.alphas is not None else m.astype(np.float32)
            ious.append(mask_iou(m, g))
            if character in prev and g.any():
                pm, pg, pa, pga = prev[character]
                change = m.astype(np.int8) - pm.astype(np.int8) - (g.astype(np.int8) - pg.astype(np.int8))
                errors.append(float(np.abs(change).sum() / g.sum()))
                soft_errors.append(float(np.abs(a - pa - (ga - pga)).sum() / g.sum()))
            seen[character] = (m, g, a, ga)
        prev = seen
    out = {"dtssd": float(np.mean(errors)) if errors else 0.0, "iou": float(np.mean(ious)) if ious else 0.0}
    if truth and truth[0].alphas is not None:
        out["alpha_dtssd"] = float(np.mean(soft_errors)) if soft_errors else 0.0
    return out


def switches(per_frame: Sequence[dict[int, int]]) -> dict[int, dict[str, int]]:
    """Per character: ``frames`` matched, ``switches`` (times its identity differs from the last one it had),
    ``ids`` (distinct identities it took)."""
    stats: dict[int, dict[str, int]] = {}
    last: dict[int, int] = {}
    seen: dict[int, set[int]] = {}
    for frame in per_frame:
        for character, ident in frame.items():
            s = stats.setdefault(character, {"frames": 0, "switches": 0, "ids": 0})
            s["frames"] += 1
            if character in last and last[character] != ident:
                s["switches"] += 1
            last[character] = ident
            seen.setdefault(character, set()).add(ident)
            s["ids"] = len(seen[character])
    return stats
