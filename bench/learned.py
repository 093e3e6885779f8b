"""The learned refiner on held-out art: accuracy per instance and mask AP, cut-out alpha, whole-run cost.

    PYTHONPATH=. python bench/learned.py accuracy runs/recipe/heldout [--refiner a.onnx ...] [--iou 0.5] [--model m]
    PYTHONPATH=. python bench/learned.py alpha                   # edge-band alpha error vs PyMatting, time
    PYTHONPATH=. python bench/learned.py cost                    # whole `animeseg predict` runs, default vs none

**accuracy**: on a built held-out set (``recipes/anime-yolov8n-seg/heldout.yaml``: wanted-dragon, never trained
on), the packaged detector at its default settings (what ``animeseg predict`` keeps), raw against each refiner:
COCO mask AP (pycocotools, through :func:`animeseg.evaluate.evaluate`), predictions per true instance, and per
true instance the mask IoU of the detection that finds it (raw) and of the same detection refined: mean,
median, worst tenth, share at IoU >= 0.95, and instances found raw (IoU >= 0.5) but lost after refining; and the
predictions no true instance matches, as ``split`` (mostly inside one character: a part found as its own
instance) or ``background`` (not a character).

**alpha**: on held-out composites with exact alphas, the edge-band SAD (the soft pixels and 3 px around the
edge) of the cut-out alpha: the learned refiner's own alpha against PyMatting's closed-form matte of the same
final masks, and the time of each per cut-out.

**cost**: ``animeseg predict`` on 20 held-out 1280x720 composites, whole processes, at default settings against
``--refine none``, interleaved rounds, median ratio of wall times.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg.evaluate import evaluate, load_ground_truth  # noqa: E402
from animeseg.io import read_image  # noqa: E402
from animeseg.predict import Segmenter  # noqa: E402
from animeseg.refine.learned import LearnedRefiner  # noqa: E402
from animeseg.weights import model_settings, packaged_model  # noqa: E402

SHARED = ROOT.parent / "shared"
OPEN = SHARED / "data" / "open-sprites"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 0.0


def unmatched(masks: np.ndarray, scores: np.ndarray, truth: list[np.ndarray]) -> dict[str, int]:
    """Predictions no true instance matches at mask IoU 0.5 (greedy by score, as COCO): ``split`` when at least
    half of it lies inside one true character (a part of a character found as its own instance), else
    ``background`` (something that is not a character)."""
    used: set[int] = set()
    out = {"split": 0, "background": 0}
    for k in np.argsort(-np.asarray(scores), kind="stable"):
        ious = [_iou(t, masks[k]) for t in truth]
        free = [(v, j) for j, v in enumerate(ious) if j not in used and v >= 0.5]
        if free:
            used.add(max(free)[1])
            continue
        area = max(int(masks[k].sum()), 1)
        inside = max((np.logical_and(masks[k], t).sum() / area for t in truth), default=0.0)
        out["split" if inside >= 0.5 else "background"] += 1
    return out


def per_instance(
    seg: Segmenter, refiners: dict[str, object], heldout: Path
) -> tuple[dict[str, list[float]], dict[str, dict[str, int]]]:
    """IoU with the truth, per true instance, of the detection that finds it: raw and after each refiner; and
    each one's unmatched predictions (:func:`unmatched`), summed over the images."""
    from pycocotools import mask as mask_utils

    gt = load_ground_truth(heldout, "train", None)
    by_image: dict[int, list] = {}
    for ann in gt.coco.dataset["annotations"]:
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    out: dict[str, list[float]] = {"raw": [], **{k: [] for k in refiners}}
    wrong = {k: {"split": 0, "background": 0} for k in out}
    for info in gt.coco.dataset["images"]:
        image = read_image(gt.paths[int(info["id"])])
        raw = seg.detect(image)
        truth = [mask_utils.decode(a["segmentation"]).astype(bool) for a in by_image.get(int(info["id"]), [])]
        refined = {}
        for name, refiner in refiners.items():
            seg.refiner = refiner
            refined[name] = seg.refine(image, raw)
        for name, inst in {"raw": raw, **refined}.items():
            for kind, n in unmatched(inst.masks, inst.scores, truth).items():
                wrong[name][kind] += n
        for t in truth:
            ious = [_iou(t, m) for m in raw.masks]
            if not ious:
                out["raw"].append(0.0)
                for name in refiners:
                    out[name].append(0.0)
                continue
            k = int(np.argmax(ious))
            out["raw"].append(ious[k])
            for name in refiners:
                out[name].append(_iou(t, refined[name].masks[k]))
    seg.refiner = None
    return out, wrong


