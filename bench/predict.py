"""Benchmarks of prediction and refinement; prints Markdown for docs/benchmarks.md.

    PYTHONPATH=. python bench/predict.py                  # everything (about 10 min on a 2-core CPU)
    PYTHONPATH=. python bench/predict.py --skip-sam       # accuracy and wrapper overhead only (about 2 min)

Sections:

1. **Accuracy** (acceptance 1 and 2): COCO mask AP (pycocotools) on held-out Ren'Py composites (seeds not used
   while tuning: 100-102, at 640x360 and 1280x720) of plain Ultralytics predict (``retina_masks=True``), the
   Segmenter, and the Segmenter with ``--refine grabcut``; GrabCut time per image.
2. **Wrapper overhead**: Segmenter (read_image + detect) against bare ``YOLO.predict(path)`` over a folder.
3. **SAM refinement** (acceptance 3 and 7) with a randomly initialised vit_b (``animeseg.sam.build_sam``; speed
   does not depend on the weights' values): the time of YOLO + refinement of 1, 5 and 20 boxes against YOLO + one
   encoder pass; against a per-box loop through ``SamPredictor`` on the same boxes and weights; against
   Ultralytics' SAM predictor loaded from the same weights.

Needs ``../shared`` (the Ren'Py sprites and the YOLOv8n-seg COCO ONNX model); exits with a message without it.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg.instances import Instances  # noqa: E402
from animeseg.io import read_image, write_image  # noqa: E402
from animeseg.predict import Segmenter  # noqa: E402
from bench.composites import coco_mask_ap, make_composites  # noqa: E402

SHARED = ROOT.parent / "shared"
RENPY = SHARED / "data" / "renpy-sprites"
ONNX = SHARED / "weights" / "yolov8n-seg-coco-int8.onnx"


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def plain_ultralytics(yolo, path: Path, h: int, w: int) -> Instances:
    r = yolo.predict(str(path), imgsz=320, classes=[0], retina_masks=True, verbose=False)[0]
    if r.masks is None:
        return Instances.empty(h, w, {0: "person"})
    return Instances(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy(), r.masks.data.numpy() > 0.5)


def bench_accuracy(seeds: list[int], count: int, tmp: Path) -> list[str]:
    from animeseg._offline import import_ultralytics
    from animeseg.refine import build_refiner

    yolo = import_ultralytics().YOLO(str(ONNX), task="segment")
    seg = Segmenter(ONNX, imgsz=320, classes=[0], refiner=build_refiner("grabcut"))
    rows = [
        "| composites | images / characters | Ultralytics AP | Segmenter AP | + grabcut AP | gain | refined "
        "| instances in = out | grabcut s/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    totals = {"plain": [], "ours": [], "gc": []}
    all_sets = []
    for size in ((640, 360), (1280, 720)):
        for seed in seeds:
            comps = make_composites(RENPY, count, seed=seed, size=size)
            plain, ours, refined, t_gc = [], [], [], 0.0
            for c in comps:
                path = tmp / f"{c.name}_{size[0]}.png"
                write_image(path, c.image)
                h, w = c.image.shape[:2]
                plain.append(plain_ultralytics(yolo, path, h, w))
                det = seg.detect(read_image(path))
                ours.append(det)
                out, t = timed(seg.refine, c.image, det)
                refined.append(out)
                t_gc += t
            ap = [coco_mask_ap(comps, p) for p in (plain, ours, refined)]
            kept = all(len(a) == len(b) for a, b in zip(ours, refined, strict=True))
            n_ref = sum(r.get("refined", False) for p in refined for r in p.refine)
            n_inst = sum(len(p) for p in refined)
            rows.append(
                f"| {size[0]}x{size[1]} seed {seed} | {len(comps)} / {sum(len(c.truth) for c in comps)} "
                f"| {ap[0]:.3f} | {ap[1]:.3f} | {ap[2]:.3f} | {ap[2] - ap[1]:+.3f} | {n_ref}/{n_inst} "
                f"| {'yes' if kept else 'NO'} | {t_gc / len(comps):.2f} |"
            )
            print(rows[-1], flush=True)
            for k, v in zip(("plain", "ours", "gc"), ap, strict=True):
                totals[k].append(v)
            all_sets.append((comps, plain, ours, refined))
    comps = [c for s in all_sets for c in s[0]]
    pooled = [coco_mask_ap(comps, [p for s in all_sets for p in s[i]]) for i in (1, 2, 3)]
    rows.append(
        f"| **all {len(comps)} images, pooled** | | **{pooled[0]:.3f}** | **{pooled[1]:.3f}** | **{pooled[2]:.3f}** "
        f"| **{pooled[2] - pooled[1]:+.3f}** | | | |"
    )
    return rows


def bench_overhead(n: int, tmp: Path) -> list[str]:
    from animeseg._offline import import_ultralytics

    folder = tmp / "folder"
    comps = make_composites(RENPY, n, seed=200, size=(1280, 720))
    files = [write_image(folder / f"{c.name}.png", c.image) for c in comps]
    yolo = import_ultralytics().YOLO(str(ONNX), task="segment")
    seg = Segmenter(ONNX, imgsz=320, classes=[0])
    yolo.predict(str(files[0]), imgsz=320, classes=[0], retina_masks=True, verbose=False)  # warm-up both
    seg.detect(read_image(files[0]))
    bare, ours = [], []
    for _ in range(3):  # interleaved passes; the best pass of each is reported (the machine is shared)
        t = time.perf_counter()
        for f in files:
            yolo.predict(str(f), imgsz=320, classes=[0], retina_masks=True, verbose=False)
        bare.append((time.perf_counter() - t) / n)
        t = time.perf_counter()
        for f in files:
            seg.detect(read_image(f))
        ours.append((time.perf_counter() - t) / n)
    b, o = min(bare), min(ours)
    return [
        "| 1280x720 PNG folder, imgsz 320 | ms / image (best of 3 passes) |",
        "|---|---|",
        f"| bare `YOLO.predict(path, retina_masks=True)` | {b * 1000:.1f} |",
        f"| `Segmenter.detect(read_image(path))` -> Instances | {o * 1000:.1f} |",
        f"| overhead | {(o - b) * 1000:+.1f} ms ({(o / b - 1) * 100:+.1f} %) |",
    ]


def random_boxes(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``n`` character-sized boxes (15-45 % of the image height, portrait) scattered over the image."""
    rng = np.random.default_rng(seed)
    bh = rng.uniform(0.15, 0.45, n) * h
    bw = bh * rng.uniform(0.35, 0.7, n)
    x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return np.stack([x1, y1, x1 + bw, y1 + bh], 1).astype(np.float32)


