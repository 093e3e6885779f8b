"""Benchmark ``animeseg data build``: composites per second and peak memory at 640 px, and COCO conversion speed
on a generated annotation file with 250k person instances.

    python bench/data_build.py                       # everything (several minutes on 2 cores)
    python bench/data_build.py --composites 200 --coco-instances 20000   # quicker

Every measurement runs in a fresh child process. Peak memory is the largest sum, sampled every 50 ms, of the
memory of that process and its worker processes (PSS: pages workers share are counted once). Memory staying flat
is shown by building two sizes of the same source: the peak should not grow with the number of images. The COCO
part also reports what ``json.load`` alone needs for the same file, which is what a converter that loads the file
whole starts from.

Sources are generated in a temporary folder (synthetic characters drawn by ``animeseg.data.synth``, sized like
anime-segmentation's foregrounds: 900-1400 px tall); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class TreeMemory:
    """Samples the memory of this process plus all its descendants (worker processes) every 50 ms and keeps the
    peak of the sum: what the machine has to have free for the whole build. Proportional set size (PSS) is used
    where the system reports it, so pages that forked workers share are counted once."""

    def __init__(self):
        import psutil

        self.me = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.me, *self.me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    info = p.memory_full_info()
                    total += getattr(info, "pss", info.rss)
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


# ------------------------------------------------------------------------------------------------ generation
def make_composite_sources(root: Path, n_fg: int, n_bg: int) -> None:
    from animeseg.data import synth
    from animeseg.io import write_image

    rng = np.random.default_rng(0)
    for i in range(n_fg):
        write_image(root / "fg" / f"char_{i:04d}.png", synth.character(rng, int(rng.integers(900, 1400))))
    for i in range(n_bg):
        write_image(root / "bg" / f"bg_{i:04d}.jpg", synth.background(rng, 1280, 720), quality=90)


def make_coco(root: Path, instances: int, per_image: int = 10, size: tuple[int, int] = (640, 480)) -> Path:
    """A COCO file with ``instances`` person polygons (``per_image`` per image) plus one dog per image; every
    image file is a hard link to one JPEG. Written as a stream: the generator never holds the whole file."""
    from animeseg.data import synth
    from animeseg.io import write_image

    rng = np.random.default_rng(1)
    w, h = size
    images = -(-instances // per_image)
    (root / "images").mkdir(parents=True, exist_ok=True)
    first = root / "images" / "000000000000.jpg"
    write_image(first, synth.background(rng, w, h), quality=90)
    for i in range(1, images):
        os.link(first, root / "images" / f"{i:012d}.jpg")
    path = root / "instances_bench.json"
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"info":{"description":"bench"},"licenses":[],"images":[')
        for i in range(images):
            rec = {"license": 1, "file_name": f"{i:012d}.jpg", "height": h, "width": w, "id": i}
            f.write(("," if i else "") + json.dumps(rec))
        f.write('],"annotations":[')
        aid = 0
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        for i in range(images):
            for k in range(per_image + 1):
                cx, cy = rng.uniform(40, w - 40), rng.uniform(60, h - 60)
                rx, ry = rng.uniform(8, 40), rng.uniform(20, 60)
                wobble = 1 + 0.15 * np.sin(3 * t + rng.uniform(0, 6))
                poly = np.stack([cx + rx * wobble * np.cos(t), cy + ry * wobble * np.sin(t)], 1).round(2)
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                ann = {
                    "segmentation": [poly.reshape(-1).tolist()],
                    "area": float(np.pi * rx * ry),
                    "iscrowd": 0,
                    "image_id": i,
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "category_id": 1 if k < per_image else 18,
                    "id": aid,
                }
                f.write(("," if aid else "") + json.dumps(ann))
                aid += 1
        f.write('],"categories":[{"supercategory":"person","id":1,"name":"person"},')
        f.write('{"supercategory":"animal","id":18,"name":"dog"}]}')
    return path


# ----------------------------------------------------------------------------------------- child measurements
def child_build(config: str, workers: int) -> dict:
    from animeseg.data.build import build_dataset

    with TreeMemory() as mem:
        t0 = time.perf_counter()
        m = build_dataset(config, workers=workers, overwrite=True)
        dt = time.perf_counter() - t0
    images = m["images"]["train"] + m["images"]["val"]
    instances = m["instances"]["train"] + m["instances"]["val"]
    return {"seconds": dt, "images": images, "instances": instances, "peak_mb": mem.peak_mb}


def child_index(config: str) -> dict:
    """Only the COCO listing pass (stream the file, build the index), as build_dataset does it first."""
    from animeseg.data.config import load_config
    from animeseg.data.sources import BuildContext, make_source

    cfg = load_config(config)
    with TreeMemory() as mem:
        t0 = time.perf_counter()
        listing = make_source(cfg.sources[0], BuildContext.of(cfg)).tasks()
        dt = time.perf_counter() - t0
    return {
        "seconds": dt,
        "tasks": len(listing.tasks),
        "annotations": listing.stats["annotations"],
        "peak_mb": mem.peak_mb,
    }


def child_json_load(path: str) -> dict:
    with TreeMemory() as mem:
        t0 = time.perf_counter()
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        dt = time.perf_counter() - t0
    return {"seconds": dt, "annotations": len(doc["annotations"]), "peak_mb": mem.peak_mb}


def run_child(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------ main
def composite_config(root: Path, count: int) -> Path:
    cfg = root / f"composites_{count}.yaml"
    cfg.write_text(
        f"out: out_{count}\nseed: 0\nimgsz: 640\nsources:\n"
        f"  - {{name: comp, type: composite, foregrounds: src/fg, backgrounds: src/bg, count: {count}, "
        "per_image: [1, 3]}\n"
    )
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--composites", type=int, default=400, help="composites in the larger build (smaller: 1/4)")
    ap.add_argument("--coco-instances", type=int, default=250_000, help="person instances in the COCO file")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for the parallel runs")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "build":
            result = child_build(rest[0], int(rest[1]))
        elif kind == "index":
            result = child_index(rest[0])
        else:
            result = child_json_load(rest[0])
        print(json.dumps(result))
        return

    tmp = Path(tempfile.mkdtemp(prefix="animeseg-bench-"))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}; tmp {tmp}"
    )
    results: dict = {}
    try:
        t0 = time.perf_counter()
        make_composite_sources(tmp / "src", n_fg=60, n_bg=20)
        print(f"generated 60 foregrounds (900-1400 px tall) + 20 backgrounds in {time.perf_counter() - t0:.1f} s")
        small, large = max(1, args.composites // 4), args.composites
        for count, workers in ((small, 1), (large, 1), (large, args.workers)):
            r = run_child("build", str(composite_config(tmp, count)), str(workers))
            r["per_second"] = r["images"] / r["seconds"]
            results[f"composites {count} workers {workers}"] = r
            print(
                f"composites: {count:5d} at 640 px, workers {workers}: {r['seconds']:7.1f} s, "
                f"{r['per_second']:6.2f} composites/s, peak memory {r['peak_mb']:7.0f} MiB"
            )

        a, b = results[f"composites {small} workers 1"], results[f"composites {large} workers 1"]
        marginal = (b["images"] - a["images"]) / max(b["seconds"] - a["seconds"], 1e-9)
        results["composites marginal per second"] = marginal
        print(f"composites: {marginal:.2f} composites/s once started (difference of the two single-worker runs)")

        t0 = time.perf_counter()
        ann = make_coco(tmp / "coco", args.coco_instances)
        size_mb = ann.stat().st_size / 2**20
        print(
            f"generated COCO file: {args.coco_instances:,} person instances, {size_mb:.0f} MiB, "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        cfg = tmp / "coco.yaml"
        cfg.write_text(
            "out: out_coco\nseed: 0\nimgsz: 640\nval_fraction: 0.1\nsources:\n"
            f"  - {{name: coco, type: coco, annotations: '{ann}', images: '{tmp / 'coco' / 'images'}', "
            "classes: {person: character}}\n"
        )
        r = run_child("json", str(ann))
        results["json.load"] = r
        print(f"json.load alone:    {r['seconds']:7.1f} s, peak memory {r['peak_mb']:7.0f} MiB")
        r = run_child("index", str(cfg))
        results["coco index"] = r
        print(
            f"streamed index:     {r['seconds']:7.1f} s, {r['annotations'] / r['seconds']:9,.0f} annotations/s, "
            f"peak memory {r['peak_mb']:7.0f} MiB"
        )
        r = run_child("build", str(cfg), str(args.workers))
        r["instances_per_second"] = r["instances"] / r["seconds"]
        results["coco build"] = r
        print(
            f"full conversion:    {r['seconds']:7.1f} s, {r['images']:,} images, {r['instances']:,} instances, "
            f"{r['instances_per_second']:,.0f} instances/s (workers {args.workers}), "
            f"peak memory {r['peak_mb']:7.0f} MiB"
        )
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        print(json.dumps(results))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
