"""Temporal stability of ``predict --track`` masks with and without ``--stabilize``, on clips of held-out sprites
with true masks; prints Markdown for docs/benchmarks.md.

    PYTHONPATH=. python bench/stabilize.py                      # held-out clips: raw, off, each part, default
    PYTHONPATH=. python bench/stabilize.py --cost crossing      # + whole `animeseg predict clip.mp4 --track` runs
    PYTHONPATH=. python bench/stabilize.py --tune               # the same on the tuning clips (Ren'Py sprites)

Clips (``bench/clips.py``, 640x360, 60 frames, written as MPEG-4 and read back, as ``predict`` reads them):
``walking`` (one character crossing the frame), ``crossing`` (two characters walking towards each other and
crossing), ``fast`` (a character running across in 60 frames while jumping three times), ``pan`` (the camera pans
half a frame to the right past a standing character and a walking one), ``fast-crossing`` (two characters running
back and forth past each other four times, 30 px per frame, one hopping) and ``whip-pan`` (the camera pans two
frame widths, 22 px per frame, past two standing characters while a third runs along with it, hopping). Characters
are the held-out artist's
(``open-sprites/fg/wanted-dragon``) over that game's backgrounds. The tuning clips (``--tune``) are made the same
way from the Ren'Py sprites, never from the held-out ones.

The model is the packaged one at its defaults (what ``animeseg predict clip.mp4 --track`` runs). Each clip is
detected and tracked once; the stabiliser (:class:`animeseg.stabilize.MaskStabilizer`) then runs on those tracked
instances, which is exactly what :class:`animeseg.track.TrackingSegmenter` does with ``stabilize=True``. Scores
(``bench.clips.temporal_scores``): temporal error = mean over characters and frames of
sum |(m_t - m_t-1) - (g_t - g_t-1)| / |g_t| (binary dtSSD), the same on alphas (the cut-outs' flicker: the
refiner's alphas where there are, else the masks, against the sprites' true alphas), and mean mask IoU per
character and frame. Cost: the stabiliser's milliseconds per frame, and with ``--cost`` the whole command's
wall-clock and CPU seconds (medians of ``--rounds`` runs of each kind, interleaved). The ``no motion`` row is the
default with every motion estimate replaced by none (what motion compensation buys).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import date
from pathlib import Path
from unittest.mock import patch

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg.media import iter_frames  # noqa: E402
from animeseg.predict import MODEL_DEFAULT, Segmenter  # noqa: E402
from animeseg.stabilize import MaskStabilizer  # noqa: E402
from animeseg.track import TrackingSegmenter  # noqa: E402
from animeseg.weights import model_settings, packaged_model  # noqa: E402
from bench.clips import Clip, Walker, make_clip, temporal_scores  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
OPEN = SHARED / "open-sprites"
RENPY = SHARED / "renpy-sprites"
WD = "wanted-dragon/game__sprites__"

#: name -> (sprite root, walkers, background, pan)
HELD_OUT = {
    "walking": (OPEN, (Walker(f"{WD}cyril neutral.png", 0.12, 0.88, 0.85),), "wanted-dragon/exterior_day.jpg", 0.0),
    "crossing": (
        OPEN,
        (
            Walker(f"{WD}cyril neutral.png", 0.15, 0.85, 0.85),
            Walker(f"{WD}balrung neutral.png", 0.85, 0.15, 0.82, sink=0.03, flip=True),
        ),
        "wanted-dragon/woods.jpg",
        0.0,
    ),
    "fast": (
        OPEN,
        (Walker(f"{WD}niir neutral.png", 0.0, 1.0, 0.7, hop=0.25, hops=3),),
        "wanted-dragon/gate_day.jpg",
        0.0,
    ),
    "pan": (
        OPEN,
        (
            Walker(f"{WD}balrung smile.png", 0.55, 0.55, 0.8, sink=0.02),
            Walker(f"{WD}niir smile.png", 0.2, 0.6, 0.78),
        ),
        "wanted-dragon/hall_day.jpg",
        0.5,
    ),
    "fast-crossing": (
        OPEN,
        (
            Walker(f"{WD}cyril neutral.png", 0.15, 0.85, 0.8, hop=0.12, hops=4, legs=4),
            Walker(f"{WD}balrung neutral.png", 0.85, 0.15, 0.78, sink=0.03, flip=True, legs=4),
        ),
        "wanted-dragon/kingdom.jpg",
        0.0,
    ),
    "whip-pan": (
        OPEN,
        (
            Walker(f"{WD}balrung smile.png", 0.85, 0.85, 0.8, sink=0.02),
            Walker(f"{WD}cyril neutral.png", 2.0, 2.0, 0.82),
            Walker(f"{WD}niir neutral.png", 0.3, 2.6, 0.74, hop=0.1, hops=2),
        ),
        "wanted-dragon/stairs_day.jpg",
        2.0,
    ),
}
TUNING = {
    "t-crossing": (
        RENPY,
        (Walker("eileen happy.png", 0.12, 0.88, 0.83), Walker("lucy happy.png", 0.88, 0.12, 0.8, sink=0.03, flip=True)),
        "bg meadow.jpg",
        0.0,
    ),
    "t-three": (
        RENPY,
        (
            Walker("sylvie green normal.png", 0.50, 0.55, 0.78, sink=0.05),
            Walker("eileen happy.png", 0.10, 0.90, 0.85),
            Walker("lucy mad.png", 0.92, 0.08, 0.80, sink=0.03, flip=True),
        ),
        "bg meadow.jpg",
        0.0,
    ),
    "t-fast-pan": (
        RENPY,
        (
            Walker("sylvie green normal.png", 0.5, 0.5, 0.78, sink=0.05),
            Walker("eileen happy.png", 0.0, 1.1, 0.7, hop=0.2, hops=2),
        ),
        "bg meadow.jpg",
        0.3,
    ),
    "t-fast-crossing": (
        RENPY,
        (
            Walker("eileen happy.png", 0.15, 0.85, 0.8, hop=0.12, hops=4, legs=4),
            Walker("lucy happy.png", 0.85, 0.15, 0.78, sink=0.03, flip=True, legs=4),
        ),
        "bg meadow.jpg",
        0.0,
    ),
    "t-whip-pan": (
        RENPY,
        (
            Walker("sylvie green normal.png", 0.85, 0.85, 0.78, sink=0.05),
            Walker("lucy mad.png", 2.0, 2.0, 0.8, sink=0.03),
            Walker("eileen happy.png", 0.3, 2.6, 0.72, hop=0.1, hops=2),
        ),
        "bg meadow.jpg",
        2.0,
    ),
}


def clip_file(name: str, spec: tuple, frames: int, folder: Path) -> tuple[Clip, Path]:
    """The clip and its MPEG-4 file (what ``predict`` reads); its frames are replaced by the decoded ones."""
    root, walkers, background, pan = spec
    clip = make_clip(root, walkers, frames=frames, size=(640, 360), background=background, name=name, pan=pan)
    path = folder / f"{name}.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24, (640, 360))
    for frame in clip.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    clip.frames = [frame for _, frame in iter_frames(path)]
    return clip, path


def tracked(seg: Segmenter, clip: Clip) -> list:
    tracking = TrackingSegmenter(seg, stabilize=False)
    tracking.start(clip.name, restart=True)
    return [tracking(frame) for frame in clip.frames]


def stabilised(clip: Clip, plain: list, **settings) -> tuple[list, float]:
    stab = MaskStabilizer(**settings)
    out, seconds = [], 0.0
    for frame, inst in zip(clip.frames, plain, strict=True):
        t = time.perf_counter()
        out.append(stab.update(frame, inst))
        seconds += time.perf_counter() - t
    return out, seconds / len(plain) * 1000


def whole_run(path: Path, extra: list[str], out: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, all threads) of one ``animeseg predict clip --track`` run: on a
    machine shared with other work the CPU time is the steadier measure of what the run itself costs."""
    cmd = [sys.executable, "-m", "animeseg", "predict", str(path), "--track", "--out", str(out), "--overwrite", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


@contextmanager
def no_motion() -> Iterator[None]:
    """The stabiliser with every motion estimate replaced by none (what motion compensation buys)."""
    import animeseg.stabilize as stabilize

    still = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    names = [n for n in ("estimate_motion", "centre_shift") if hasattr(stabilize, n)]
    with ExitStack() as stack:
        for name in names:
            stack.enter_context(patch.object(stabilize, name, lambda *a, **k: still))
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--tune", action="store_true", help="the tuning clips (Ren'Py sprites) instead of the held-out")
    ap.add_argument("--clips", nargs="*", default=[], help="only these clips")
    ap.add_argument("--cost", nargs="*", default=[], help="clips to time whole `predict clip.mp4 --track` runs on")
    ap.add_argument("--rounds", type=int, default=3, help="whole runs of each kind, interleaved (medians)")
    ap.add_argument("--refine", default=None, help="refiner (default: the model's own, as predict runs it)")
    args = ap.parse_args()
    if not (OPEN / "fg" / "wanted-dragon").is_dir():
        sys.exit(f"needs {OPEN}")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {date.today()}")
    model = packaged_model("onnx")
    seg = Segmenter(model, args.refine or MODEL_DEFAULT, **model_settings(model), device="cpu")
    raw_seg = Segmenter(model, "none", **model_settings(model), device="cpu")
    clips = TUNING if args.tune else HELD_OUT
    # each part alone, then all of them (the default), and the default without motion
    grid = {
        "blend only": {"snap": None, "carry": 0},
        "snap only": {"weight": 1.0, "carry": 0},
        "blend + carry": {"snap": None},
        "no motion": {},
        "default (all)": {},
    }
    rows = [
        "| clip | characters | refiner | stabilise | temporal error | vs raw | alpha error | mean IoU | ms / frame |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    totals: dict[str, list[tuple[float, float]]] = {}

    def row(name: str, chars: int, refiner: str, label: str, got: dict, base: dict, ms: str = "") -> None:
        rows.append(
            f"| {name} | {chars} | {refiner} | {label} | {got['dtssd']:.3f} | {got['dtssd'] / base['dtssd']:.2f}x "
            f"| {got['alpha_dtssd']:.3f} | {got['iou']:.3f} | {ms} |"
        )
        print(rows[-1], flush=True)
        totals.setdefault(f"{refiner}, {label}", []).append((got["dtssd"] / base["dtssd"], got["iou"] - base["iou"]))

    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in clips.items():
            if args.clips and name not in args.clips:
                continue
            clip, path = clip_file(name, spec, args.frames, Path(tmp))
            chars = len(spec[1])
            base = temporal_scores(clip.truth, tracked(raw_seg, clip))
            row(name, chars, "none", "off (raw)", base, base)
            plain = tracked(seg, clip)
            row(name, chars, "default", "off", temporal_scores(clip.truth, plain), base)
            for label, settings in grid.items():
                with no_motion() if label == "no motion" else nullcontext():
                    masks, ms = stabilised(clip, plain, **settings)
                row(name, chars, "default", label, temporal_scores(clip.truth, masks), base, f"{ms:.1f}")
            if name in args.cost:
                modes = {"raw": ["--refine", "none", "--no-stabilize"], "off": ["--no-stabilize"], "on": []}
                runs: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
                for _ in range(args.rounds):  # interleaved, so every kind sees the same load
                    for mode, extra in modes.items():
                        runs[mode].append(whole_run(path, extra, Path(tmp) / f"run-{mode}"))
                for k, unit in ((0, "s"), (1, "CPU s")):
                    raw, off, on = (statistics.median(r[k] for r in runs[m]) for m in modes)
                    print(
                        f"whole run {name}: --refine none --no-stabilize {raw:.2f} {unit}, --no-stabilize "
                        f"{off:.2f} {unit}, default {on:.2f} {unit} ({on / off:.2f}x the unstabilised, "
                        f"{on / raw:.2f}x the raw); all runs: "
                        + ", ".join(f"{m} {' '.join(f'{r[k]:.2f}' for r in runs[m])}" for m in modes),
                        flush=True,
                    )
    rows.append("")
    rows.append("| refiner, stabilise | mean temporal error vs raw | mean IoU - raw's |")
    rows.append("|---|---:|---:|")
    for label, values in totals.items():
        rows.append(f"| {label} | {np.mean([v[0] for v in values]):.2f}x | {np.mean([v[1] for v in values]):+.3f} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
