"""Mask R-CNN next to YOLOv8-seg: speed per image, and a small same-data, same-budget comparison.

    PYTHONPATH=. python bench/maskrcnn.py speed                      # about 3 min on a 2-core CPU
    PYTHONPATH=. python bench/maskrcnn.py compare --heldout H/data.yaml --epochs yolo=10 maskrcnn=3

Sections (each prints Markdown for docs/benchmarks.md / docs/experiments.md):

* ``speed``: wall and CPU seconds per image (CPU time is what a shared machine cannot distort; one torch
  thread by default, ``--threads``) of ``Segmenter.detect`` (the whole detector: resize, network, masks pasted at full
  resolution) on held-out 640x360 composites, for Mask R-CNN MobileNetV3-Large FPN and ResNet-50-FPN v2 (random
  weights: their speed does not depend on the values, and no COCO file can be fetched here) and YOLOv8n-seg
  (``yolov8n-seg.yaml``, random weights) at the same sizes; median of ``--repeats`` after one warm-up image.
  Random weights make Mask R-CNN keep every box up to ``--max-det`` (default 20; a scene here has 1-4
  characters) through its mask head and mask pasting, so its figures are an upper bound for a trained model.
* ``compare``: builds one small dataset from the open-sprites training artists (``--count`` composites), trains
  YOLOv8n-seg and Mask R-CNN MobileNetV3 both from random weights (``--epochs ARCH=N``: pick N per model so
  that their wall-clock times match; the table reports them), and evaluates both with ``animeseg eval`` on the
  same held-out set (the unseen artist wanted-dragon).

Needs ``../shared`` (open-sprites); exits with a message without it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"
SPRITES = SHARED / "data" / "open-sprites"
TRAIN_ARTISTS = [
    ("personal-space2", "personal-space2"),
    ("personal-space", "personal-space2"),
    ("unsupervised", "unsupervised"),
]

CONFIG = """\
out: {out}
seed: {seed}
val_fraction: 0.1
classes: [character]
imgsz: 640
sources:
{sources}
"""
SOURCE = """\
  - name: {name}
    type: composite
    foregrounds: {fg}
    backgrounds: {bg}
    count: {count}
    canvas: [640, 360]
    per_image: [1, 3]
    min_visible: 0.25
    augment: {{rotation: 8, scale: [0.3, 1.15], shift: 0.35, flip: 0.5, hsv: [0.02, 0.5, 0.35]}}
