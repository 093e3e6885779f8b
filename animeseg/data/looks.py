"""The looks of real art for composites: close-ups, heavy overlaps, and which backdrop, effects and rendering a
composite gets (each drawn from the composite's second generator, and only when its option asks for it).

* close-up (``closeup``: share of composites): one or two characters at ``closeup_scale`` times the frame height,
  head in frame, cut by the frame at the chest, waist or thighs as portraits and busts are;
* huddle (``huddle``: share of composites with two or more characters): the others pulled onto the first, at its
  size, so they overlap heavily (hugging, back to back);
* ``backdrop`` / ``backdrops``, ``effects`` / ``effect_kinds``, ``render`` / ``renders``: records for
  :mod:`animeseg.data.backdrops`, :mod:`animeseg.data.effects` and :mod:`animeseg.data.renderings`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from animeseg.data.geometry import placement_matrix, rotated_half_size

PAGE_RENDERS = ("screentone", "mono", "lineart")  # how whole comic pages are printed


def wanted(options: dict[str, Any]) -> bool:
    """Whether a composite source asks for any of these looks (else its second generator is never made)."""
    shares = ("closeup", "huddle", "backdrop", "render", "page")
    return any(options[k] > 0 for k in shares) or options["effects"][1] > 0


def _centre(matrix: list[list[float]], box: tuple[float, float, float, float]) -> tuple[float, float]:
    """Where a foreground's box centre lands on the canvas."""
    m = np.asarray(matrix, np.float64)
    c = m @ np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.0])
    return float(c[0]), float(c[1])


def _move(cand: dict[str, Any], width: int, box: tuple, scale: float, centre: tuple[float, float]) -> None:
    cand["scale"] = scale
    cand["matrix"] = placement_matrix(width, box, cand["flip"], cand["rotation"], scale, centre).tolist()


def place(
    rng: np.random.Generator,
    options: dict[str, Any],
    cands: list[dict[str, Any]],
    shapes: list[tuple[int, tuple[float, float, float, float]]],
    size: tuple[int, int],
) -> str:
    """Re-place the drawn characters ``cands`` (their ``matrix`` and ``scale``, in place) as a close-up or a
    huddle; ``shapes``: each one's file width and mask box. Returns ``"closeup"``, ``"huddle"`` or ``""``.

    A close-up keeps one character (two in three times out of ten, side by side); the others are removed from
    ``cands`` and ``shapes``.
    """
    w, h = size
    closeup = options["closeup"] > 0 and rng.random() < options["closeup"]
    huddle = options["huddle"] > 0 and rng.random() < options["huddle"]
    if closeup and cands:
        keep = 2 if len(cands) >= 2 and rng.random() < 0.3 else 1
        del cands[keep:], shapes[keep:]
        share = float(rng.uniform(*options["closeup_scale"]))
        xs = [rng.uniform(0.3, 0.7)] if keep == 1 else sorted(rng.uniform([0.15, 0.55], [0.45, 0.85]))
        for cand, (width, box), fx in zip(cands, shapes, xs, strict=True):
            bw, bh = box[2] - box[0] + 1, box[3] - box[1] + 1
            scale = share * float(rng.uniform(0.9, 1.1)) * h / bh
            _, hh = rotated_half_size(bw, bh, cand["rotation"], scale)
            top = float(rng.uniform(-0.08, 0.12)) * h  # the head in frame, the rest cut by the bottom edge
            _move(cand, width, box, scale, (float(fx) * w, top + hh))
        return "closeup"
    if huddle and len(cands) >= 2:
        width0, box0 = shapes[0]
        cx, cy = _centre(cands[0]["matrix"], box0)
        share0 = cands[0]["scale"] * (box0[3] - box0[1] + 1) / h
        hw0, _ = rotated_half_size(box0[2] - box0[0] + 1, box0[3] - box0[1] + 1, 0.0, cands[0]["scale"])
        for cand, (width, box) in zip(cands[1:], shapes[1:], strict=True):
            bh = box[3] - box[1] + 1
            scale = share0 * float(rng.uniform(0.85, 1.15)) * h / bh
            dx = float(rng.uniform(0.3, 0.9)) * hw0 * (1 if rng.random() < 0.5 else -1)
            dy = float(rng.uniform(-0.08, 0.08)) * h
            _move(cand, width, box, scale, (cx + dx, cy + dy))
        return "huddle"
    return ""


def _choose(rng: np.random.Generator, names: list[str]) -> str:
    return str(names[int(rng.integers(len(names)))])


def draw_looks(rng: np.random.Generator, options: dict[str, Any], in_page: bool) -> dict[str, Any]:
    """Records of a composite's generated backdrop, effects and rendering, each present only when drawn:
    ``{"backdrop": {...}, "effects": [...], "render": {...}}``. A panel of a page (``in_page``) is not rendered
    on its own: the page is."""
    out: dict[str, Any] = {}
    if options["backdrop"] > 0 and rng.random() < options["backdrop"]:
        out["backdrop"] = {"kind": _choose(rng, options["backdrops"]), "seed": int(rng.integers(2**31))}
    lo, hi = options["effects"]
    if hi > 0:
        count = int(rng.integers(lo, hi + 1))
        out["effects"] = [
            {"kind": _choose(rng, options["effect_kinds"]), "seed": int(rng.integers(2**31))} for _ in range(count)
        ]
        if not out["effects"]:
            del out["effects"]
    if not in_page and options["render"] > 0 and rng.random() < options["render"]:
        out["render"] = {"kind": _choose(rng, options["renders"]), "seed": int(rng.integers(2**31))}
    return out


def draw_page_render(rng: np.random.Generator, options: dict[str, Any]) -> dict[str, Any] | None:
    """A comic page's print (screentone, monochrome or line art, where ``renders`` lists them) seven times in
    ten; else None and its panels draw their own renderings."""
    kinds = [k for k in options["renders"] if k in PAGE_RENDERS]
    if not kinds or rng.random() >= 0.7:
        return None
    return {"kind": _choose(rng, kinds), "seed": int(rng.integers(2**31))}
