"""``coco`` source: a COCO instance-segmentation file (COCO-2017 ``person``, or annotations of your own).

The annotation file is streamed once (:mod:`animeseg.data.jsonstream`) into a compact index: a few integers and
the byte offset of each annotation. Workers then read only the annotations of the image they make. Memory stays
a few bytes per annotation however large the file is.

* Segmentations: polygons (several parts are one instance; parts with fewer than 3 points, such as COCO's
  4-number polygons, are left out), RLE with compressed (string) or uncompressed (list) counts.
* Categories are mapped by *name* through the source's ``classes``; unmapped categories are dropped and counted.
* ``iscrowd: 1`` regions of a mapped category follow ``crowd``: ``skip_image`` (the image is left out: its people
  are not all labelled, so it would teach "background" on people) or ``drop`` (the region is dropped, counted).
* An annotation pointing at an image id that ``images`` does not list is skipped with a reason; so is an image
  whose file is missing, unreadable, or whose size disagrees with the file.
"""

from __future__ import annotations

from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from animeseg.data.example import EmptyItem, Example, SkipItem, copyable, fit_size, resize_image, resize_mask
from animeseg.data.jsonstream import iter_elements, read_element
from animeseg.data.sources.base import Listing, Source, Task
from animeseg.data.write import rle_area_box
from animeseg.io import read_image
from animeseg.masks import decode_rle, encode_rle

#: Skipped annotations listed one by one in the manifest (all are counted).
MAX_LISTED = 1000


def _ascii(text: str) -> bool:
    return all(ord(c) < 128 for c in text)


