"""One example -> its files: the image, its YOLO-seg label text and its COCO RLE records.

This runs inside worker processes; what it returns (:class:`Written`) is small (text and RLE strings), so the main
process only appends and never handles pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from animeseg.data.example import Example
from animeseg.io import write_bytes, write_image
from animeseg.masks import box_xyxy_to_xywh, decode_rle, encode_rle, mask_to_box, mask_to_polygon
from animeseg.yolo_labels import format_line, is_writable

#: Written images: originals that need no change keep their bytes; everything else becomes a JPEG of this quality.
JPEG_QUALITY = 95
COPY_EXTS = (".jpg", ".jpeg", ".png")
#: Douglas-Peucker tolerance for traced outlines, in pixels of the written image.
POLYGON_EPSILON = 0.5


@dataclass
class Written:
    """What was written for one source item (or why nothing was).

    ``annotations`` hold ``class_id``, ``segmentation`` (COCO RLE), ``bbox`` (xywh) and ``area`` per instance, in
    the order of the label file's lines.
    """

    seq: int
    source: str
    name: str
    split: str
    file: str | None = None  # "images/train/<name>.jpg", relative to the dataset folder
    width: int = 0
    height: int = 0
    label_text: str = ""
    annotations: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    files_read: int = 0
    skip: tuple[str, str] | None = None  # (file, reason)
    skip_kind: str = ""  # "bad" (warned, listed), "empty" or "crowd" (counted only)
    bad_files: list[tuple[str, str]] = field(default_factory=list)
    copies: int = 1


def normalized_polygon(mask: np.ndarray, box: list[float] | None = None) -> np.ndarray:
    """The YOLO polygon of a (H, W) bool mask, normalised to [0, 1] and clipped; (0, 2) when nothing is left.

    The outline is traced on the mask's box plus a 1-pixel margin (``box``: its ``mask_to_box``), which gives the
    same outline as the whole image at a fraction of the cost for the usual small instance.
    """
    h, w = mask.shape
    x0, y0, x1, y1 = (int(v) for v in (box if box is not None else mask_to_box(mask)))
    x0, y0, x1, y1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, w), min(y1 + 1, h)
    poly = mask_to_polygon(mask[y0:y1, x0:x1], epsilon=POLYGON_EPSILON).astype(np.float64)
    if len(poly) == 0:
        return poly
    poly[:, 0] = (poly[:, 0] + x0) / w
    poly[:, 1] = (poly[:, 1] + y0) / h
    return np.clip(poly, 0.0, 1.0)


def rle_area_box(rle: dict[str, Any]) -> tuple[int, list[float]]:
    """Pixel count and ``[x, y, w, h]`` box (whole pixels, as ``mask_to_box`` gives) of a COCO RLE."""
    counts = rle["counts"]
    coded = {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return int(mask_utils.area(coded)), [float(v) for v in mask_utils.toBbox(coded)]


def write_example(example: Example, root: Path, seq: int, source: str, name: str, split: str) -> Written:
    """Write ``example``'s image under ``root/images/<split>/`` and return its label text and COCO records.

    Instances whose polygon collapses to fewer than 3 distinct points (a few pixels) are left out of both the
    label file and the COCO records, so the two always describe the same instances.
    """
    h, w = example.image.shape[:2]
    copy = example.copy_from is not None and example.copy_from.suffix.lower() in COPY_EXTS
    ext = example.copy_from.suffix.lower() if copy else ".jpg"
    rel = f"images/{split}/{name}{ext}"
    if copy:
        write_bytes(root / rel, example.copy_from.read_bytes())
    else:
        write_image(root / rel, example.image, quality=JPEG_QUALITY)

    dropped = dict(example.dropped)
    lines: list[str] = []
    annotations: list[dict[str, Any]] = []
    for i, cls in enumerate(example.classes.tolist()):
        given = example.polygons[i] if example.polygons is not None else None
        if example.rles is not None:
            rle = example.rles[i]
            area, bbox = rle_area_box(rle)
            mask = decode_rle(rle) if given is None and area else None
        else:
            mask = example.masks[i]
            area = int(np.count_nonzero(mask))
            rle = encode_rle(mask) if area else None
            bbox = box_xyxy_to_xywh(mask_to_box(mask)) if area else None
        if not area:
            poly = np.zeros((0, 2))
        elif given is not None:
            poly = np.clip(np.asarray(given, np.float64).reshape(-1, 2), 0.0, 1.0)
        else:
            x, y, bw, bh = bbox
            poly = normalized_polygon(mask, [x, y, x + bw, y + bh])
        if not is_writable(poly):
            dropped["too small for a polygon"] = dropped.get("too small for a polygon", 0) + 1
            continue
        lines.append(format_line(cls, poly))
        annotations.append({"class_id": cls, "segmentation": rle, "bbox": bbox, "area": area})
    return Written(
        seq=seq,
        source=source,
        name=name,
        split=split,
        file=rel,
        width=w,
        height=h,
        label_text="".join(line + "\n" for line in lines),
        annotations=annotations,
        provenance=example.provenance,
        dropped=dropped,
        files_read=example.files_read,
        bad_files=list(example.bad_files),
    )