def bench_sam(tmp: Path, repeats: int) -> list[str]:
    import torch
    from segment_anything import SamPredictor

    from animeseg.refine import build_refiner
    from animeseg.sam import build_sam, save_sam

    torch.manual_seed(0)
    ckpt = save_sam(build_sam("vit_b"), tmp / "sam_b.pt")  # Ultralytics picks its SAM builder by file name
    refiner = build_refiner("sam", ckpt, device="cpu")
    seg = Segmenter(ONNX, refiner=refiner, imgsz=320, classes=[0])
    comp = make_composites(RENPY, 1, seed=300, size=(1280, 720), max_sprites=3)[0]
    image = comp.image
    h, w = image.shape[:2]
    seg.detect(image)  # warm-up
    t_yolo = min(timed(seg.detect, image)[1] for _ in range(5))
    det = seg.detect(image)
    predictor = refiner.predictor
    t_enc = []
    for _ in range(repeats):
        t_enc.append(timed(predictor.set_image, image)[1])
    t_enc = min(t_enc)
    base = t_yolo + t_enc
    rows = [
        f"Image 1280x720; YOLO (ONNX int8, imgsz 320): {t_yolo * 1000:.0f} ms; one vit_b encoder pass: "
        f"{t_enc:.1f} s; YOLO + encoder = {base:.1f} s. Times are the best of {repeats} runs.",
        "",
        "| boxes | YOLO + `--refine sam` (candidates + fusion) | / (YOLO + encoder) | decoder calls "
        "| per-box `SamPredictor` loop (one encoding) | Ultralytics SAM predictor |",
        "|---|---|---|---|---|---|",
    ]
    for n in (1, 5, 20):
        boxes = random_boxes(n, h, w, seed=n)
        boxes[: min(n, len(det))] = det.boxes[: min(n, len(det))]  # the real detections first
        inst = Instances(boxes, np.linspace(0.9, 0.3, n), np.zeros(n), np.zeros((n, h, w), bool), det.names)
        for i, b in enumerate(boxes.astype(int)):
            inst.masks[i, b[1] : b[3], b[0] : b[2]] = True
        times = []
        for _ in range(repeats):
            refiner.encoder_calls = refiner.decoder_calls = 0
            gc.collect()
            out, t = timed(seg.refine, image, inst)
            assert refiner.encoder_calls == 1 and len(out) == n
            times.append(t)
        t_ref = t_yolo + min(times)
        loop_cell = ul_cell = "-"
        if n in (5, 20):
            t0 = time.perf_counter()
            p = SamPredictor(refiner.model)
            p.set_image(image)
            for b in boxes:
                p.predict(box=b, multimask_output=True)
            loop = t_yolo + time.perf_counter() - t0
            loop_cell = f"{loop:.1f} s ({loop / base:.2f}x)"
            ul = ultralytics_sam(ckpt, image, boxes)
            ul_cell = "not loadable" if ul is None else f"{t_yolo + ul:.1f} s ({(t_yolo + ul) / base:.2f}x)"
        rows.append(
            f"| {n} | {t_ref:.1f} s | **{t_ref / base:.2f}x** | {refiner.decoder_calls} | {loop_cell} | {ul_cell} |"
        )
        print(rows[-1], flush=True)
    return rows


