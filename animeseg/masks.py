"""Mask conversions shared by dataset building, prediction and evaluation.

RLE goes through pycocotools (the COCO reference implementation), never through our own run-length code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from animeseg._lazy import cv2


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_rle(rle: dict[str, Any], height: int | None = None, width: int | None = None) -> np.ndarray:
    """COCO RLE (compressed str/bytes counts, or uncompressed list counts) -> (H, W) bool."""
    h, w = rle.get("size", (height, width))
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (parts of one instance) -> (H, W) bool.

    Parts with fewer than 3 points are ignored (pycocotools raises on them); no valid part gives an empty mask.
    """
    parts = [list(map(float, p)) for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
    if not parts:
        return np.zeros((height, width), bool)
    rles = mask_utils.frPyObjects(parts, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def mask_to_box(mask: np.ndarray) -> list[float]:
    """(H, W) bool -> ``[x1, y1, x2, y2]`` covering whole pixels; zeros for an empty mask."""
    ys = np.flatnonzero(mask.any(1))
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    xs = np.flatnonzero(mask.any(0))
    return [float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)]


def box_xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; two empty masks count as identical (1.0)."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def mask_to_contours(mask: np.ndarray, min_area: float = 1.0) -> list[np.ndarray]:
    """Outer contours of a (H, W) bool mask as float (K, 2) arrays in pixel coordinates, largest first.

    OpenCV traces the centres of boundary pixels, so a polygon through them cuts every edge pixel in half and
    rasterising it loses a thin rim. Tracing at 2x puts the outline a quarter pixel inside the pixel edges,
    which keeps every boundary pixel's centre inside the polygon: re-rasterising gives the mask back.
    """
    m = np.ascontiguousarray(mask.astype(np.uint8))
    if not m.any():
        return []
    big = cv2.resize(m, (m.shape[1] * 2, m.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float32)
        pts = (pts + 0.5) / 2.0  # centre of 2x sub-pixel k sits at (k + 0.5) / 2 in original pixels
        area = cv2.contourArea(pts)
        if abs(area) >= min_area and len(pts) >= 3:
            out.append((abs(area), pts))
    out.sort(key=lambda t: -t[0])
    return [p for _, p in out]


def mask_to_polygon(mask: np.ndarray, epsilon: float = 0.5, min_area: float = 1.0) -> np.ndarray:
    """One polygon for a (H, W) bool mask, in pixels, shape (K, 2); (0, 2) when nothing is left.

    YOLO-seg labels hold one polygon per instance, so separate parts are joined by zero-width bridges
    (Ultralytics' own ``merge_multi_segment``), as its COCO converter does. ``epsilon`` (pixels) simplifies
    the outline with Douglas-Peucker; 0 keeps every corner.
    """
    contours = mask_to_contours(mask, min_area=min_area)
    if epsilon > 0:
        contours = [cv2.approxPolyDP(c.reshape(-1, 1, 2), epsilon, True).reshape(-1, 2) for c in contours]
    contours = [c for c in contours if len(c) >= 3]
    if not contours:
        return np.zeros((0, 2), np.float32)
    if len(contours) == 1:
        return contours[0].astype(np.float32)
    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.data.converter import merge_multi_segment

    merged = merge_multi_segment([c.reshape(-1).tolist() for c in contours])
    return np.concatenate(merged, axis=0).reshape(-1, 2).astype(np.float32)


def polygon_to_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, 2) pixel polygon -> (H, W) bool, rasterised like COCO does."""
    return polygons_to_mask([np.asarray(polygon, float).reshape(-1).tolist()], height, width)


#: Half-size of the box blur :func:`occlusion_order` measures a shared boundary's neighbourhood with (pixels).
BOUNDARY_RADIUS = 3


def occlusion_order(masks: np.ndarray, tiebreak: Sequence[float] | None = None) -> list[int]:
    """Stacking order of instance masks (N, H, W) bool, bottom first: an occluding instance comes after (above)
    the instances it occludes.

    Where two masks meet, the shared boundary is the occluder's own silhouette: its mask is whole there, while
    what is left of the occluded one along it is cut by that silhouette into remainders (slivers of hair, an arm,
    the edge of a body peeking out). So each mask is box-blurred over :data:`BOUNDARY_RADIUS` pixels and
    averaged over the pixels of their shared boundary (within 2 pixels of both): the mask that covers more of
    that neighbourhood wins the boundary and is in front (a margin of 0.02 leaves even boundaries undecided).
    On composites with a known order this puts the occluder on top for 91% of overlapping pairs of held-out
    sprites and 79% of synthetic characters (docs/benchmarks.md). The pairwise decisions are ordered
    topologically; instances they leave free (not touching, undecided, or in a cycle) go by ``tiebreak`` (N,),
    lower first (default: the bottom row of the mask, so a character standing lower in the picture, nearer the
    viewer, goes higher in the stack).
    """
    n = len(masks)
    if n < 2:
        return list(range(n))
    if tiebreak is None:
        rows = masks.any(axis=2)
        tiebreak = [float(np.flatnonzero(r)[-1]) if r.any() else -1.0 for r in rows]
    boxes = [mask_to_box(m) for m in masks]
    areas = masks.reshape(n, -1).sum(axis=1)
    below: list[set[int]] = [set() for _ in range(n)]  # below[i]: instances that must be under i
    h, w = masks.shape[1:]
    for i in range(n):
        for j in range(i + 1, n):
            if areas[i] == 0 or areas[j] == 0:
                continue
            r = BOUNDARY_RADIUS
            bi, bj = boxes[i], boxes[j]
            if bi[0] > bj[2] + 2 or bj[0] > bi[2] + 2 or bi[1] > bj[3] + 2 or bj[1] > bi[3] + 2:
                continue  # apart: nothing to decide
            x1, y1 = max(int(min(bi[0], bj[0])) - r - 2, 0), max(int(min(bi[1], bj[1])) - r - 2, 0)
            x2, y2 = min(int(max(bi[2], bj[2])) + r + 2, w), min(int(max(bi[3], bj[3])) + r + 2, h)
            a = masks[i, y1:y2, x1:x2].astype(np.uint8)
            b = masks[j, y1:y2, x1:x2].astype(np.uint8)
            kernel = np.ones((5, 5), np.uint8)
            shared = cv2.dilate(a, kernel).astype(bool) & cv2.dilate(b, kernel).astype(bool) & ((a | b) > 0)
            if shared.sum() < 5:
                continue
            size = (2 * r + 1, 2 * r + 1)
            cover_a = float(cv2.blur(a.astype(np.float32), size)[shared].mean())
            cover_b = float(cv2.blur(b.astype(np.float32), size)[shared].mean())
            if cover_a - cover_b > 0.02:
                below[i].add(j)  # i holds more of the boundary's neighbourhood: in front of j
            elif cover_b - cover_a > 0.02:
                below[j].add(i)
    order: list[int] = []
    remaining = set(range(n))
    while remaining:
        free = [k for k in remaining if not (below[k] & remaining)]
        # a cycle of decisions: take the instance that breaks the fewest of them
        pool = free or [min(remaining, key=lambda k: len(below[k] & remaining))]
        pick = min(pool, key=lambda k: (float(tiebreak[k]), k))
        order.append(pick)
        remaining.remove(pick)
    return order
