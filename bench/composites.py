"""Held-out anime composites with exact instance ground truth, for tests and benchmarks of prediction.

Real Ren'Py sprites (RGBA, exact alpha) are pasted onto real backgrounds the way a visual novel shows them:
standing on the bottom edge, scaled, sometimes mirrored, sometimes overlapping. Each instance's ground-truth mask
is its sprite's alpha (>= 128) minus whatever later sprites cover, so occlusion is exact too.

Used by ``tests/test_predict_core.py`` and ``bench/predict.py``; nothing here is part of the installed package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from animeseg.instances import Instances
from animeseg.io import read_image, read_rgba


@dataclass
class Composite:
    """One composite: ``image`` (H, W, 3) RGB uint8 and ``truth`` (ground-truth Instances, class 0).

    ``alphas`` (N, H, W) float32 is each instance's exact visible alpha (its sprite's alpha times what the
    sprites in front leave), aligned with ``truth``; ``alpha`` (H, W) float32 is the exact alpha of all the
    characters together (the whole-image cut-out's ground truth).
    """

    name: str
    image: np.ndarray
    truth: Instances
    alphas: np.ndarray | None = None
    alpha: np.ndarray | None = None


def _fit_background(bg: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``bg`` with the canvas' aspect ratio, resized to (height, width)."""
    h, w = bg.shape[:2]
    scale = max(width / w, height / h) * rng.uniform(1.0, 1.3)
    cw, ch = min(w, round(width / scale)), min(h, round(height / scale))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    crop = bg[y0 : y0 + ch, x0 : x0 + cw]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def make_composites(
    root: Path,
    count: int,
    seed: int = 0,
    size: tuple[int, int] = (640, 360),
    max_sprites: int = 3,
    folder: str | None = None,
) -> list[Composite]:
    """``count`` composites of ``size`` (width, height) from ``root/fg/*.png`` onto ``root/bg/*``.

    ``folder`` picks one game of a tree laid out as ``root/fg/FOLDER/*.png`` and ``root/bg/FOLDER/*`` (the
    open-sprites layout): its characters on its own backgrounds.

    Each holds 1..``max_sprites`` characters, 55-95 % of the canvas height, bottom-aligned (some sink below the
    edge), mirrored half the time; later sprites may overlap earlier ones. A character left with under 2 % of
    its own area visible is not counted as an instance (nobody could segment it either).
    """
    rng = np.random.default_rng(seed)
    fg_dir, bg_dir = (root / "fg", root / "bg") if folder is None else (root / "fg" / folder, root / "bg" / folder)
    fgs = sorted(fg_dir.glob("*.png"))
    bgs = sorted(p for p in bg_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    width, height = size
    sprites = {p: read_rgba(p) for p in fgs}
    backgrounds = {p: read_image(p) for p in bgs}
    out = []
    for k in range(count):
        canvas = _fit_background(backgrounds[bgs[int(rng.integers(len(bgs)))]], width, height, rng).astype(np.float32)
        n = int(rng.integers(1, max_sprites + 1))
        slots = (np.arange(n) + rng.uniform(0.1, 0.9, n)) / n  # spread characters across the width
        alphas, solid = [], []
        for j in range(n):
            rgba = sprites[fgs[int(rng.integers(len(fgs)))]]
            if rng.random() < 0.5:
                rgba = rgba[:, ::-1]
            target_h = int(height * rng.uniform(0.55, 0.95))
            target_w = max(8, round(rgba.shape[1] * target_h / rgba.shape[0]))
            # resize premultiplied colour so transparent pixels' arbitrary RGB cannot bleed into the edges
            rgba = rgba.astype(np.float32)
            rgba[..., :3] *= rgba[..., 3:] / 255.0
            rgba = cv2.resize(rgba, (target_w, target_h), interpolation=cv2.INTER_AREA)
            cx = int(slots[j] * width + rng.normal(0, width * 0.05))
            x0 = cx - target_w // 2
            y0 = height - target_h + int(rng.uniform(0, 0.15) * target_h)
            full = np.zeros((height, width, 4), np.float32)
            xs, ys = max(x0, 0), max(y0, 0)
            xe, ye = min(x0 + target_w, width), min(y0 + target_h, height)
            if xe <= xs or ye <= ys:
                continue
            full[ys:ye, xs:xe] = rgba[ys - y0 : ye - y0, xs - x0 : xe - x0]
            a = full[..., 3:] / 255.0
            canvas = canvas * (1 - a) + full[..., :3]
            alphas.append(full[..., 3] / 255.0)
            solid.append(full[..., 3] >= 128)
        masks, soft = [], []
        for j, m in enumerate(solid):
            visible = m.copy()
            exact = alphas[j].copy()
            for front in range(j + 1, len(solid)):
                visible &= ~solid[front]
                exact *= 1 - alphas[front]
            if visible.sum() >= 0.02 * max(m.sum(), 1):
                masks.append(visible)
                soft.append(exact)
        union = np.clip(1 - np.prod([1 - a for a in alphas], axis=0), 0, 1) if alphas else np.zeros((height, width))
        masks_arr = np.array(masks, bool).reshape(-1, height, width)
        truth = Instances(np.zeros((len(masks_arr), 4)), np.ones(len(masks_arr)), np.zeros(len(masks_arr)), masks_arr)
        truth.boxes = truth.boxes_from_masks()
        truth.names = {0: "person"}
        image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
        exact = np.array(soft, np.float32).reshape(-1, height, width)
        out.append(Composite(f"composite_{seed}_{k:03d}", image, truth, exact, union.astype(np.float32)))
    return out


def coco_mask_ap(composites: list[Composite], predictions: list[Instances]) -> float:
    """COCO mask AP@[.5:.95] (pycocotools COCOeval, ``segm``) of ``predictions`` against the composites' truth.

    Ground truth and results both go through :mod:`animeseg.cocojson`, the records ``predictions.json`` holds.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from animeseg import cocojson

    images, gts, dts = [], [], []
    for i, (c, p) in enumerate(zip(composites, predictions, strict=True)):
        h, w = c.image.shape[:2]
        images.append(cocojson.image_record(i + 1, f"{c.name}.png", h, w))
        gts += cocojson.instance_annotations(c.truth, i + 1, len(gts) + 1, with_scores=False)
        dts += cocojson.instance_annotations(p, i + 1, len(dts) + 1, with_scores=True)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": gts, "categories": cocojson.categories({0: "person"})}
        gt.createIndex()
        if not dts:
            return 0.0
        dt = gt.loadRes(dts)
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])