def ultralytics_sam(ckpt: Path, image: np.ndarray, boxes: np.ndarray) -> float | None:
    """Seconds for Ultralytics' SAM predictor (same weights) on ``boxes``; None when it cannot load them."""
    from animeseg._offline import import_ultralytics

    try:
        model = import_ultralytics().SAM(str(ckpt))
        bgr = np.ascontiguousarray(image[..., ::-1])
        model.predict(bgr, bboxes=boxes[:1].tolist(), verbose=False)  # builds the predictor (and encodes once)
        t = time.perf_counter()
        model.predict(bgr, bboxes=boxes.tolist(), verbose=False)
        return time.perf_counter() - t
    except Exception as e:  # report, never fail the whole bench over a comparison
        print(f"Ultralytics SAM could not run: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-sam", action="store_true", help="skip the (slow) vit_b section")
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102], help="composite seeds (held out)")
    ap.add_argument("--count", type=int, default=8, help="composites per seed and size")
    ap.add_argument("--repeats", type=int, default=2, help="runs per SAM timing (the best is reported)")
    args = ap.parse_args()
    if not ONNX.is_file() or not (RENPY / "fg").is_dir():
        sys.exit(f"needs {ONNX} and {RENPY} (the team's ../shared folder)")
    import torch

    print(
        f"# {time.strftime('%Y-%m-%d', time.gmtime())}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} threads {torch.get_num_threads()}\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("\n".join(["### Accuracy", ""] + bench_accuracy(args.seeds, args.count, tmp) + [""]), flush=True)
        print("\n".join(["### Wrapper overhead", ""] + bench_overhead(16, tmp) + [""]), flush=True)
        if not args.skip_sam:
            print("\n".join(["### SAM refinement", ""] + bench_sam(tmp, args.repeats) + [""]), flush=True)


if __name__ == "__main__":
    main()
