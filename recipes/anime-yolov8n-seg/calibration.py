"""Make animeseg/models/calibration/: the images `animeseg export onnx --int8` calibrates the packaged model's
int8 ranges on when no --calibration is given.

    PYTHONPATH=. python recipes/anime-yolov8n-seg/calibration.py ../shared/data/renpy-sprites

Twelve 640x360 composites (JPEG quality 85) of the Ren'Py tutorial's sprites on its backgrounds (MIT licence,
see examples/README.md), 1-3 characters each: training-like art, never the held-out artist. 640x360 is what a
16:9 image becomes in the model's 640 px letterbox, so nothing is lost by storing them small.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from animeseg.io import write_image  # noqa: E402
from bench.composites import make_composites  # noqa: E402

OUT = ROOT / "animeseg" / "models" / "calibration"


def main(renpy: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jpg"):
        old.unlink()
    for k, c in enumerate(make_composites(renpy, 12, seed=2024, size=(640, 360))):
        write_image(OUT / f"renpy-{k:02d}.jpg", c.image, quality=85)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "renpy-sprites")
