"""Composite geometry: where a pasted foreground lands, how big its rotated box is, and crops of a source image
with a given aspect (backgrounds, distractor patches)."""

from __future__ import annotations

import math

import numpy as np


def placement_matrix(
    width: int,
    box: tuple[float, float, float, float],
    flip: bool,
    angle: float,
    scale: float,
    centre: tuple[float, float],
) -> np.ndarray:
    """2x3 affine from foreground pixel coordinates to the canvas.

    The foreground (``width`` wide) is mirrored when ``flip``, its mask box centre moved to the origin, scaled by
    ``scale``, rotated by ``angle`` degrees (counter-clockwise on screen) and moved to ``centre``.
    """
    x0, y0, x1, y1 = box
    f = np.eye(3)
    bcx = (x0 + x1) / 2
    if flip:
        f = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        bcx = width - 1.0 - bcx
    bcy = (y0 + y1) / 2
    t = math.radians(angle)
    c, s = math.cos(t) * scale, math.sin(t) * scale
    # rotation on screen (y down) counter-clockwise: x' = c x + s y, y' = -s x + c y
    rs = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    to_origin = np.array([[1.0, 0.0, -bcx], [0.0, 1.0, -bcy], [0.0, 0.0, 1.0]])
    to_centre = np.array([[1.0, 0.0, centre[0]], [0.0, 1.0, centre[1]], [0.0, 0.0, 1.0]])
    return (to_centre @ rs @ to_origin @ f)[:2]


def rotated_half_size(box_w: float, box_h: float, angle: float, scale: float) -> tuple[float, float]:
    """Half width and half height of the box (``box_w`` x ``box_h``) after scaling and rotating."""
    t = math.radians(angle)
    c, s = abs(math.cos(t)), abs(math.sin(t))
    a, b = box_w * scale / 2, box_h * scale / 2
    return c * a + s * b, s * a + c * b


def cover_crop(bg_w: int, bg_h: int, width: int, height: int, zoom: float, fx: float, fy: float) -> list[int]:
    """An integer crop box ``[x0, y0, x1, y1]`` of a background with the canvas' aspect ratio, ``1 / zoom`` of the
    largest such box, at relative position (``fx``, ``fy``)."""
    s = max(width / bg_w, height / bg_h) * zoom
    cw = min(bg_w, max(1, round(width / s)))
    ch = min(bg_h, max(1, round(height / s)))
    x0 = round(fx * (bg_w - cw))
    y0 = round(fy * (bg_h - ch))
    return [x0, y0, x0 + cw, y0 + ch]
