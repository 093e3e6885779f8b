"""Soft cut-outs (``--alpha matte``) against binary ones, on composites whose alpha is exact; prints Markdown for
docs/benchmarks.md.

    PYTHONPATH=. python bench/matte.py                                   # held-out seeds, default band
    PYTHONPATH=. python bench/matte.py --seeds 1 2 --radii 0.005 0.01 0.015 0.02 0.03 --sizes 640x360  # tuning

Ren'Py sprites (exact alpha) are pasted onto real backgrounds by ``bench/composites.py``. Two sources of "final
mask" are matted: the masks the shared YOLOv8n-seg COCO int8 model predicts (``imgsz 320``, people only; each
character takes the predicted mask of best IoU, at least 0.5), which is what ``predict`` cuts out, and the exact
binary masks (alpha >= 0.5), where binary cut-outs are already as good as a binary alpha can be.

For each character found (its cut-out) and each image (the whole-image cut-out, all characters together; its
band also restricted to the edges of the characters found, the only edges matting can act on), against the
exact alpha: SAD (sum of |alpha error| over the edge band, in thousands, per cut-out) and MSE (mean squared
error over the band), SAD over the whole image, and the IoU of alpha >= 0.5 with the exact mask. The edge band is
every pixel whose exact alpha is strictly between 0 and 1 or that lies within 2 % of the image's long side of
the exact mask's edge. Time is ``animeseg.matte.matte`` per cut-out and per image (every character + the whole
image, what ``--save cutouts --alpha matte`` costs), after one warm-up call (Numba compiles on first use).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg.masks import mask_iou  # noqa: E402
from animeseg.matte import default_radius, matte  # noqa: E402
from animeseg.predict import Segmenter  # noqa: E402
from bench.composites import make_composites  # noqa: E402

SHARED = ROOT.parent / "shared"
RENPY = SHARED / "data" / "renpy-sprites"
ONNX = SHARED / "weights" / "yolov8n-seg-coco-int8.onnx"


def edge_band(alpha: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool: soft pixels of ``alpha`` and pixels within ``width`` of its alpha >= 0.5 edge."""
    mask = (alpha >= 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    ring = (cv2.dilate(mask, kernel) > 0) & ~(cv2.erode(mask, kernel) > 0)
    return ring | ((alpha > 0) & (alpha < 1))


def errors(pred: np.ndarray, truth: np.ndarray, band: np.ndarray) -> dict[str, float]:
    diff = np.abs(pred.astype(np.float64) - truth)
    return {
        "sad": float(diff[band].sum()) / 1000,
        "mse": float((diff[band] ** 2).mean()),
        "sad_all": float(diff.sum()) / 1000,
        "iou": mask_iou(pred >= 0.5, truth >= 0.5),
    }


def cases(comps, seg: Segmenter | None):
    """(image, [(final mask, exact alpha) per character found], (whole mask, whole exact alpha)) per composite."""
    for c in comps:
        if seg is None:
            finals = list(c.truth.masks)
        else:
            det = seg.detect(c.image)
            finals = []
            for t in c.truth.masks:
                ious = [mask_iou(t, m) for m in det.masks]
                finals.append(det.masks[int(np.argmax(ious))] if ious and max(ious) >= 0.5 else None)
            whole = det.masks.any(0) if len(det) else np.zeros(c.image.shape[:2], bool)
        pairs = [(m, a) for m, a in zip(finals, c.alphas, strict=True) if m is not None]
        union = c.truth.masks.any(0) if seg is None else whole
        yield c.image, pairs, (union, c.alpha)


def run(sizes, seeds, count, radii, sources) -> list[str]:
    seg = Segmenter(ONNX, imgsz=320, classes=[0])
    warm = make_composites(RENPY, 1, seed=999, size=(320, 240))[0]
    matte(warm.image, warm.truth.masks[0])  # Numba compiles PyMatting's kernels once per install
    rows = [
        "| composites | masks | cut-out | alpha | band SAD (k) | band MSE | whole-image SAD (k) | IoU | s / cut-out "
        "| s / image |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w, h in sizes:
        comps = [c for s in seeds for c in make_composites(RENPY, count, seed=s, size=(w, h))]
        band_width = max(2, round(0.02 * max(w, h)))
        for source in sources:
            data = list(cases(comps, seg if source == "model" else None))
            n_chars = sum(len(p) for _, p, _ in data)
            for kind in ("character", "whole image", "whole image, found"):
                results: dict[str, list[dict[str, float]]] = {}
                seconds: dict[str, float] = {}
                for image, pairs, whole in data:
                    if kind == "character":
                        items = [(final, exact, edge_band(exact, band_width)) for final, exact in pairs]
                    elif kind == "whole image":
                        items = [(*whole, edge_band(whole[1], band_width))]
                    else:  # only the edges of the characters the model found: what matting can act on
                        found = [edge_band(exact, band_width) for _, exact in pairs]
                        items = [(*whole, np.any(found, axis=0))] if found else []
                    for final, exact, band in items:
                        results.setdefault("binary", []).append(errors(final.astype(np.float32), exact, band))
                        for frac in radii:
                            r = max(3, round(frac * max(w, h)))
                            t = time.perf_counter()
                            soft = matte(image, final, radius=r).alpha
                            seconds[f"matte r={r}"] = seconds.get(f"matte r={r}", 0.0) + time.perf_counter() - t
                            results.setdefault(f"matte r={r}", []).append(errors(soft, exact, band))
                for name, rs in results.items():
                    mean = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
                    per_cut = seconds.get(name, 0.0) / len(rs)
                    per_image = seconds.get(name, 0.0) / len(data)
                    rows.append(
                        f"| {w}x{h}, {len(comps)} images, {n_chars} characters | {source} | {kind} | {name} "
                        f"| {mean['sad']:.2f} | {mean['mse']:.4f} | {mean['sad_all']:.2f} | {mean['iou']:.4f} "
                        f"| {per_cut:.2f} | {per_image:.2f} |"
                    )
                    print(rows[-1], flush=True)
    return rows


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=parse_size, default=[(640, 360), (1280, 720)])
    ap.add_argument("--seeds", nargs="+", type=int, default=[100, 101])
    ap.add_argument("--count", type=int, default=4, help="composites per seed and size")
    ap.add_argument(
        "--radii", nargs="+", type=float, default=[0.015], help="band half-widths, fractions of the long side"
    )
    ap.add_argument("--sources", nargs="+", default=["model", "exact"], choices=["model", "exact"])
    args = ap.parse_args()
    if not (RENPY / "fg").is_dir() or not ONNX.is_file():
        sys.exit(f"needs {RENPY} and {ONNX}")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {date.today()}; default "
        f"radius at 1280x720: {default_radius(720, 1280)} px",
        flush=True,
    )
    rows = run(args.sizes, args.seeds, args.count, args.radii, args.sources)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
