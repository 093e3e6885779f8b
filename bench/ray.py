"""Throughput of ``animeseg predict`` on the local runner and on Ray workers; prints Markdown for
docs/benchmarks.md.

    PYTHONPATH=. python bench/ray.py                    # 40 composites, Ray with 1 and 2 workers, 3 rounds
    PYTHONPATH=. python bench/ray.py --images 200 --workers 1 2 4 --device 0 --gpus-per-worker 0.5

For each engine the whole run (``runner.run`` with ``--save json,masks``) is timed on the same folder of
Ren'Py composites (640x360) with the shared YOLOv8n-seg COCO ONNX model at 320. Ray's instance is started once,
before the runs (its start-up is reported on its own line); each Ray run still starts its actors and loads one
model per actor. "Once started" is the time from the first finished image to the last, divided by the images in
between (stamped as each result reaches the runner), so actor start and model load are left out for every engine
alike. Needs ``../shared`` and Ray (``pip install "animeseg[ray]"``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is called ray.py: its own folder on sys.path would shadow the ray package
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from animeseg.engine import LocalEngine  # noqa: E402
from animeseg.io import read_image  # noqa: E402
from animeseg.media import expand_sources  # noqa: E402
from animeseg.predict import LazySegmenter, SegmenterSpec  # noqa: E402
from animeseg.runner import run  # noqa: E402
from bench.composites import make_composites  # noqa: E402

SHARED = ROOT.parent / "shared"
RENPY = SHARED / "data" / "renpy-sprites"
ONNX = SHARED / "weights" / "yolov8n-seg-coco-int8.onnx"


def timed_run(items, segmenter, out: Path, engine) -> tuple[float, float, float]:
    """(whole run, until the first image was done, seconds per image from the first done to the last) in s."""
    shutil.rmtree(out, ignore_errors=True)
    stamps: list[float] = []
    t = time.perf_counter()
    summary = run(
        items, segmenter, out, ["json", "masks"], engine=engine, on_item=lambda _: stamps.append(time.perf_counter())
    )
    seconds = time.perf_counter() - t
    assert summary.failed == 0, [r.error for r in summary.results if r.error]
    return seconds, stamps[0] - t, (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each engine; medians are reported")
    ap.add_argument("--gpus-per-worker", type=float, default=0.0)
    args = ap.parse_args()
    if not (RENPY / "fg").is_dir() or not ONNX.is_file():
        print(f"needs {RENPY} and {ONNX}")
        return 1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from animeseg.engine_ray import RayEngine

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    src = tmp / "in"
    src.mkdir()
    for c in make_composites(RENPY, args.images, seed=300, size=(640, 360), max_sprites=3):
        Image.fromarray(c.image).save(src / f"{c.name}.png")
    items = expand_sources([str(src)])
    spec = SegmenterSpec.of(ONNX, imgsz=320, classes=[0], device=args.device)

    local = spec.build()
    local(read_image(items[0].path))  # warm-up, as a worker does on its first image
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    started = time.perf_counter() - t
    engines = {"local runner (this process, model loaded)": (LocalEngine(), local)}
    for n in args.workers:
        engine = RayEngine(workers=n, gpus_per_worker=args.gpus_per_worker)
        engines[f"Ray, {n} worker{'s' if n > 1 else ''}"] = (engine, LazySegmenter(spec))
    # rounds interleave the engines, so a slow spell of the machine touches them all; medians are reported
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, (engine, segmenter) in engines.items():
            runs[name].append(timed_run(items, segmenter, tmp / "out", engine))
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for name, timings in runs.items():
        seconds, first, per = (statistics.median(t[k] for t in timings) for k in range(3))
        rows.append((name, f"{first:.1f}", seconds, per))

    base = rows[0][3]
    print(
        f"{len(items)} composites 640x360, YOLOv8n-seg COCO int8 ONNX at 320, --save json,masks, device {args.device}"
    )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; Ray start-up {started:.1f} s; "
        f"medians of {args.rounds} interleaved rounds\n"
    )
    print("| engine | first image done (s) | run (s) | images/s | s/image once started | vs local |")
    print("|---|---|---|---|---|---|")
    for name, startup, seconds, per in rows:
        ips = len(items) / seconds
        print(f"| {name} | {startup} | {seconds:.1f} | {ips:.2f} | {per:.3f} | {per / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
