"""Benchmarks of prediction and refinement; prints Markdown for docs/benchmarks.md.

    PYTHONPATH=. python bench/predict.py                  # everything (about 10 min on a 2-core CPU)
    PYTHONPATH=. python bench/predict.py --sections accuracy overhead   # no vit_b (about 2 min)

Sections:

1. **Accuracy** (acceptance 1 and 2): COCO mask AP (pycocotools) on held-out Ren'Py composites (seeds not used
   while tuning: 100-104, at 640x360 and 1280x720) of plain Ultralytics predict (``retina_masks=True``), the
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
    seg = Segmenter(ONNX, imgsz=320, classes=[0], refine=build_refiner("grabcut"))
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
    import cv2

    bare, bare_array, ours = [], [], []
    for _ in range(3):  # interleaved passes; the best pass of each is reported (the machine is shared)
        t = time.perf_counter()
        for f in files:
            yolo.predict(str(f), imgsz=320, classes=[0], retina_masks=True, verbose=False)
        bare.append((time.perf_counter() - t) / n)
        t = time.perf_counter()
        for f in files:
            yolo.predict(cv2.imread(str(f)), imgsz=320, classes=[0], retina_masks=True, verbose=False)
        bare_array.append((time.perf_counter() - t) / n)
        t = time.perf_counter()
        for f in files:
            seg.detect(read_image(f))
        ours.append((time.perf_counter() - t) / n)
    b, a, o = min(bare), min(bare_array), min(ours)
    return [
        f"{n} composites, 1280x720 PNG, imgsz 320, ms per image (best of 3 interleaved passes).",
        "",
        "| pipeline | ms / image | Segmenter overhead |",
        "|---|---|---|",
        f"| bare `YOLO.predict(path, retina_masks=True)` | {b * 1000:.1f} | {(o / b - 1) * 100:+.1f} % |",
        f"| bare `YOLO.predict(cv2.imread(path), retina_masks=True)` | {a * 1000:.1f} | {(o / a - 1) * 100:+.1f} % |",
        f"| `Segmenter.detect(read_image(path))` -> Instances | {o * 1000:.1f} | |",
    ]


def random_boxes(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``n`` character-sized boxes (15-45 % of the image height, portrait) scattered over the image."""
    rng = np.random.default_rng(seed)
    bh = rng.uniform(0.15, 0.45, n) * h
    bw = bh * rng.uniform(0.35, 0.7, n)
    x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return np.stack([x1, y1, x1 + bw, y1 + bh], 1).astype(np.float32)


class EncoderClock:
    """Wall time spent inside a SAM image encoder's forward (hooks), so its run-to-run noise can be set apart."""

    def __init__(self, encoder) -> None:
        self.spent: list[float] = []
        self._t = 0.0
        encoder.register_forward_pre_hook(self._start)
        encoder.register_forward_hook(self._stop)

    def _start(self, *args) -> None:
        self._t = time.perf_counter()

    def _stop(self, *args) -> None:
        self.spent.append(time.perf_counter() - self._t)

    def take(self) -> float:
        total, self.spent = sum(self.spent), []
        return total