class CocoSource(Source):
    type = "coco"

    def tasks(self) -> Listing:
        ann_path: Path = self.options["annotations"]
        skipped: list[tuple[str, str]] = []
        stats: Counter = Counter()
        images: dict[int, tuple[str, int, int]] = {}
        categories: dict[int, str] = {}
        # annotation index: id, image id, category id, crowd flag, byte offset, byte length
        a_id, a_img, a_cat, a_crowd, a_off, a_len = (array("q") for _ in range(6))
        with open(ann_path, "rb") as f:
            for key, _i, v, off, n in iter_elements(ann_path):
                if key == "annotations":
                    try:
                        row = (
                            int(v.get("id", -1)),
                            int(v["image_id"]),
                            int(v["category_id"]),
                            int(bool(v.get("iscrowd"))),
                        )
                    except (AttributeError, KeyError, TypeError, ValueError):
                        stats["annotations without image_id or category_id"] += 1
                        continue
                    for column, x in zip((a_id, a_img, a_cat, a_crowd, a_off, a_len), (*row, off, n), strict=True):
                        column.append(x)
                elif key == "images":
                    if not _ascii(str(v.get("file_name", ""))):
                        v = read_element(f, off, n)  # exact UTF-8 file name
                    try:
                        images[int(v["id"])] = (str(v["file_name"]), int(v["height"]), int(v["width"]))
                    except (KeyError, TypeError, ValueError):
                        stats["image records without id, file_name, height or width"] += 1
                elif key == "categories":
                    v = read_element(f, off, n)
                    if isinstance(v, dict) and "id" in v and "name" in v:
                        categories[int(v["id"])] = str(v["name"])
        stats["annotations"] = len(a_off)
        stats["images listed"] = len(images)
        ids, img, cat, crowd = (np.frombuffer(a, np.int64) for a in (a_id, a_img, a_cat, a_crowd))
        offs, lens = np.frombuffer(a_off, np.int64), np.frombuffer(a_len, np.int64)

        # categories -> class ids (-1: not mapped)
        cat_ids = np.unique(cat)
        class_of = {}
        for c in cat_ids.tolist():
            name = categories.get(c)
            mapped = self.map_label(name) if name is not None else None
            class_of[c] = self.ctx.class_id(mapped) if mapped else -1
        cls = np.array([class_of[c] for c in cat.tolist()], np.int64) if len(cat) else np.zeros(0, np.int64)
        dropped: Counter = Counter()
        for c in cat_ids.tolist():
            if class_of[c] < 0:
                label = categories.get(c, f"category id {c} (not in 'categories')")
                dropped[f"label '{label}' not mapped"] += int(np.count_nonzero(cat == c))
        mapped = cls >= 0

        known = np.isin(img, np.fromiter(images.keys(), np.int64, len(images)))
        orphans = np.flatnonzero(mapped & ~known)
        stats["annotations pointing at a missing image"] += len(orphans)
        for k in orphans[:MAX_LISTED].tolist():
            skipped.append((str(ann_path), f"annotation {ids[k]}: image_id {img[k]} is not in 'images'"))

        crowd_mask = mapped & known & (crowd == 1)
        crowd_images = set(np.unique(img[crowd_mask]).tolist())
        crowd_regions = 0
        if self.options["crowd"] == "drop":
            crowd_regions = int(np.count_nonzero(crowd_mask))
            dropped["crowd region"] += crowd_regions
            crowd_images = set()

        kept = np.flatnonzero(mapped & known & (crowd == 0))
        kept = kept[np.lexsort((offs[kept], img[kept]))]  # by image, then file order
        per_image: dict[int, np.ndarray] = {}
        if len(kept):
            cuts = np.flatnonzero(np.diff(img[kept])) + 1
            for group in np.split(kept, cuts):
                per_image[int(img[group[0]])] = group
        empty = 0
        if self.options["keep_empty"]:
            wanted = set(images) - crowd_images
        else:
            wanted = set(per_image) - crowd_images
            empty = len(set(images) - set(per_image) - crowd_images)
        keys, payloads = [], []
        no_anns = np.zeros(0, np.int64)
        for iid in sorted(wanted):
            name, h, w = images[iid]
            group = per_image.get(iid, no_anns)
            keys.append(f"{name}#{iid}")
            payloads.append((name, h, w, iid, offs[group].copy(), lens[group].copy(), cls[group].copy()))
        return Listing(
            self.finish(keys, payloads),
            skipped=skipped,
            stats=stats,
            dropped=dropped,
            crowd_images=len(crowd_images),
            crowd_regions=crowd_regions,
            empty=empty,
            files_read=1,
        )

    def load(self, task: Task) -> Example:
        name, h, w, iid, offs, lens, classes = task.payload
        path = Path(self.options["images"]) / name
        image = read_image(path)
        ih, iw = image.shape[:2]
        if (ih, iw) != (h, w):
            raise SkipItem(path, f"image is {iw}x{ih} but the annotations say {w}x{h}")
        size = fit_size(w, h, self.ctx.imgsz)
        rles: list[dict[str, Any]] = []
        polygons: list[np.ndarray | None] = []
        kept_classes: list[int] = []
        ann_ids: list[Any] = []
        dropped: Counter = Counter()
        with open(self.options["annotations"], "rb") as f:
            for off, n, c in zip(offs.tolist(), lens.tolist(), classes.tolist(), strict=True):
                ann = read_element(f, off, n)
                aid = ann.get("id")
                rle, polygon = self._instance(ann.get("segmentation"), (w, h), size, path, aid, dropped)
                if rle_area_box(rle)[0] < max(1, self.options["min_area"]):
                    dropped["instance below min_area at the written size"] += 1
                    continue
                rles.append(rle)
                polygons.append(polygon)
                kept_classes.append(c)
                ann_ids.append(aid)
        if not rles and not self.options["keep_empty"]:
            raise EmptyItem(path, "no instance left")
        resized = size != (w, h)
        return Example(
            image=resize_image(image, size),
            masks=None,
            rles=rles,
            polygons=polygons,
            classes=np.array(kept_classes, np.int64),
            provenance={"type": "coco", "original": name, "image_id": iid, "annotation_ids": ann_ids},
            copy_from=path if not resized and copyable(path) else None,
            dropped=dropped,
        )

    @staticmethod
    def _instance(
        seg: Any, original: tuple[int, int], size: tuple[int, int], path: Path, aid: Any, dropped: Counter
    ) -> tuple[dict[str, Any], np.ndarray | None]:
        """One annotation's segmentation -> (COCO RLE at the written ``size``, YOLO polygon in [0, 1] or None).

        Polygons are scaled and rasterised straight to RLE by pycocotools, and kept as the label's outline (parts
        joined as Ultralytics' COCO converter joins them); RLE segmentations are decoded and resized, and their
        outline is traced later.
        """
        w, h = original
        if isinstance(seg, list):
            parts = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
            if len(parts) < len(seg):
                dropped["polygon parts with fewer than 3 points"] += len(seg) - len(parts)
            if not parts:
                raise SkipItem(path, f"annotation {aid}: polygon with fewer than 3 points")
            try:
                scaled = [np.asarray(p, np.float64).reshape(-1, 2) * [size[0] / w, size[1] / h] for p in parts]
            except (TypeError, ValueError):
                raise SkipItem(path, f"annotation {aid}: polygon with non-numeric coordinates") from None
            flat = [p.reshape(-1).tolist() for p in scaled]
            rle = mask_utils.merge(mask_utils.frPyObjects(flat, size[1], size[0]))
            rle = {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
            joined = scaled[0] if len(scaled) == 1 else _join_parts(flat)
            return rle, joined / [size[0], size[1]]
        if isinstance(seg, dict) and "counts" in seg:
            rle_size = seg.get("size")
            if list(rle_size or []) != [h, w]:
                raise SkipItem(path, f"annotation {aid}: RLE size {rle_size} is not the image's [{h}, {w}]")
            try:
                mask = decode_rle(seg)
            except Exception as e:
                raise SkipItem(path, f"annotation {aid}: RLE does not decode ({e})") from None
            return encode_rle(resize_mask(mask, size)), None
        raise SkipItem(path, f"annotation {aid}: no polygon or RLE segmentation")


def _join_parts(parts: list[list[float]]) -> np.ndarray:
    """Several polygon parts of one instance as one (K, 2) outline, bridged at their closest points."""
    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.data.converter import merge_multi_segment

    return np.concatenate(merge_multi_segment(parts), axis=0).reshape(-1, 2)
