"""``labelme`` source: a folder of JSON files written by the LabelMe annotation tool, in any of its versions.

What the versions differ in, and how each is read:

* 3.x before ``shape_type`` (shapes hold ``label``, ``points``, ``line_color``, ``fill_color``): polygons.
* 3.x with ``shape_type`` and per-shape ``flags``; labels such as ``person-1``, ``person-2`` name instances: the
  class is the label without its ``-<number>`` suffix and shapes with the same full label are one instance.
* 4.x / 5.x: ``group_id`` (shapes of one class sharing a group id are one instance), ``description``, ``mask``
  shapes (a base64 PNG of the region's box, placed at the first of its two points), ``imageData`` either base64
  or null, ``imagePath`` relative to the JSON file (Windows back-slashes allowed).

``polygon``, ``rectangle``, ``circle``, ``oriented_rectangle`` and ``mask`` shapes become instance masks, drawn the
way LabelMe itself draws them (Pillow, outline included); ``line``, ``linestrip`` and ``point`` shapes are not
regions and are counted as dropped. Regions labelled ``ignore_label`` (``__ignore__``) follow the ``crowd``
policy like COCO crowd regions. The image comes from ``imagePath``, else the embedded ``imageData``, else an image
next to the JSON file with the same name.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from animeseg.data.example import CrowdItem, EmptyItem, Example, SkipItem, copyable, fit_size, resize_image, resize_mask
from animeseg.data.sources.base import Listing, Source, Task, relative
from animeseg.errors import InputError
from animeseg.io import IMAGE_EXTS, list_files, read_image
from animeseg.labelme import REGION_SHAPES, base_label, decode_image_data, instance_label, shape_mask


class LabelmeSource(Source):
    type = "labelme"

    def tasks(self) -> Listing:
        root: Path = self.options["folder"]
        files = list_files(root, (".json",))
        return Listing(self.finish([relative(p, root) for p in files], [str(p) for p in files]))

    def _image(self, path: Path, data: dict[str, Any]) -> tuple[np.ndarray, Path | None, str]:
        """(image, file it came from or None, how provenance names it)."""
        image_path = data.get("imagePath")
        tried = []
        if isinstance(image_path, str) and image_path:
            p = Path(PureWindowsPath(image_path).as_posix()) if "\\" in image_path else Path(image_path)
            p = p if p.is_absolute() else path.parent / p
            if p.is_file():
                try:
                    return read_image(p), p, relative(p, self.options["folder"])
                except InputError as e:
                    raise SkipItem(p, e.problem) from None
            tried.append(f"imagePath '{image_path}' not found")
        if isinstance(data.get("imageData"), str) and data["imageData"]:
            try:
                return decode_image_data(data["imageData"]), None, "(imageData)"
            except ValueError as e:
                raise SkipItem(path, str(e)) from None
        for ext in IMAGE_EXTS:
            for cand in (path.with_suffix(ext), path.with_suffix(ext.upper())):
                if cand.is_file():
                    try:
                        return read_image(cand), cand, relative(cand, self.options["folder"])
                    except InputError as e:
                        raise SkipItem(cand, e.problem) from None
        tried.append("no imageData, no image with the same name")
        raise SkipItem(path, "; ".join(tried))

    def load(self, task: Task) -> Example:
        path = Path(task.payload)
        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except json.JSONDecodeError as e:
            raise SkipItem(path, f"JSON does not parse ({e.msg} at line {e.lineno})") from None
        except UnicodeDecodeError:
            raise SkipItem(path, "not UTF-8 text") from None
        except OSError as e:
            raise SkipItem(path, f"cannot read ({e.strerror})") from None
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
            raise SkipItem(path, "not a LabelMe file (no 'shapes' list)")
        image, image_file, image_name = self._image(path, data)
        h, w = image.shape[:2]
        jh, jw = data.get("imageHeight"), data.get("imageWidth")
        if isinstance(jh, int) and isinstance(jw, int) and (jh, jw) != (h, w):
            raise SkipItem(path, f"the image is {w}x{h} but the file says {jw}x{jh}")

        dropped: Counter = Counter()
        groups: dict[tuple[Any, ...], np.ndarray] = {}
        classes: dict[tuple[Any, ...], int] = {}
        ignore = self.options["ignore_label"]
        for k, shape in enumerate(data["shapes"]):
            if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
                raise SkipItem(path, f"shape {k}: no text 'label'")
            label = shape["label"]
            shape_type = shape.get("shape_type") or "polygon"  # 3.x files have no shape_type: polygons
            if label == ignore:
                if shape_type not in REGION_SHAPES:
                    continue
                if self.options["crowd"] == "skip_image":
                    raise CrowdItem(path, f"has an '{ignore}' region")
                dropped["crowd region"] += 1
                continue
            name = self.map_label(label) or self.map_label(base_label(label))
            if name is None:
                dropped[f"label '{base_label(label)}' not mapped"] += 1
                continue
            if shape_type not in REGION_SHAPES:
                dropped[f"'{shape_type}' shape (not a region)"] += 1
                continue
            try:
                mask = shape_mask(shape, shape_type, h, w)
            except ValueError as e:
                raise SkipItem(path, f"shape {k} ('{label}'): {e}") from None
            cls = self.ctx.class_id(name)
            gid = shape.get("group_id")
            if isinstance(gid, int) and not isinstance(gid, bool):
                key: tuple[Any, ...] = (cls, "group", gid)
            elif instance_label(label):
                key = (cls, "label", label)
            else:
                key = (cls, "shape", k)
            groups[key] = groups[key] | mask if key in groups else mask
            classes[key] = cls

        size = fit_size(w, h, self.ctx.imgsz)
        masks, kept = [], []
        for key, mask in groups.items():
            m = resize_mask(mask, size)
            if np.count_nonzero(m) < max(1, self.options["min_area"]):
                dropped["instance below min_area at the written size"] += 1
                continue
            masks.append(m)
            kept.append(classes[key])
        if not masks and not self.options["keep_empty"]:
            raise EmptyItem(path, "no instance left")
        resized = size != (w, h)
        return Example(
            image=resize_image(image, size),
            masks=np.array(masks, bool).reshape(-1, size[1], size[0]),
            classes=np.array(kept, np.int64),
            provenance={
                "type": "labelme",
                "json": relative(path, self.options["folder"]),
                "original": image_name,
                "labelme_version": data.get("version"),
            },
            copy_from=image_file if image_file is not None and not resized and copyable(image_file) else None,
            dropped=dropped,
            files_read=1 + (image_file is not None),
        )