"""


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, {time.strftime('%Y-%m-%d')}"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (data-loader workers): the budget on a shared machine."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build(work: Path, name: str, artists: list[tuple[str, str]], count: int, seed: int) -> Path:
    from animeseg.data.build import build_dataset

    sources = "".join(
        SOURCE.format(name=fg, fg=SPRITES / "fg" / fg, bg=SPRITES / "bg" / bg, count=count // len(artists))
        for fg, bg in artists
    )
    config = work / f"{name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG.format(out=(work / name).resolve(), seed=seed, sources=sources))
    return Path(build_dataset(config, overwrite=True)["out"]) / "data.yaml"


def speed(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from animeseg.io import read_image
    from animeseg.maskrcnn.model import ModelConfig, build_model, save_checkpoint
    from animeseg.predict import Segmenter

    work = Path(args.work)
    heldout = (
        Path(args.heldout) if args.heldout else build(work, "speed-heldout", [("wanted-dragon", "wanted-dragon")], 8, 7)
    )
    images = [read_image(p) for p in sorted((heldout.parent / "images").rglob("*.jpg"))[: args.repeats + 1]]
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    models: list[tuple[str, Path]] = []
    for backbone in ("mobilenet_v3_large_fpn", "resnet50_fpn_v2"):
        path = work / f"speed-{backbone}.pt"
        config = ModelConfig(backbone=backbone)
        save_checkpoint(path, build_model(config), config)
        models.append((f"Mask R-CNN {backbone}", path))
    models.append(("YOLOv8n-seg", Path("yolov8n-seg.yaml")))
    print(
        f"Machine: {machine()}; torch threads {torch.get_num_threads()}; "
        f"images {images[0].shape[1]}x{images[0].shape[0]}"
    )
    print("\n| model | imgsz | wall s/image (median) | CPU s/image (median) | instances/image |")
    print("|---|---:|---:|---:|---:|")
    for label, path in models:
        for imgsz in args.imgsz:
            seg = Segmenter(path, imgsz=imgsz, conf=0.25, max_det=args.max_det, device="cpu")
            seg.detect(images[0])
            times, cpu, counts = [], [], []
            for image in images[1:]:
                t, c = time.perf_counter(), time.process_time()
                counts.append(len(seg.detect(image)))
                times.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            print(
                f"| {label} | {imgsz} | {statistics.median(times):.3f} | {statistics.median(cpu):.3f} "
                f"| {np.mean(counts):.1f} |"
            )


def compare(args: argparse.Namespace) -> None:
    from animeseg.evaluate import evaluate
    from animeseg.train import train
    from animeseg.train.maskrcnn import train_maskrcnn

    work = Path(args.work)
    data = build(work, "compare-train", TRAIN_ARTISTS, args.count, 0)
    heldout = Path(args.heldout)
    rows = []
    for item in args.epochs:
        arch, epochs = item.split("=")
        epochs = int(epochs)
        common = {"epochs": epochs, "imgsz": args.imgsz, "device": "cpu", "project": work / "runs",
                  "name": f"cmp-{arch}", "weights_dir": work / "weights"}  # fmt: skip
        started, cpu0 = time.perf_counter(), cpu_seconds()
        if arch == "maskrcnn":
            result = train_maskrcnn(
                data, backbone="mobilenet_v3_large_fpn", from_scratch=True, batch=4, lr0=0.02, evaluate_val=False,
                **common,
            )  # fmt: skip
        else:
            result = train(data, "yolov8n-seg.yaml", batch=16, extra={"plots": False, "exist_ok": True}, **common)
        minutes, cpu_minutes = (time.perf_counter() - started) / 60, (cpu_seconds() - cpu0) / 60
        m = evaluate(
            result.weights, heldout, split=args.split, imgsz=args.imgsz, device="cpu", out=work / "eval" / arch
        )
        r = m["results"]["raw"]
        inst = r.get("instances") or r["mask"].get("instances") or {}
        scores = (r["mask"]["AP"], r["mask"]["AP50"], r["box"]["AP"], r["foreground"]["IoU"])
        counts = (inst.get("missed", "?"), inst.get("spurious", "?"), m["ground_truth"]["images"])
        rows.append((arch, epochs, minutes, cpu_minutes, *scores, *counts))
    print(f"Machine: {machine()}; train set {data}; held-out {heldout} ({args.split})")
    print(
        "\n| model | epochs | train wall min | train CPU min | mask AP | mask AP50 | box AP | fg IoU | missed "
        "| spurious | test images |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| {} | {} | {:.1f} | {:.1f} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {} | {} | {} |".format(*row))


def main() -> None:
    if not SPRITES.is_dir():
        sys.exit(f"{SPRITES} not found: this benchmark needs the shared open-sprites data")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", choices=["speed", "compare"])
    p.add_argument("--work", default="runs/bench-maskrcnn")
    p.add_argument("--heldout", default=None, help="built held-out data.yaml (compare: required)")
    p.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-det", type=int, default=20, help="speed: instances kept per image (random weights keep all)")
    p.add_argument("--threads", type=int, default=1, help="speed: torch threads (CPU s/image is their sum)")
    p.add_argument("--count", type=int, default=120)
    p.add_argument("--epochs", nargs="+", default=["yolo=10", "maskrcnn=3"], help="ARCH=EPOCHS per model")
    p.add_argument("--split", default="train", help="split of the held-out set to score")
    args = p.parse_args()
    if args.section == "compare":
        args.imgsz = args.imgsz[0]
        if not args.heldout:
            sys.exit("compare needs --heldout path/to/built/heldout/data.yaml")
    speed(args) if args.section == "speed" else compare(args)


if __name__ == "__main__":
    main()
