"""Make examples/renpy-meadow.jpg: three Ren'Py tutorial sprites side by side on a background, as a game shows them.

    python examples/make_example.py ../shared/data/renpy-sprites

The sprites and background are the Ren'Py tutorial's (MIT licence, see examples/README.md). Ren'Py places a
sprite at ``left``, ``center`` and ``right`` by its bottom centre at x = 0, 0.5 and 1 of the screen, keeping it
inside the screen; we do the same on a 1280x720 screen, then save a 960x540 JPEG.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

SPRITES = ("eileen happy", "sylvie blue smile", "lucy mad")


def make(renpy: Path, out: Path) -> None:
    screen = Image.open(renpy / "bg" / "bg meadow.jpg").convert("RGBA")
    w, h = screen.size
    for anchor, name in zip((0.0, 0.5, 1.0), SPRITES, strict=True):
        sprite = Image.open(renpy / "fg" / f"{name}.png").convert("RGBA")
        x = round(anchor * w - anchor * sprite.width)
        screen.alpha_composite(sprite, (x, h - sprite.height))
    screen.convert("RGB").resize((960, 540), Image.LANCZOS).save(out, quality=90)


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/renpy-sprites")
    make(root, Path(__file__).resolve().parent / "renpy-meadow.jpg")