def bench_sam(tmp: Path, repeats: int) -> list[str]:
    """SAM timings; each pipeline's own encoder time is clocked, the rest is what batching has to keep small."""
    import torch
    from segment_anything import SamPredictor

    from animeseg.refine import build_refiner
    from animeseg.sam import build_sam, save_sam

    torch.manual_seed(0)
    ckpt = save_sam(build_sam("vit_b"), tmp / "sam_b.pt")  # Ultralytics picks its SAM builder by file name
    refiner = build_refiner("sam", ckpt, device="cpu")
    clock = EncoderClock(refiner.model.image_encoder)
    seg = Segmenter(ONNX, refine=refiner, imgsz=320, classes=[0])
    image = make_composites(RENPY, 1, seed=300, size=(1280, 720), max_sprites=3)[0].image
    h, w = image.shape[:2]
    seg.detect(image)  # warm-up
    t_yolo = min(timed(seg.detect, image)[1] for _ in range(5))
    det = seg.detect(image)
    ul = UltralyticsSam(ckpt)
    rows = [
        "| boxes | encoder pass | rest of `--refine sam` (prompts, batched decoder, upsampling, fusion) "
        "| YOLO + refine / (YOLO + encoder) | decoder calls | per-box `SamPredictor` loop: rest / ratio "
        "| Ultralytics SAM predictor: rest / ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    encoders = []
    for n in (1, 5, 20):
        boxes = random_boxes(n, h, w, seed=n)
        boxes[: min(n, len(det))] = det.boxes[: min(n, len(det))]  # the real detections first
        inst = Instances(boxes, np.linspace(0.9, 0.3, n), np.zeros(n), np.zeros((n, h, w), bool), det.names)
        for i, b in enumerate(boxes.astype(int)):
            inst.masks[i, b[1] : b[3], b[0] : b[2]] = True
        encs, rests = [], []
        for _ in range(repeats):
            refiner.encoder_calls = refiner.decoder_calls = 0
            gc.collect()
            clock.take()
            out, t = timed(seg.refine, image, inst)
            encs.append(clock.take())
            rests.append(t - encs[-1])
            assert refiner.encoder_calls == 1 and len(out) == n
        enc, rest = min(encs), min(rests)  # the least disturbed run of each part (the machine is shared)
        encoders += encs

        def ratio(rest: float, enc: float = enc) -> str:
            return f"{(t_yolo + enc + rest) / (t_yolo + enc):.3f}x"

        loop_cell = ul_cell = "-"
        if n in (5, 20):
            gc.collect()
            predictor = SamPredictor(refiner.model)
            t0 = time.perf_counter()
            predictor.set_image(image)
            for b in boxes:
                predictor.predict(box=b, multimask_output=True)
            loop_t = time.perf_counter() - t0
            loop_enc = clock.take()
            loop_cell = f"{loop_t - loop_enc:.2f} s / {ratio(loop_t - loop_enc, loop_enc)}"
            ul_t = ul(image, boxes)
            if ul_t is not None:
                ul_cell = f"{ul_t[0] - ul_t[1]:.2f} s / {ratio(ul_t[0] - ul_t[1], ul_t[1])}"
            else:
                ul_cell = "not loadable"
        rows.append(
            f"| {n} | {enc:.1f} s | {rest:.2f} s | **{ratio(rest)}** | {refiner.decoder_calls} "
            f"| {loop_cell} | {ul_cell} |"
        )
        print(rows[-1], flush=True)
    rows += ["", decoder_only(refiner, image, boxes)]
    head = (
        f"Image 1280x720, randomly initialised vit_b (speed does not depend on weight values). YOLO (ONNX int8, "
        f"imgsz 320): {t_yolo * 1000:.0f} ms. The encoder pass varied {min(encoders):.1f}-{max(encoders):.1f} s "
        f"between runs on this shared machine, so the encoder pass is clocked apart from the rest of each run (forward "
        f"hooks); for `--refine sam` the fastest of {repeats} runs of each part is shown and the ratio is (YOLO + "
        "encoder + rest) / (YOLO + encoder); the comparisons (one run each) use their own run's encoder time."
    )
    return [head, ""] + rows


def decoder_only(refiner, image: np.ndarray, boxes: np.ndarray, repeats: int = 3) -> str:
    """Decoding the same boxes in batches of several sizes, the image already encoded (no encoder noise)."""
    import torch

    h, w = image.shape[:2]
    predictor = refiner.predictor
    predictor.set_image(image)
    prompts = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes), (h, w))
    sizes = sorted({1, refiner.chunk, len(boxes)})
    times: dict[int, list[float]] = {c: [] for c in sizes}
    with torch.inference_mode():
        for _ in range(repeats):  # interleaved, best of each
            for c in sizes:
                gc.collect()
                t = time.perf_counter()
                for s in range(0, len(boxes), c):
                    m, _, _ = predictor.predict_torch(None, None, boxes=prompts[s : s + c], multimask_output=True)
                    m.cpu().numpy()
                times[c].append(time.perf_counter() - t)
    predictor.reset_image()
    cells = ", ".join(f"batches of {c}: {min(times[c]):.2f} s" for c in sizes)
    return (
        f"Decoding alone ({len(boxes)} boxes, image already encoded, masks to full size, best of {repeats} "
        f"interleaved runs): {cells} (the refiner's default on this device is {refiner.chunk})."
    )


class UltralyticsSam:
    """Ultralytics' SAM predictor on the same weights (``SAM('.../sam_b.pt')``), if it loads offline."""

    def __init__(self, ckpt: Path) -> None:
        from animeseg._offline import import_ultralytics

        self.model = self.clock = None
        try:
            self.model = import_ultralytics().SAM(str(ckpt))
        except Exception as e:  # report, never fail the whole bench over a comparison
            print(f"Ultralytics SAM could not load {ckpt}: {type(e).__name__}: {e}", file=sys.stderr)

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[float, float] | None:
        """(total seconds, encoder seconds) for all ``boxes`` in one predict call."""
        if self.model is None:
            return None
        bgr = np.ascontiguousarray(image[..., ::-1])
        try:
            if self.clock is None:
                self.model.predict(bgr, bboxes=boxes[:1].tolist(), verbose=False)  # builds the predictor
                self.clock = EncoderClock(self.model.predictor.model.image_encoder)
            self.clock.take()
            gc.collect()
            _, t = timed(self.model.predict, bgr, bboxes=boxes.tolist(), verbose=False)
            return t, self.clock.take()
        except Exception as e:
            print(f"Ultralytics SAM failed: {type(e).__name__}: {e}", file=sys.stderr)
            return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sections", nargs="+", default=["accuracy", "overhead", "sam"], help="which sections to run (default all)"
    )
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104], help="composite seeds (held out)"
    )
    ap.add_argument("--count", type=int, default=8, help="composites per seed and size")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each SAM refinement (the least disturbed counts)")
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
        if "accuracy" in args.sections:
            print("\n".join(["### Accuracy", ""] + bench_accuracy(args.seeds, args.count, tmp) + [""]), flush=True)
        if "overhead" in args.sections:
            print("\n".join(["### Wrapper overhead", ""] + bench_overhead(16, tmp) + [""]), flush=True)
        if "sam" in args.sections:
            print("\n".join(["### SAM refinement", ""] + bench_sam(tmp, args.repeats) + [""]), flush=True)


if __name__ == "__main__":
    main()
