"""What refinement costs and gains on held-out anime art; prints Markdown for docs/benchmarks.md.

    PYTHONPATH=. python bench/refine.py --sections accuracy    # GrabCut before/after: mask AP, time
    PYTHONPATH=. python bench/refine.py --sections cost        # whole `animeseg predict` runs, ratios
    PYTHONPATH=. python bench/refine.py --sections boxes       # per refiner, 1 / 5 / 20 boxes at 1280x720
    PYTHONPATH=. python bench/refine.py --sections steady      # per image once started: detector vs + GrabCut

Sections:

1. **accuracy**: COCO mask AP (pycocotools) of raw YOLO, of GrabCut as it was at ``--baseline`` (the file read
   from git, so both run in this process on the same detections) and of GrabCut now, with each one's refine time
   per image, on held-out composites: the Ren'Py sets of the earlier figures (seeds 100-104) and open-sprites'
   held-out artists (wanted-dragon, godot-2d-visual-novel) on their own backgrounds.
2. **cost**: whole processes, as a user runs them: ``animeseg predict`` on a folder of 20 held-out composites, raw
   and with ``--refine grabcut``; and on one 1280x720 image holding 20 characters, raw and with ``--refine sam``
   for random MobileSAM and SAM 2.1 tiny checkpoints (speed does not depend on the weights' values). Runs are
   interleaved (raw, refined, raw, ...) and the median of the per-pair ratios is reported: the machine is shared.
3. **steady**: in one process, per image once the model is loaded, on the same 20 held-out composites as
   **cost**: the detector alone against the detector plus GrabCut, for the packaged model at its own settings
   and for the COCO int8 model at 320 (what a long folder costs, where start-up no longer counts).
4. **boxes**: in one process, per refiner, the time to refine 1, 5 and 20 of that image's detections, against
   YOLO alone; the encoder pass apart; decoding alone in batches of 1, 4 and 20; Ultralytics' own SAM predictor
   on the same weights and boxes for comparison.

Needs ``../shared`` (sprites and the YOLOv8n-seg COCO ONNX model); exits with a message without it.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg.instances import Instances  # noqa: E402
from animeseg.io import read_image, read_rgba, write_image  # noqa: E402
from animeseg.predict import Segmenter  # noqa: E402
from bench.composites import Composite, coco_mask_ap, make_composites  # noqa: E402

SHARED = ROOT.parent / "shared"
RENPY = SHARED / "data" / "renpy-sprites"
OPEN = SHARED / "data" / "open-sprites"
HELD_OUT = ("wanted-dragon", "godot-2d-visual-novel")  # artists never used for tuning (open-sprites README)
ONNX = SHARED / "weights" / "yolov8n-seg-coco-int8.onnx"
YOLO_ARGS = {"imgsz": 320, "classes": [0]}
CLI_ARGS = ["--model", str(ONNX), "--imgsz", "320", "--classes", "0", "--save", "json", "--device", "cpu"]
#: The last commit with GrabCut as it was before it was made cheap (3 candidates at 400 px, 2 iterations each).
BASELINE = "66ed5f1"


def timed(fn: Callable, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def refine(refiner, image: np.ndarray, instances: Instances) -> Instances:
    """What ``Segmenter.refine`` does: the refiner's candidates, fused."""
    from animeseg.fusion import fuse

    return fuse(instances, refiner.candidates(image, instances.boxes, instances.masks), refiner.name)


def baseline_grabcut(ref: str):
    """``GrabCutRefiner()`` from ``animeseg/refine/grabcut.py`` as committed at ``ref``."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:animeseg/refine/grabcut.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("grabcut_baseline")
    exec(compile(src, f"{ref}:animeseg/refine/grabcut.py", "exec"), module.__dict__)  # noqa: S102 (our own file)
    return module.GrabCutRefiner()


def held_out_sets(count: int, seeds: list[int]) -> list[tuple[str, list[Composite]]]:
    """(label, composites): Ren'Py at both sizes per seed, then each held-out open-sprites artist at 1280x720."""
    sets = [
        (f"Ren'Py {w}x{h} seed {s}", make_composites(RENPY, count, seed=s, size=(w, h)))
        for w, h in ((640, 360), (1280, 720))
        for s in seeds
    ]
    for folder in HELD_OUT:
        for s in seeds[:2]:
            sets.append(
                (f"{folder} 1280x720 seed {s}", make_composites(OPEN, count, seed=s, size=(1280, 720), folder=folder))
            )
    return sets


