"""Identity switches per character with and without ``--track``, on clips of real sprites walking across each
other; prints Markdown for docs/benchmarks.md.

    PYTHONPATH=. python bench/track.py                  # both clips, bytetrack and botsort

Clips come from ``bench/clips.py``: ``crossing`` (two characters walking towards each other, one crossing) and
``three`` (two characters walking across a third who stands, three crossings), 320x240, made frame by frame
from Ren'Py sprites over a real background, so every character's identity is known in every frame. The shared
YOLOv8n-seg COCO int8 ONNX model (``imgsz 320``, people only) detects; each ground-truth character is matched
in each frame to the predicted mask of best IoU (at least 0.5, each used once).

*Identity* is the ``track_id`` with ``--track``; without it, it is the instance's position in the frame, which
is what picks its colour in overlays and its ``_<i>`` in file names. A switch is a frame in which a character's
identity differs from the one it had when last seen. The tracker's own cost is timed apart, replaying each clip's
detections (at the tracker's low threshold, 0.1) through a fresh tracker: milliseconds per frame, median of 5
passes; detection and writing dominate a frame's time and do not depend on tracking.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg.predict import Segmenter  # noqa: E402
from animeseg.track import Tracker, TrackingSegmenter  # noqa: E402
from bench.clips import CROSSING, THREE, identities, make_clip, switches  # noqa: E402

SHARED = ROOT.parent / "shared"
RENPY = SHARED / "data" / "renpy-sprites"
ONNX = SHARED / "weights" / "yolov8n-seg-coco-int8.onnx"
CLIPS = {"crossing": CROSSING, "three": THREE}


def run(clips: list[str], frames: int, trackers: list[str]) -> list[str]:
    seg = Segmenter(ONNX, imgsz=320, classes=[0])
    rows = [
        "| clip | frames | crossings | identity | characters found (frame-matches) | switches | switches per "
        "character | ids per character | tracker ms / frame |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name in clips:
        clip = make_clip(RENPY, CLIPS[name], frames=frames, name=name)
        seg.detect(clip.frames[0])  # warm-up
        low = replace(seg.settings, conf=0.1)
        detections = [seg.detect(frame, low) for frame in clip.frames]
        modes: list[tuple[str, object]] = [("position (no --track)", seg)]
        modes += [(f"--track --tracker {t}", TrackingSegmenter(seg, t)) for t in trackers]
        for label, model in modes:
            if isinstance(model, TrackingSegmenter):
                model.start(name, restart=True)
            per_frame = []
            for frame, truth in zip(clip.frames, clip.truth, strict=True):
                pred = model(frame)
                ids = pred.track_ids if pred.track_ids is not None else np.arange(len(pred))
                per_frame.append(identities(truth, pred, ids))
            stats = switches(per_frame)
            cost = "-"
            if isinstance(model, TrackingSegmenter):
                passes = []
                for _ in range(5):
                    tracker = Tracker(model.tracker_name, conf=model.conf)
                    t = time.perf_counter()
                    for frame, det in zip(clip.frames, detections, strict=True):
                        tracker.update(det, frame)
                    passes.append((time.perf_counter() - t) / frames * 1000)
                cost = f"{float(np.median(passes)):.2f}"
            total = sum(s["switches"] for s in stats.values())
            rows.append(
                f"| {name} | {frames} | {clip.crossings} | {label} | {len(stats)} "
                f"({sum(s['frames'] for s in stats.values())}) | {total} "
                f"| {' / '.join(str(stats[k]['switches']) for k in sorted(stats))} "
                f"| {' / '.join(str(stats[k]['ids']) for k in sorted(stats))} | {cost} |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--trackers", nargs="+", default=["bytetrack", "botsort"])
    args = ap.parse_args()
    if not (RENPY / "fg").is_dir() or not ONNX.is_file():
        sys.exit(f"needs {RENPY} and {ONNX}")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {date.today()}")
    rows = run(args.clips, args.frames, args.trackers)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
