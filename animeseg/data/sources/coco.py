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

from animeseg.data.example import Example, SkipItem, copyable, fit_size, resize_image, resize_mask
from animeseg.data.jsonstream import iter_elements, read_element
from animeseg.data.sources import Listing, Source, Task
from animeseg.data.sources.mask_pairs import EmptyItem
from animeseg.io import read_image
from animeseg.masks import decode_rle, polygons_to_mask

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
        empty = np.zeros(0, np.int64)
        for iid in sorted(wanted):
            name, h, w = images[iid]
            group = per_image.get(iid, empty)
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
        sx, sy = size[0] / w, size[1] / h
        masks: list[np.ndarray] = []
        kept_classes: list[int] = []
        ann_ids: list[Any] = []
        dropped: Counter = Counter()
        with open(self.options["annotations"], "rb") as f:
            for off, n, c in zip(offs.tolist(), lens.tolist(), classes.tolist(), strict=True):
                ann = read_element(f, off, n)
                aid = ann.get("id")
                mask = self._mask(ann.get("segmentation"), h, w, size, sx, sy, path, aid, dropped)
                if np.count_nonzero(mask) < max(1, self.options["min_area"]):
                    dropped["instance below min_area at the written size"] += 1
                    continue
                masks.append(mask)
                kept_classes.append(c)
                ann_ids.append(aid)
        if not masks and not self.options["keep_empty"]:
            raise EmptyItem(path, "no instance left")
        resized = size != (w, h)
        return Example(
            image=resize_image(image, size),
            masks=np.array(masks, bool).reshape(-1, size[1], size[0]),
            classes=np.array(kept_classes, np.int64),
            provenance={"type": "coco", "image": name, "image_id": iid, "annotation_ids": ann_ids},
            copy_from=path if not resized and copyable(path) else None,
            dropped=dropped,
        )

    @staticmethod
    def _mask(seg: Any, h: int, w: int, size: tuple[int, int], sx: float, sy: float, path: Path, aid: Any, dropped):
        """One annotation's segmentation -> (H, W) bool mask at the written ``size``."""
        if isinstance(seg, list):
            parts = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
            if len(parts) < len(seg):
                dropped["polygon parts with fewer than 3 points"] += len(seg) - len(parts)
            if not parts:
                raise SkipItem(path, f"annotation {aid}: polygon with fewer than 3 points")
            try:
                scaled = [(np.asarray(p, np.float64).reshape(-1, 2) * [sx, sy]).reshape(-1).tolist() for p in parts]
            except (TypeError, ValueError):
                raise SkipItem(path, f"annotation {aid}: polygon with non-numeric coordinates") from None
            return polygons_to_mask(scaled, size[1], size[0])
        if isinstance(seg, dict) and "counts" in seg:
            rle_size = seg.get("size")
            if list(rle_size or []) != [h, w]:
                raise SkipItem(path, f"annotation {aid}: RLE size {rle_size} is not the image's [{h}, {w}]")
            try:
                mask = decode_rle(seg)
            except Exception as e:
                raise SkipItem(path, f"annotation {aid}: RLE does not decode ({e})") from None
            return resize_mask(mask, size)
        raise SkipItem(path, f"annotation {aid}: no polygon or RLE segmentation")
