"""How often ``--save layers`` stacks an occluding character above the one it occludes, on composites with a known
order; prints Markdown for docs/benchmarks.md.

    PYTHONPATH=. python bench/layers.py                 # 250 scenes of each kind

Two kinds of scene, each 2 or 3 characters pasted left to right over a background (later ones in front, as
``animeseg.data.synth.scene`` does): ``held-out sprites`` are the held-out artist's sprites (``wanted-dragon``)
over that game's backgrounds, 480x320; ``synthetic`` are the demo's procedural characters, 320x240. The masks
given to :func:`animeseg.masks.occlusion_order` are the true visible masks (so this measures the ordering rule,
not a model). A pair counts when the characters' whole alphas overlap by more than 20 pixels and both keep more
than 100 visible pixels; it is right when the one pasted later is higher in the stack. Also times
:func:`animeseg.writers.layered_image` + :func:`animeseg.psd.encode_psd` on a 1280x720 picture with 3 characters.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animeseg.data import synth  # noqa: E402
from animeseg.instances import Instances  # noqa: E402
from animeseg.io import read_image, read_rgba  # noqa: E402
from animeseg.masks import occlusion_order  # noqa: E402
from animeseg.psd import encode_psd  # noqa: E402
from animeseg.writers import layered_image  # noqa: E402

SPRITES = ROOT.parent / "shared" / "data" / "open-sprites"
HELD_OUT = "wanted-dragon"


def sprite_scene(rng: np.random.Generator, fgs: list[Path], bgs: list[Path], people: int, size=(480, 320)):
    """(image, visible masks, alphas) of ``people`` held-out sprites pasted left to right (later in front)."""
    width, height = size
    image = cv2.resize(read_image(bgs[rng.integers(len(bgs))]), size, interpolation=cv2.INTER_AREA)
    alphas = []
    for i in range(people):
        sprite = read_rgba(fgs[rng.integers(len(fgs))])
        if rng.random() < 0.5:
            sprite = np.ascontiguousarray(sprite[:, ::-1])
        h = int(height * rng.uniform(0.6, 1.0))
        x = int(width * (i + rng.uniform(-0.1, 0.5)) / people - h * 0.2)
        alphas.append(synth.paste(image, sprite, x, int(height - h * rng.uniform(0.85, 1.02)), h))
    whole = [a >= 128 for a in alphas]
    visible = [m & ~np.any(whole[i + 1 :], axis=0) if i + 1 < people else m for i, m in enumerate(whole)]
    return image, visible, alphas


def accuracy(make, scenes: int) -> tuple[int, int]:
    right = pairs = 0
    for _ in range(scenes):
        _, visible, alphas = make()
        whole = [a >= 128 for a in alphas]
        pos = {k: p for p, k in enumerate(occlusion_order(np.array(visible)))}
        for i in range(len(visible)):
            for j in range(i + 1, len(visible)):
                if (whole[i] & whole[j]).sum() > 20 and visible[i].sum() > 100 and visible[j].sum() > 100:
                    pairs += 1
                    right += pos[j] > pos[i]
    return right, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=250)
    args = ap.parse_args()
    fgs = sorted((SPRITES / "fg" / HELD_OUT).glob("*.png"))
    bgs = sorted((SPRITES / "bg" / HELD_OUT).glob("*.jpg"))
    if not fgs or not bgs:
        sys.exit(f"needs {SPRITES}/fg/{HELD_OUT} and bg/{HELD_OUT}")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {date.today()}")
    rows = ["| scenes | kind | overlapping pairs | occluder on top |", "|---|---|---:|---:|"]
    rng = np.random.default_rng(0)
    for kind, make in (
        ("held-out sprites (wanted-dragon)", lambda: sprite_scene(rng, fgs, bgs, int(rng.integers(2, 4)))),
        ("synthetic (demo characters)", lambda: synth.scene(rng, 320, 240, int(rng.integers(2, 4)))),
    ):
        right, pairs = accuracy(make, args.scenes)
        rows.append(f"| {args.scenes} | {kind} | {pairs} | {right} ({right / max(pairs, 1):.0%}) |")
        print(rows[-1], flush=True)

    image, visible, _ = sprite_scene(np.random.default_rng(1), fgs, bgs, 3, size=(1280, 720))
    inst = Instances(np.zeros((3, 4)), [0.9, 0.8, 0.7], [0, 0, 0], np.array(visible), {0: "character"})
    inst.boxes = inst.boxes_from_masks()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        merged, layers = layered_image(image, inst)
        data = encode_psd(merged, layers)
        times.append(time.perf_counter() - t)
    print(f"layered file, 1280x720, 3 characters: {np.median(times) * 1000:.0f} ms, {len(data) / 1e6:.2f} MB")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
