"""The LabelMe JSON format, read and written here only: shapes drawn as LabelMe draws them, and predictions written
as LabelMe 5.x files (``predict --save labelme``) that LabelMe opens and ``data build`` (type ``labelme``) reads back.

Reading (:func:`shape_mask`, :func:`decode_image_data`, :func:`base_label`) serves every LabelMe version; see
:mod:`animeseg.data.sources.labelme` for how a folder of them becomes a dataset.

Writing (:func:`document`): one file per image, LabelMe 5.x fields in LabelMe's own order (``version``,
``flags``, ``shapes``, ``imagePath``, ``imageData``, ``imageHeight``, ``imageWidth``). Each instance becomes one
``polygon`` shape per separate part, the parts of one instance sharing a ``group_id`` (the instance's index, as
in the other outputs' file names; ``null`` for a one-part instance). LabelMe polygons have no holes, so a hole of
:data:`HOLE_MIN_AREA` pixels or more is cut into its part through a zero-width slit (LabelMe shows the hole
open, and its own ``shape_to_mask`` leaves it out); smaller holes are filled. Points are pixel indices (Pillow's
convention, which LabelMe's rasteriser and :func:`shape_mask` use), the outline simplified by Douglas-Peucker
with the largest tolerance of :data:`TOLERANCES` whose polygons, rasterised back by :func:`shape_mask`, keep a
mask IoU of at least :data:`MIN_IOU` with the instance's mask (the exact trace when none does). The label is
the class name; ``description`` holds the score, the refiner's record (and a tracked instance's track id) as JSON
text.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from animeseg import io as image_io
from animeseg._lazy import cv2
from animeseg.instances import Instances

REGION_SHAPES = ("polygon", "rectangle", "circle", "mask", "oriented_rectangle")
#: The LabelMe release whose file format is written (``version``) and whose loader the tests open files with.
VERSION = "5.11.4"
#: Douglas-Peucker tolerances tried, coarsest first (pixels); 0 is the exact trace.
TOLERANCES = (1.5, 1.0, 0.5, 0.0)
#: Smallest mask IoU of the written polygons, rasterised back, with the instance's mask.
MIN_IOU = 0.97
#: Holes this large (pixels) or larger are cut into their polygon; smaller ones are filled.
HOLE_MIN_AREA = 16
_INSTANCE_SUFFIX = re.compile(r"^(.+)-(\d+)$")


# ------------------------------------------------------------------------------------------------ reading
def base_label(label: str) -> str:
    """``person-2`` -> ``person`` (LabelMe 3.x instance naming); other labels unchanged."""
    m = _INSTANCE_SUFFIX.match(label)
    return m.group(1) if m else label


def instance_label(label: str) -> bool:
    """Whether ``label`` names an instance the 3.x way (``person-2``)."""
    return _INSTANCE_SUFFIX.match(label) is not None


def decode_image_data(data: str) -> np.ndarray:
    """LabelMe's embedded ``imageData`` (base64 of the image file) -> upright RGB uint8.

    Raises ValueError with the reason when it does not decode."""
    # image_io._pil_open is looked up at each call, not bound at import: it is the one opener (tests replace it)
    try:
        raw = base64.b64decode(data, validate=False)
        im = image_io._pil_open(io.BytesIO(raw))
        im.load()
        im = ImageOps.exif_transpose(im)
    except (binascii.Error, ValueError, OSError) as e:
        raise ValueError(f"imageData does not decode as an image ({e})") from None
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), np.float32)
        a = rgba[..., 3:] / 255.0
        return np.clip(rgba[..., :3] * a + 255.0 * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), np.uint8))


def shape_mask(shape: dict[str, Any], shape_type: str, height: int, width: int) -> np.ndarray:
    """One LabelMe region shape -> (H, W) bool, drawn as LabelMe draws it. Raises ValueError with the reason."""
    points = shape.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in points
    ):
        raise ValueError("points are not a list of [x, y]")
    xy = [(float(x), float(y)) for x, y in points]
    if shape_type == "mask":
        encoded = shape.get("mask")
        if not isinstance(encoded, str) or len(xy) < 1:
            raise ValueError("mask shape without a base64 'mask' image")
        try:
            patch = np.asarray(image_io._pil_open(io.BytesIO(base64.b64decode(encoded)))).astype(bool)
        except (binascii.Error, ValueError, OSError) as e:
            raise ValueError(f"mask image does not decode ({e})") from None
        if patch.ndim == 3:
            patch = patch.any(-1)
        out = np.zeros((height, width), bool)
        x1, y1 = (int(round(v)) for v in xy[0])
        ph, pw = patch.shape
        ys, ye = max(y1, 0), min(y1 + ph, height)
        xs, xe = max(x1, 0), min(x1 + pw, width)
        if ys < ye and xs < xe:
            out[ys:ye, xs:xe] = patch[ys - y1 : ye - y1, xs - x1 : xe - x1]
        return out
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape_type == "rectangle" and len(xy) == 2:
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), outline=1, fill=1)
    elif shape_type == "circle":
        if len(xy) != 2:
            raise ValueError(f"circle with {len(xy)} points (needs centre and one point on the edge)")
        (cx, cy), (px, py) = xy
        d = math.hypot(cx - px, cy - py)
        draw.ellipse(((cx - d, cy - d), (cx + d, cy + d)), outline=1, fill=1)
    else:  # polygon, oriented_rectangle, 4-point rectangles
        if len(xy) < 3:
            raise ValueError(f"{shape_type} with {len(xy)} point{'s' if len(xy) != 1 else ''} (needs at least 3)")
        draw.polygon(xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


# ------------------------------------------------------------------------------------------------ writing
def _trace(mask: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """The parts of a (H, W) bool mask: (outline (K, 2) int, its holes of :data:`HOLE_MIN_AREA` pixels or more),
    each in pixel indices along boundary pixels, largest part first."""
    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    links = hierarchy.reshape(-1, 4)  # next, previous, first child, parent
    parts = []
    for k, contour in enumerate(contours):
        if links[k][3] != -1:
            continue  # a hole: taken with its part below
        holes, child = [], links[k][2]
        while child != -1:
            hole = contours[child].reshape(-1, 2)
            # the outline runs through the part's pixels around the hole: its area is a little under the hole's
            if cv2.contourArea(hole.astype(np.float32)) >= HOLE_MIN_AREA:
                holes.append(hole)
            child = links[child][0]
        parts.append((contour.reshape(-1, 2), holes))
    parts.sort(key=lambda p: -len(p[0]))
    return parts


def _simplify(points: np.ndarray, tolerance: float) -> np.ndarray:
    if tolerance <= 0 or len(points) <= 3:
        return points
    return cv2.approxPolyDP(points.reshape(-1, 1, 2).astype(np.int32), tolerance, True).reshape(-1, 2)


def _cut_in(outline: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``outline`` (K, 2) with ``hole`` (L, 2) joined in through a zero-width slit between their closest
    vertices: one polygon that goes round the part, in to the hole, round it and back out."""
    best, at = None, (0, 0)
    for start in range(0, len(hole), 256):  # chunks keep the distance table small on long outlines
        d = ((outline[:, None, :].astype(np.int64) - hole[None, start : start + 256, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        if best is None or d[i, j] < best:
            best, at = d[i, j], (int(i), start + int(j))
    i, j = at
    ring = np.roll(hole, -j, axis=0)
    return np.concatenate([outline[: i + 1], ring, ring[:1], outline[i:]])


def instance_polygons(mask: np.ndarray) -> tuple[list[np.ndarray], float]:
    """The polygons of one instance mask (H, W) bool, one (K, 2) float array of pixel indices per part, and the
    mask IoU they give back (:func:`shape_mask`); simplified with the coarsest of :data:`TOLERANCES` that keeps
    :data:`MIN_IOU`. An empty mask, or one with no part of 3 points or more, has no polygons (IoU 0)."""
    from animeseg.masks import mask_iou

    parts = _trace(mask)
    h, w = mask.shape
    best: tuple[list[np.ndarray], float] = ([], 0.0)
    for tolerance in TOLERANCES:
        polygons = []
        for outline, holes in parts:
            poly = _simplify(outline, tolerance)
            if len(poly) < 3:
                continue  # a part of a pixel or two: no polygon
            for hole in holes:
                ring = _simplify(hole, tolerance)
                if len(ring) >= 3:
                    poly = _cut_in(poly, ring)
            polygons.append(poly.astype(np.float64))
        drawn = np.zeros((h, w), bool)
        for poly in polygons:
            drawn |= shape_mask({"points": poly.tolist()}, "polygon", h, w)
        iou = mask_iou(drawn, mask) if polygons else 0.0
        if iou >= MIN_IOU or not best[0] or iou > best[1]:
            best = (polygons, iou)
        if iou >= MIN_IOU:
            break
    return best


def describe(score: float, record: dict[str, Any] | None, track_id: int | None = None) -> str:
    """A shape's ``description``: the instance's score, its refiner's record and, when tracked, its track id,
    as JSON text."""
    from animeseg.cocojson import plain

    text: dict[str, Any] = {"score": round(float(score), 4), "refine": plain(record or {})}
    if track_id is not None:
        text["track_id"] = int(track_id)
    return json.dumps(text, separators=(", ", ": "))


def document(instances: Instances, image_path: str, image_data: bytes | None = None) -> dict[str, Any]:
    """The LabelMe 5.x document of one image's instances (labels: their class names); ``image_path`` relative to
    the JSON file; ``image_data`` the image file's bytes to embed (``imageData``), or None."""
    h, w = instances.image_size
    names = instances.class_names()
    shapes = []
    for i, mask in enumerate(instances.masks):
        polygons, _iou = instance_polygons(mask)
        record = instances.refine[i] if i < len(instances.refine) else None
        track = None if instances.track_ids is None else int(instances.track_ids[i])
        text = describe(float(instances.scores[i]), record, track)
        for poly in polygons:
            shapes.append(
                {
                    "label": names[i],
                    "points": [[float(x), float(y)] for x, y in poly],
                    "group_id": i if len(polygons) > 1 else None,
                    "description": text,
                    "shape_type": "polygon",
                    "flags": {},
                    "mask": None,
                }
            )
    return {
        "version": VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None if image_data is None else base64.b64encode(image_data).decode("ascii"),
        "imageHeight": int(h),
        "imageWidth": int(w),
    }