def summary(ious: list[float], raw: list[float]) -> dict[str, float]:
    a, r = np.asarray(ious), np.asarray(raw)
    worst = np.argsort(r)[: max(1, len(r) // 10)]  # the raw worst tenth, followed through refinement
    return {
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "worst_tenth_of_raw": float(a[worst].mean()),
        "worst_tenth": float(np.sort(a)[: max(1, len(a) // 10)].mean()),
        "share_095": float((a >= 0.95).mean()),
        "lost": int(((r >= 0.5) & (a < 0.5)).sum()),
    }


def bench_accuracy(
    heldout: Path, refiner_files: list[Path], grabcut: bool, iou: float | None = None, model: Path | None = None
) -> list[str]:
    model = model or packaged_model()
    settings = model_settings(model)
    if iou is not None:
        settings["iou"] = iou
    seg = Segmenter(model, None, **settings, device="cpu")  # raw detections
    # rows are named by file; files of the same name (two runs' anime-refiner.onnx) by folder and file
    stems = [f.stem for f in refiner_files]
    names = [f"{f.parent.name}/{f.stem}" if stems.count(f.stem) > 1 else f.stem for f in refiner_files]
    refiners: dict[str, object] = {n: LearnedRefiner(f) for n, f in zip(names, refiner_files, strict=True)}
    if grabcut:
        from animeseg.refine import build_refiner

        refiners["grabcut"] = build_refiner("grabcut")
    inst, wrong = per_instance(seg, refiners, heldout)
    n_true = len(inst["raw"])
    lines = [
        f"Held-out `{heldout}`: {n_true} instances; `{model.name}` at imgsz {settings['imgsz']}, conf "
        f"{settings['conf']}, NMS IoU {settings['iou']}; {platform.node()}, {time.strftime('%Y-%m-%d')}",
        "",
        "| refiner | mask AP | AP50 | predicted / true | split / background | mean IoU | median | worst tenth (of raw) "
        "| IoU >= 0.95 | lost |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["raw", *refiners]:
            ref = refiners.get(name)
            m = evaluate(
                model,
                heldout,
                split="train",
                imgsz=settings["imgsz"],
                conf=settings["conf"],
                iou=settings["iou"],
                threshold=settings["conf"],
                device="cpu",
                refine=ref,
                out=Path(tmp) / name,
            )
            scores = m["results"]["refined" if ref is not None else "raw"]
            s = summary(inst[name], inst["raw"])
            lines.append(
                f"| {name} | {scores['mask']['AP']:.3f} | {scores['mask']['AP50']:.3f} | "
                f"{scores['instances']['predicted']} / {n_true} | "
                f"{wrong[name]['split']} / {wrong[name]['background']} | "
                f"{s['mean']:.3f} | {s['median']:.3f} | "
                f"{s['worst_tenth']:.3f} ({s['worst_tenth_of_raw']:.3f}) | {s['share_095']:.2f} | {s['lost']} |"
            )
    return lines


def bench_alpha(count: int, seed: int) -> list[str]:
    """Edge-band alpha error of cut-outs on held-out composites: the refiner's alpha against PyMatting's."""
    from animeseg.matte import from_alpha, matte
    from bench.composites import make_composites
    from bench.matte import edge_band, errors

    comps = make_composites(OPEN, count, seed=seed, size=(1280, 720), folder="wanted-dragon")
    model = packaged_model()
    settings = model_settings(model)
    seg = Segmenter(model, LearnedRefiner(), imgsz=settings["imgsz"], conf=settings["conf"], device="cpu")
    rows: dict[str, list[dict[str, float]]] = {"learned": [], "pymatting": [], "binary": []}
    times: dict[str, list[float]] = {"learned": [], "pymatting": [], "refine": []}
    for c in comps:
        raw = seg.detect(c.image)
        t = time.perf_counter()
        found = seg.refine(c.image, raw)
        times["refine"].append((time.perf_counter() - t) / max(len(found), 1))
        for truth_mask, truth_alpha in zip(c.truth.masks, c.alphas, strict=True):
            ious = [_iou(truth_mask, m) for m in found.masks]
            if not ious or max(ious) < 0.5:
                continue
            k = int(np.argmax(ious))
            band = edge_band(truth_alpha, 3)
            t = time.perf_counter()
            learned = from_alpha(c.image, found.alphas[k]).alpha
            times["learned"].append(time.perf_counter() - t)
            t = time.perf_counter()
            solved = matte(c.image, found.masks[k]).alpha
            times["pymatting"].append(time.perf_counter() - t)
            rows["learned"].append(errors(learned, truth_alpha, band))
            rows["pymatting"].append(errors(solved, truth_alpha, band))
            rows["binary"].append(errors(found.masks[k].astype(np.float32), truth_alpha, band))
    n = len(rows["learned"])
    lines = [
        f"{count} held-out 1280x720 composites (wanted-dragon, seed {seed}), {n} cut-outs of characters found; "
        f"packaged model + learned refiner at default settings; {platform.node()}, {time.strftime('%Y-%m-%d')}",
        "",
        "| alpha of the cut-out | edge-band SAD (x1000, mean) | edge-band MSE | time per cut-out (median) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("binary", "pymatting", "learned"):
        sad = statistics.mean(r["sad"] for r in rows[name])
        mse = statistics.mean(r["mse"] for r in rows[name])
        tm = statistics.median(times[name]) * 1000 if name in times else 0.0
        lines.append(f"| {name} | {sad:.3f} | {mse:.4f} | {tm:.1f} ms |")
    lines.append("")
    lines.append(
        f"The learned alpha comes with refinement, which took {statistics.median(times['refine']) * 1000:.0f} "
        "ms per instance (median per image); the time above is the colour clean-up of the cut-out alone."
    )
    return lines


def cost_images(folder: Path, count: int) -> list[Path]:
    """``count`` held-out 1280x720 composites as JPEG files in ``folder``."""
    from animeseg.io import write_image
    from bench.composites import make_composites

    paths = []
    for i, c in enumerate(make_composites(OPEN, count, seed=5, size=(1280, 720), folder="wanted-dragon")):
        paths.append(folder / f"held_out_{i:03d}.jpg")
        write_image(paths[-1], c.image, quality=92)
    return paths


def bench_cost(count: int, pairs: int) -> list[str]:
    """Whole `animeseg predict` processes at default settings against ``--refine none``, interleaved."""
    from bench.refine import interleaved

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        sources = [folder]
        cost_images(folder, count)
        import bench.refine as br

        br.CLI_ARGS = ["--save", "json"]
        times = interleaved({"none": ["--refine", "none"], "default": []}, sources, Path(tmp), pairs)
    ratios = [d[0] / n[0] for d, n in zip(times["default"], times["none"], strict=True)]
    walls = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    return [
        f"`animeseg predict` on {count} held-out 1280x720 JPEGs, `--save json`, {pairs} interleaved rounds; "
        f"{platform.node()}, {time.strftime('%Y-%m-%d')}",
        "",
        "| run | wall (median) | ratio to `--refine none` (median of rounds) |",
        "|---|---:|---:|",
        f"| `--refine none` | {walls['none']:.2f} s | 1.00 |",
        f"| default (learned refiner) | {walls['default']:.2f} s | {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}) |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="section", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("heldout", type=Path)
    a.add_argument("--refiner", type=Path, nargs="*", default=None)
    a.add_argument("--grabcut", action="store_true")
    a.add_argument("--iou", type=float, help="NMS IoU of the detector (default: the packaged model's own)")
    a.add_argument("--model", type=Path, help="the detector (default: the packaged model), with its sidecar's defaults")
    al = sub.add_parser("alpha")
    al.add_argument("--count", type=int, default=20)
    al.add_argument("--seed", type=int, default=3)
    c = sub.add_parser("cost")
    c.add_argument("--count", type=int, default=20)
    c.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    if not OPEN.is_dir():
        raise SystemExit(f"needs ../shared (open-sprites): {OPEN} is missing")
    if args.section == "accuracy":
        files = args.refiner if args.refiner else [LearnedRefiner().path]
        print("\n".join(bench_accuracy(args.heldout, files, args.grabcut, args.iou, args.model)))
    elif args.section == "alpha":
        print("\n".join(bench_alpha(args.count, args.seed)))
    else:
        print("\n".join(bench_cost(args.count, args.pairs)))


if __name__ == "__main__":
    main()
