"""Training throughput of `animeseg train` on this machine: seconds per epoch and images per second.

Builds a dataset of demo composites (`animeseg data demo` sources, ``--count`` images) in a temporary folder,
unless ``--data`` names one, then trains ``--model`` for ``--epochs`` at each ``--imgsz`` through
``animeseg.train.train`` (offline, study defaults), timing every epoch with Ultralytics callbacks. The first
epoch includes warm-up (dataloader start, first allocations) and is reported apart.

    PYTHONPATH=. python bench/train.py --imgsz 160 320 --epochs 3 --count 40 --device cpu
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path


def build_demo(root: Path, count: int, imgsz: int) -> Path:
    from animeseg.data.build import build_dataset
    from animeseg.data.demo import write_demo

    write_demo(root / "src")
    cfg = root / "src" / "bench.yaml"
    cfg.write_text(
        "out: built\nseed: 0\nval_fraction: 0.25\nclasses: [character]\n"
        f"imgsz: {imgsz}\nsources:\n  - name: composites\n    type: composite\n"
        "    foregrounds: anime-segmentation/fg\n    backgrounds: anime-segmentation/bg\n"
        f"    count: {count}\n    per_image: [1, 3]\n"
    )
    return Path(build_dataset(cfg)["out"]) / "data.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a built data.yaml (default: demo composites)")
    ap.add_argument("--count", type=int, default=40, help="demo composites to build")
    ap.add_argument("--model", default="yolov8n-seg.yaml")
    ap.add_argument("--imgsz", type=int, nargs="+", default=[160, 320])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    from animeseg.train import train

    with tempfile.TemporaryDirectory(prefix="animeseg-bench-train-") as tmp:
        root = Path(tmp)
        data = args.data or build_demo(root, args.count, max(args.imgsz))
        import yaml

        doc = yaml.safe_load(data.read_text())
        base = Path(doc["path"])
        n_train = sum(1 for _ in (base / doc["train"]).iterdir())
        n_val = sum(1 for _ in (base / doc["val"]).iterdir())
        rows = []
        for imgsz in args.imgsz:
            marks: dict[str, list[float]] = {"start": [], "train_end": [], "fit_end": []}
            callbacks = {
                "on_train_epoch_start": lambda t, m=marks: m["start"].append(time.perf_counter()),
                "on_train_epoch_end": lambda t, m=marks: m["train_end"].append(time.perf_counter()),
                "on_fit_epoch_end": lambda t, m=marks: m["fit_end"].append(time.perf_counter()),
            }
            t0 = time.perf_counter()
            train(
                data, args.model, epochs=args.epochs, imgsz=imgsz, batch=args.batch, device=args.device,
                project=root / "runs", name=f"bench-{imgsz}", weights_dir=root / "weights",
                extra={"plots": False}, callbacks=callbacks,
            )  # fmt: skip
            wall = time.perf_counter() - t0
            n = args.epochs
            train_s = [marks["train_end"][i] - marks["start"][i] for i in range(n)]
            epoch_s = [marks["fit_end"][i] - marks["start"][i] for i in range(n)]
            later = train_s[1:] or train_s
            rows.append(
                (
                    imgsz,
                    f"{train_s[0]:.1f}",
                    f"{statistics.median(later):.1f}",
                    f"{statistics.median(epoch_s[1:] or epoch_s):.1f}",
                    f"{n_train / statistics.median(later):.1f}",
                    f"{wall:.0f}",
                )
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{args.model}, {n_train} train / {n_val} val images, batch {args.batch}, {args.epochs} epochs, "
        f"device {args.device}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads; peak RSS {peak:.0f} MiB\n"
    )
    print("| imgsz | first epoch, train (s) | later epochs, train (s, median) | later epochs, train + val (s) "
          "| train images/s | wall, all epochs + final val (s) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


if __name__ == "__main__":
    main()