def bench_accuracy(count: int, seeds: list[int], baseline: str) -> list[str]:
    from animeseg.refine.grabcut import GrabCutRefiner

    seg = Segmenter(ONNX, **YOLO_ARGS)
    refiners = {"before": baseline_grabcut(baseline), "now": GrabCutRefiner()}
    rows = [
        "| composites | images / characters | YOLO AP | GrabCut before: AP | s / image | GrabCut now: AP | s / image "
        "| refined now | instances in = out |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    pooled: dict[str, dict[str, list]] = {}
    for label, comps in held_out_sets(count, seeds):
        raw, out, spent = [], {k: [] for k in refiners}, dict.fromkeys(refiners, 0.0)
        for c in comps:
            det = seg.detect(c.image)
            raw.append(det)
            for k, r in refiners.items():  # interleaved per image: both see the same load
                fused, t = timed(refine, r, c.image, det)
                out[k].append(fused)
                spent[k] += t
        ap = {"raw": coco_mask_ap(comps, raw)} | {k: coco_mask_ap(comps, v) for k, v in out.items()}
        kept = all(len(a) == len(b) for k in refiners for a, b in zip(raw, out[k], strict=True))
        n_ref = sum(r["refined"] for p in out["now"] for r in p.refine)
        rows.append(
            f"| {label} | {len(comps)} / {sum(len(c.truth) for c in comps)} | {ap['raw']:.3f} | {ap['before']:.3f} "
            f"| {spent['before'] / len(comps):.2f} | {ap['now']:.3f} | {spent['now'] / len(comps):.2f} "
            f"| {n_ref}/{sum(len(p) for p in raw)} | {'yes' if kept else 'NO'} |"
        )
        print(rows[-1], flush=True)
        group = "Ren'Py" if label.startswith("Ren'Py") else "open-sprites held-out artists"
        bucket = pooled.setdefault(
            group, {"comps": [], "raw": [], "before": [], "now": [], "t_before": [], "t_now": []}
        )
        bucket["comps"] += comps
        for k in ("raw", "before", "now"):
            bucket[k] += raw if k == "raw" else out[k]
        bucket["t_before"].append(spent["before"])
        bucket["t_now"].append(spent["now"])
    for group, b in pooled.items():
        ap = {k: coco_mask_ap(b["comps"], b[k]) for k in ("raw", "before", "now")}
        n = len(b["comps"])
        rows.append(
            f"| **{group}, pooled** | {n} images | **{ap['raw']:.3f}** | **{ap['before']:.3f}** "
            f"| {sum(b['t_before']) / n:.2f} | **{ap['now']:.3f}** | {sum(b['t_now']) / n:.2f} | | |"
        )
    return rows


# ------------------------------------------------------------------------------------------------ images
def grid_image(rows: int = 3, cols: int = 7, size: tuple[int, int] = (1280, 720), seed: int = 0) -> np.ndarray:
    """(H, W, 3) RGB: ``rows`` x ``cols`` held-out characters (wanted-dragon), one per cell, on one of their
    backgrounds: a crowded 1280x720 scene with about 20 detectable characters."""
    rng = np.random.default_rng(seed)
    w, h = size
    bgs = sorted((OPEN / "bg" / HELD_OUT[0]).iterdir())
    canvas = cv2.resize(read_image(bgs[int(rng.integers(len(bgs)))]), (w, h), interpolation=cv2.INTER_AREA)
    canvas = canvas.astype(np.float32)
    sprites = sorted(p for p in (OPEN / "fg" / HELD_OUT[0]).glob("*.png"))
    cw, ch = w // cols, h // rows
    for r in range(rows):
        for c in range(cols):
            rgba = read_rgba(sprites[int(rng.integers(len(sprites)))]).astype(np.float32)
            scale = min(0.95 * ch / rgba.shape[0], 0.95 * cw / rgba.shape[1])
            sw, sh = max(8, round(rgba.shape[1] * scale)), max(8, round(rgba.shape[0] * scale))
            rgba[..., :3] *= rgba[..., 3:] / 255.0  # premultiplied, so transparent pixels cannot bleed in
            rgba = cv2.resize(rgba, (sw, sh), interpolation=cv2.INTER_AREA)
            x0, y0 = c * cw + (cw - sw) // 2, r * ch + (ch - sh)
            a = rgba[..., 3:] / 255.0
            canvas[y0 : y0 + sh, x0 : x0 + sw] = canvas[y0 : y0 + sh, x0 : x0 + sw] * (1 - a) + rgba[..., :3]
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def random_checkpoints(tmp: Path) -> dict[str, Path]:
    """Randomly initialised MobileSAM and SAM 2.1 tiny saved as their official files are (Ultralytics' file
    names, so its own predictor can load them too)."""
    import torch

    from animeseg.sam import build_light

    torch.manual_seed(0)
    paths = {"mobile_sam": tmp / "mobile_sam.pt", "sam2.1_t": tmp / "sam2.1_t.pt"}
    torch.save(build_light("mobile_sam").state_dict(), paths["mobile_sam"])
    torch.save({"model": build_light("sam2.1_t").state_dict()}, paths["sam2.1_t"])
    return paths


def segment_anything_mobile_sam(light) -> object:
    """A MobileSAM loaded by :func:`animeseg.sam.load_sam` rebuilt as segment-anything's ``Sam`` (what MobileSAM's
    own package is: segment-anything with a TinyViT encoder), sharing the encoder and the weights."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    sam = Sam(
        image_encoder=light.image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    sam.load_state_dict(light.state_dict())  # the same tensors under the same names
    return sam.eval()


# ------------------------------------------------------------------------------------------------ cost
def cli_run(sources: list[Path], out: Path, extra: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``animeseg predict`` process: start-up, model loading, every image and
    the outputs. CPU time (user + system, all threads) is what the run costs whatever else the machine runs."""
    cmd = [sys.executable, "-m", "animeseg", "predict", *map(str, sources), *CLI_ARGS, "--out", str(out), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def interleaved(
    variants: dict[str, list[str]], sources: list[Path], tmp: Path, pairs: int
) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of ``pairs`` rounds of every variant (CLI options), run in turn so that each round's
    variants see similar load."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for i in range(pairs):
        for name, extra in variants.items():
            times[name].append(cli_run(sources, tmp / f"{name}_{i}", extra))
            wall, cpu = times[name][-1]
            print(f"  round {i + 1} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    return times


def bench_cost(tmp: Path, pairs: int, checkpoints: dict[str, Path]) -> list[str]:
    folder = tmp / "held_out"
    for c in held_out_folder_composites():
        write_image(folder / f"{c.name}.png", c.image)
    rows = [
        "| run | inputs | raw `predict`: wall / CPU (medians) | refined: wall / CPU (medians) "
        "| refined / raw, wall: median of pairs (each pair) | refined / raw, CPU: median of pairs |",
        "|---|---|---|---|---|---|",
    ]

    def row(label: str, inputs: str, times: dict[str, list[tuple[float, float]]], name: str) -> str:
        med = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in times.items()}
        ratios = [[r[i] / b[i] for r, b in zip(times[name], times["raw"], strict=True)] for i in (0, 1)]
        listed = ", ".join(f"{x:.2f}" for x in ratios[0])
        return (
            f"| {label} | {inputs} | {med['raw'][0]:.1f} s / {med['raw'][1]:.1f} s "
            f"| {med[name][0]:.1f} s / {med[name][1]:.1f} s | {statistics.median(ratios[0]):.2f}x ({listed}) "
            f"| **{statistics.median(ratios[1]):.2f}x** |"
        )

    times = interleaved({"raw": [], "grabcut": ["--refine", "grabcut"]}, [folder], tmp, pairs)
    rows.append(row("`--refine grabcut`", "20 held-out composites, 1280x720", times, "grabcut"))
    print(rows[-1], flush=True)
    crowd = write_image(tmp / "crowd" / "crowd.png", grid_image())
    crowded = ["--conf", "0.1", "--max-det", "20"]  # 23 detections at conf 0.1: the 20 best are kept
    variants = {"raw": crowded, "grabcut": [*crowded, "--refine", "grabcut"]}
    for kind, path in checkpoints.items():
        variants[kind] = [*crowded, "--refine", "sam", "--sam-checkpoint", str(path)]
    times = interleaved(variants, [crowd], tmp, pairs)
    boxes = len(read_predictions(tmp / f"raw_{pairs - 1}"))
    for name in variants:
        if name != "raw":
            label = "`--refine grabcut`" if name == "grabcut" else f"`--refine sam`, {name} (random weights)"
            rows.append(row(label, f"1 image 1280x720, {boxes} boxes", times, name))
            print(rows[-1], flush=True)
    return rows


def held_out_folder_composites() -> list[Composite]:
    """The 20 held-out composites of the **cost** section: 10 per held-out artist, 1280x720."""
    comps = make_composites(OPEN, 10, seed=300, size=(1280, 720), folder=HELD_OUT[0])
    return comps + make_composites(OPEN, 10, seed=300, size=(1280, 720), folder=HELD_OUT[1])


def bench_steady(rounds: int = 3) -> list[str]:
    from animeseg.refine.grabcut import GrabCutRefiner
    from animeseg.weights import model_settings, packaged_model

    comps = held_out_folder_composites()
    packaged = packaged_model()
    settings = model_settings(packaged)
    detectors = {
        f"packaged model (imgsz {int(settings['imgsz'])}, conf {settings['conf']:g})": Segmenter(
            packaged, imgsz=int(settings["imgsz"]), conf=settings["conf"], refine=GrabCutRefiner()
        ),
        "COCO int8 ONNX (imgsz 320, people)": Segmenter(ONNX, refine=GrabCutRefiner(), **YOLO_ARGS),
    }
    rows = [
        "| detector | instances | detect (s / image) | GrabCut (s / image) | detect + GrabCut vs detect |",
        "|---|---|---|---|---|",
    ]
    for label, seg in detectors.items():
        seg.detect(comps[0].image)  # warm-up
        times = []
        for _ in range(rounds):
            detected, t_detect = timed(lambda seg=seg: [seg.detect(c.image) for c in comps])
            pairs = list(zip(comps, detected, strict=True))
            _, t_refine = timed(lambda seg=seg, pairs=pairs: [seg.refine(c.image, x) for c, x in pairs])
            times.append((t_detect / len(comps), t_refine / len(comps)))
        det, ref = (statistics.median(t[i] for t in times) for i in (0, 1))
        n = sum(len(x) for x in detected)
        rows.append(f"| {label} | {n} in {len(comps)} images | {det:.3f} | {ref:.3f} | {(det + ref) / det:.2f}x |")
        print(rows[-1], flush=True)
    return rows


def read_predictions(out: Path) -> list[dict]:
    import json

    return json.loads((out / "predictions.json").read_text())["annotations"]


# ------------------------------------------------------------------------------------------------ boxes
class EncoderClock:
    """Wall time spent inside a model's image encoder (forward hooks), to set its noise apart."""

    def __init__(self, encoder) -> None:
        self.spent, self._t = 0.0, 0.0
        encoder.register_forward_pre_hook(self._start)
        encoder.register_forward_hook(self._stop)

    def _start(self, *args) -> None:
        self._t = time.perf_counter()

    def _stop(self, *args) -> None:
        self.spent += time.perf_counter() - self._t

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent


def bench_boxes(tmp: Path, repeats: int, checkpoints: dict[str, Path], vit_b: bool) -> list[str]:
    import torch

    from animeseg.refine import build_refiner

    image = grid_image()
    seg = Segmenter(ONNX, **YOLO_ARGS, conf=0.1, max_det=20)
    seg.detect(image)  # warm-up
    t_yolo = statistics.median(timed(seg.detect, image)[1] for _ in range(3))
    det = seg.detect(image)
    refiners = {"grabcut": build_refiner("grabcut"), "grabcut before": baseline_grabcut(BASELINE)}
    for kind, path in checkpoints.items():
        refiners[kind] = build_refiner("sam", path, device="cpu")
    if "mobile_sam" in refiners:
        from animeseg.refine.sam import SamRefiner

        refiners["mobile_sam via SamPredictor"] = SamRefiner(segment_anything_mobile_sam(refiners["mobile_sam"].model))
    if vit_b:
        from animeseg.sam import build_sam, save_sam

        torch.manual_seed(0)
        refiners["vit_b"] = build_refiner("sam", save_sam(build_sam("vit_b"), tmp / "sam_b.pth"), device="cpu")
    clocks = {k: EncoderClock(r.model.image_encoder) for k, r in refiners.items() if hasattr(r, "model")}
    counts = [n for n in (1, 5, 20) if n <= len(det)]
    rows = [
        f"Image 1280x720 with {len(det)} detected characters (YOLO ONNX int8, imgsz 320: {t_yolo:.2f} s, median of 3); "
        f"the first 1, 5 and {counts[-1]} detections refined (candidates + fusion), best of {repeats} interleaved "
        "runs; SAM models with random weights (speed does not depend on their values).",
        "",
        "| refiner | " + " | ".join(f"{n} boxes: refine (encoder) / YOLO + refine vs YOLO" for n in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    best: dict[tuple[str, int], tuple[float, float]] = {}
    for _ in range(repeats):
        for n in counts:
            sub = det[:n]
            for name, r in refiners.items():
                gc.collect()
                if name in clocks:
                    clocks[name].take()
                _, t = timed(refine, r, image, sub)
                enc = clocks[name].take() if name in clocks else 0.0
                if (name, n) not in best or t < best[(name, n)][0]:
                    best[(name, n)] = (t, enc)
    for name in refiners:
        cells = []
        for n in counts:
            t, enc = best[(name, n)]
            cells.append(
                f"{t:.2f} s ({enc:.2f} s) / {(t_yolo + t) / t_yolo:.1f}x"
                if enc
                else f"{t:.2f} s / {(t_yolo + t) / t_yolo:.1f}x"
            )
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    rows += ["", *decoding_alone(refiners, image, det), *ultralytics_predictor(checkpoints, image, det, repeats)]
    return rows


def decoding_alone(refiners: dict, image: np.ndarray, det: Instances, repeats: int = 2) -> list[str]:
    """Decoder batch sizes of the light refiners on all boxes, the image encoded once, masks pasted at full size."""
    from animeseg.refine.sam_light import LightSamRefiner

    lines = []
    for name, r in refiners.items():
        if not isinstance(r, LightSamRefiner):
            continue
        times = {}
        for chunk in sorted({1, r.chunk, len(det)}):
            r.chunk, spent = chunk, []
            for _ in range(repeats):
                gc.collect()
                _, t = timed(r.candidates, image, det.boxes, det.masks)
                spent.append(t)
            times[chunk] = min(spent)
        r.chunk = 4
        cells = ", ".join(f"batches of {c}: {t:.2f} s" for c, t in times.items())
        lines.append(f"- {name}, all {len(det)} boxes, encoder included: {cells}.")
    return lines


def ultralytics_predictor(checkpoints: dict[str, Path], image: np.ndarray, det: Instances, repeats: int) -> list[str]:
    """Ultralytics' own SAM / SAM 2 predictor (``SAM(file).predict(bboxes=...)``) on the same weights and boxes."""
    from animeseg._offline import import_ultralytics

    bgr = np.ascontiguousarray(image[..., ::-1])
    lines = []
    for name, path in checkpoints.items():
        try:
            model = import_ultralytics().SAM(str(path))
            model.predict(bgr, bboxes=det.boxes[:1].tolist(), verbose=False)  # builds the predictor
            spent = min(timed(model.predict, bgr, bboxes=det.boxes.tolist(), verbose=False)[1] for _ in range(repeats))
        except Exception as e:  # a comparison, never a reason to lose the rest of the run
            lines.append(f"- Ultralytics' predictor could not run {name}: {type(e).__name__}: {e}")
            continue
        lines.append(
            f"- Ultralytics' predictor, {name}, all {len(det)} boxes in one call (encoder included, one mask per box, "
            f"no fusion): {spent:.2f} s."
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sections = ["accuracy", "cost", "steady", "boxes"]
    ap.add_argument("--sections", nargs="+", default=sections, help="what to run (default all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104], help="held-out seeds")
    ap.add_argument("--count", type=int, default=8, help="composites per set")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved rounds of whole-process runs")
    ap.add_argument("--repeats", type=int, default=2, help="in-process runs of each refiner (the best counts)")
    ap.add_argument("--baseline", default=BASELINE, help="git commit of the GrabCut to compare with")
    ap.add_argument("--vit-b", action="store_true", help="also time a random SAM vit_b in the boxes section")
    args = ap.parse_args()
    if not ONNX.is_file() or not (RENPY / "fg").is_dir() or not (OPEN / "fg").is_dir():
        sys.exit(f"needs {ONNX}, {RENPY} and {OPEN} (the team's ../shared folder)")
    import torch

    print(
        f"# {time.strftime('%Y-%m-%d', time.gmtime())}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__} threads {torch.get_num_threads()}\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "accuracy" in args.sections:
            rows = bench_accuracy(args.count, args.seeds, args.baseline)
            print("\n".join(["### GrabCut before and after", "", *rows, ""]), flush=True)
        checkpoints = random_checkpoints(tmp) if {"cost", "boxes"} & set(args.sections) else {}
        if "cost" in args.sections:
            print("\n".join(["### Whole runs", "", *bench_cost(tmp, args.pairs, checkpoints), ""]), flush=True)
        if "steady" in args.sections:
            rows = bench_steady(args.pairs)
            print("\n".join(["### Per image once started", "", *rows, ""]), flush=True)
        if "boxes" in args.sections:
            rows = bench_boxes(tmp, args.repeats, checkpoints, args.vit_b)
            print("\n".join(["### Per refiner", "", *rows, ""]), flush=True)
        print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
