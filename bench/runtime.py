"""The native runtime's speed (animeseg.runtime): start time of one prediction and images per second over a
folder, each backend and precision side by side; prints Markdown for docs/benchmarks.md.

    PYTHONPATH=. python bench/runtime.py                      # everything (about 5 min on a 2-core CPU)
    PYTHONPATH=. python bench/runtime.py --sections throughput --count 100 --rounds 2

Sections:

1. **start**: wall time of the whole process ``animeseg predict one.jpg --save json`` (one 1280x720 JPEG, the
   packaged model), median of ``--repeats`` runs, per ``--runtime``; the first with an empty OpenVINO cache too.
2. **throughput**: images per second once started (model loaded, then ``runner.run`` over ``--count`` 1280x720
   JPEGs to predictions.json, what ``animeseg predict DIR --save json`` does, with the packaged model's default
   refiner unless ``--refine`` says otherwise), per runtime, the runtimes
   interleaved over ``--rounds`` rounds (median and best), and the CPU seconds spent per image (all threads:
   on a machine shared with other work, 2 / that is what two free cores would allow). ``--int8 FILE`` adds an
   ``animeseg export onnx --int8`` file of the packaged model on both backends.
3. **threads**: the default runtime as 2 single-threaded streams (images side by side, the default) against one
   stream of 2 threads and of 1 thread, with and without the runner's work ahead (reading, and detecting where
   the detector runs images side by side): the thread settings' measurement.

The JPEGs are composites of ``../shared/data/open-sprites`` characters on their artists' backgrounds (made once
into ``--work``); exits with a message without them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg.engine import LocalEngine  # noqa: E402
from animeseg.media import expand_sources  # noqa: E402
from animeseg.predict import Segmenter  # noqa: E402
from animeseg.runner import run  # noqa: E402
from animeseg.runtime import session as rt  # noqa: E402
from animeseg.runtime.yolo import YoloOnnxDetector  # noqa: E402
from animeseg.settings import model_defaults  # noqa: E402
from animeseg.weights import packaged_model  # noqa: E402

SPRITES = ROOT.parent / "shared" / "data" / "open-sprites"
RUNTIMES = ["openvino-bf16", "openvino-fp32", "onnxruntime"]
#: The refiner every throughput run uses (``--refine``; default: the packaged model's own, as predict does).
REFINE: list[str] = ["none"]


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` 1280x720 JPEGs (quality 90) of sprites on backgrounds, every artist in turn; made once."""
    import cv2

    from bench.composites import make_composites

    folder.mkdir(parents=True, exist_ok=True)
    paths = sorted(folder.glob("*.jpg"))
    if len(paths) >= count:
        return paths[:count]
    artists = sorted(p.name for p in (SPRITES / "fg").iterdir() if (SPRITES / "bg" / p.name).is_dir())
    per = -(-count // len(artists))
    k = 0
    for artist in artists:
        for c in make_composites(SPRITES, per, seed=7, size=(1280, 720), folder=artist):
            cv2.imwrite(str(folder / f"{k:04d}.jpg"), c.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            k += 1
    return sorted(folder.glob("*.jpg"))[:count]


def available(runtime: str) -> bool:
    backend, precision = rt.parse_runtime(runtime)
    if backend == "openvino" and not rt.openvino_available():
        return False
    return not (precision == "bf16" and not rt.bf16_supported())


class InOrder(LocalEngine):
    """The local engine, declared as running elsewhere: the runner then reads each image when it gets to it
    (no read-ahead), for the comparison."""

    in_process = False


def images_per_second(
    detector: YoloOnnxDetector, paths: list[Path], out: Path, read_ahead: bool = True
) -> tuple[float, float]:
    """Images per second of ``runner.run`` (json only) over ``paths`` with an already loaded detector, and the
    CPU seconds (all threads) the process spent per image."""
    items = expand_sources([str(p) for p in paths])
    segmenter = Segmenter(None, REFINE[0], detector=detector)
    for p in paths[:3]:  # warm-up: first-call allocations, OpenVINO's first inference
        from animeseg.io import read_image

        detector.detect(read_image(p))
    t, cpu = time.perf_counter(), time.process_time()
    summary = run(items, segmenter, out, ["json"], engine=None if read_ahead else InOrder())
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert summary.succeeded == len(paths), summary.rows()
    return len(paths) / seconds, cpu / len(paths)


def bench_throughput(paths: list[Path], rounds: int, tmp: Path, int8: Path | None) -> list[str]:
    runs = {r: YoloOnnxDetector(packaged_model(), runtime=r) for r in RUNTIMES if available(r)}
    if int8 is not None:  # an `animeseg export onnx --int8` file of the packaged model, on both backends
        for r in ("onnxruntime", "openvino-fp32"):
            if available(r):
                runs[f"int8 file, {r}"] = YoloOnnxDetector(int8, runtime=r, conf=0.5)
    auto = YoloOnnxDetector(packaged_model()).session
    rates: dict[str, list[tuple[float, float]]] = {r: [] for r in runs}
    for k in range(rounds):
        for n, (r, detector) in enumerate(runs.items()):
            rates[r].append(images_per_second(detector, paths, tmp / f"tp-{n}-{k}"))
            print(f"round {k + 1} {r}: {rates[r][-1][0]:.2f} images/s", file=sys.stderr, flush=True)
    rows = [
        f"| runtime ({len(paths)} JPEGs 1280x720 to predictions.json, default settings) | streams x threads "
        "| images/s, median | best | CPU s per image |",
        "|---|---|---|---|---|",
    ]
    for r, detector in runs.items():
        s = detector.session
        same = (s.path, s.backend, s.precision) == (auto.path, auto.backend, auto.precision)
        ips = [x[0] for x in rates[r]]
        cpu = statistics.median(x[1] for x in rates[r])
        rows.append(
            f"| {r}{' **(default here)**' if same else ''} | {s.streams} x {s.threads} | {statistics.median(ips):.2f} "
            f"| {max(ips):.2f} | {cpu:.3f} |"
        )
    return rows


def bench_threads(paths: list[Path], rounds: int, tmp: Path) -> list[str]:
    """The default runtime's thread settings: streams x threads, with and without the runner's work ahead."""
    configs = [(2, 1, True), (1, 2, True), (1, 1, True), (2, 1, False), (1, 2, False)]
    detectors = {(st, th): YoloOnnxDetector(packaged_model(), streams=st, threads=th) for st, th, _ in configs}
    rates: dict[tuple[int, int, bool], list[float]] = {c: [] for c in configs}
    for k in range(rounds):
        for st, th, ahead in configs:
            out = tmp / f"th-{st}-{th}-{ahead}-{k}"
            rates[st, th, ahead].append(images_per_second(detectors[st, th], paths, out, ahead)[0])
            print(f"round {k + 1} {st}x{th} ahead {ahead}: {rates[st, th, ahead][-1]:.2f} images/s", file=sys.stderr)
    s = detectors[2, 1].session
    rows = [
        f"| default runtime ({s.backend} {s.precision}): streams x threads | work ahead (runner) | images/s, median "
        "| best |",
        "|---|---|---|---|",
    ]
    for st, th, ahead in configs:
        r = rates[st, th, ahead]
        what = ("detect ahead on 2 threads" if st > 1 else "read the next image ahead") if ahead else "none"
        rows.append(f"| {st} x {th} | {what} | {statistics.median(r):.2f} | {max(r):.2f} |")
    return rows


def bench_start(image: Path, repeats: int, tmp: Path) -> list[str]:
    def once(runtime: str, home: Path) -> float:
        env = {**os.environ, "ANIMESEG_HOME": str(home), "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "animeseg", "predict", str(image), "--save", "json", "--runtime", runtime]
        cmd += ["--out", str(tmp / f"start-{runtime}"), "--overwrite"]
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        return time.perf_counter() - t

    rows = [
        f"| `animeseg predict one.jpg --save json --runtime R` (1280x720) | first run, empty cache "
        f"| median of {repeats} |",
        "|---|---|---|",
    ]
    for runtime in ["auto", *[r for r in RUNTIMES if available(r)]]:
        home = Path(tempfile.mkdtemp(prefix="start-home-", dir=tmp))
        first = once(runtime, home)
        times = [once(runtime, home) for _ in range(repeats)]
        rows.append(f"| {runtime} | {first:.2f} s | {statistics.median(times):.2f} s |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", nargs="+", default=["start", "throughput", "threads"])
    ap.add_argument("--count", type=int, default=100, help="JPEGs for the throughput sections")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="runs per start-time figure")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "animeseg-bench-runtime")
    ap.add_argument("--int8", type=Path, help="an `animeseg export onnx --int8` file to add to the throughput table")
    ap.add_argument("--refine", help="refiner of the throughput runs (default: the packaged model's own, as predict)")
    args = ap.parse_args()
    if not (SPRITES / "fg").is_dir():
        sys.exit(f"needs the sprites at {SPRITES}")
    paths = make_images(args.work / "images", args.count)
    REFINE[0] = args.refine or model_defaults(packaged_model()).refine
    load = os.getloadavg()
    print(
        f"# {time.strftime('%Y-%m-%d', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, load average {load[0]:.1f} at start; "
        f"auto = {rt.resolve_backend()} {rt.resolve_precision(rt.resolve_backend())}; refiner {REFINE[0]}\n"
    )
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for section, fn in (
            ("start", lambda: bench_start(paths[0], args.repeats, Path(tmp))),
            ("throughput", lambda: bench_throughput(paths, args.rounds, Path(tmp), args.int8)),
            ("threads", lambda: bench_threads(paths, args.rounds, Path(tmp))),
        ):
            if section in args.sections:
                print("\n".join(fn()) + "\n", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
