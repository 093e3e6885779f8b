"""COCO-style JSON records for instances, shared by dataset building, prediction and evaluation.

Convention everywhere in animeseg: ``category_id = class_id + 1`` (COCO ids start at 1; YOLO class ids at 0),
and every annotation also carries ``category_name`` so files are readable without the categories table.
Masks are COCO compressed RLE with string counts, which pycocotools loads directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from animeseg.instances import Instances
from animeseg.masks import box_xyxy_to_xywh, encode_rle, mask_to_box


def category_id(class_id: int) -> int:
    """COCO category id of a YOLO class id."""
    return int(class_id) + 1


def categories(names: dict[int, str] | list[str]) -> list[dict[str, Any]]:
    """The ``categories`` table for class names (a dict id -> name, or a list in class order)."""
    items = names.items() if isinstance(names, dict) else enumerate(names)
    return [{"id": category_id(i), "name": str(n), "supercategory": "character"} for i, n in sorted(items)]


def image_record(image_id: int, file_name: str, height: int, width: int, **extra: Any) -> dict[str, Any]:
    """A COCO ``images`` entry; ``extra`` keys (``status``, ``error``...) are appended."""
    return {"id": int(image_id), "file_name": file_name, "width": int(width), "height": int(height), **extra}


def instance_annotations(
    instances: Instances, image_id: int, first_id: int, with_scores: bool = True
) -> list[dict[str, Any]]:
    """COCO annotations for every instance of one image, ids ``first_id, first_id + 1, ...``.

    ``bbox`` ([x, y, w, h]) and ``area`` come from the mask, so they always agree with the segmentation.
    With ``with_scores`` the records are detection results (``score``, ``refined``, ``refine``); without, they
    are ground truth (``iscrowd: 0``).
    """
    out = []
    names = instances.class_names()
    for i in range(len(instances)):
        mask = instances.masks[i]
        ann: dict[str, Any] = {
            "id": first_id + i,
            "image_id": int(image_id),
            "category_id": category_id(int(instances.classes[i])),
            "category_name": names[i],
            "bbox": box_xyxy_to_xywh(mask_to_box(mask)),
            "area": int(np.count_nonzero(mask)),
            "segmentation": encode_rle(mask),
        }
        if with_scores:
            record = instances.refine[i]
            ann["score"] = round(float(instances.scores[i]), 5)
            ann["refined"] = bool(record.get("refined", False))
            ann["refine"] = record
        else:
            ann["iscrowd"] = 0
        out.append(ann)
    return out


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into JSON-ready Python values (refiners may record them)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return round(float(value), 5)
    if isinstance(value, float):
        return round(value, 5)
    return value
