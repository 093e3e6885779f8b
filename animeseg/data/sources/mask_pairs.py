"""``mask_pairs`` source: real images with a foreground mask each (the ``imgs/`` + ``masks/`` of anime-segmentation).

Images and masks are matched by their path without extension (``imgs/a/x.jpg`` <-> ``masks/a/x.png``). A mask
is greyscale (soft edges are thresholded), binary 0/255, binary 0/1, a palette image (index > 0), or an RGBA image
(its alpha). It is split into instances by connected components (8-connected); components smaller than
``min_area`` pixels (at the written size) are not instances of their own but join the nearest large one, so a
detached strand of hair stays with its character instead of being lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from animeseg._lazy import cv2
from animeseg.data.example import EmptyItem, Example, SkipItem, copyable, fit_size, resize_image, resize_mask
from animeseg.data.sources.base import Listing, Source, Task, relative
from animeseg.errors import InputError
from animeseg.io import _open, _to_8bit, list_files, read_image


def read_binary_mask(path: Path, threshold: int = 127) -> np.ndarray:
    """A mask file as (H, W) bool; see the module docstring for the formats understood."""
    im = _to_8bit(_open(Path(path)))
    if im.mode == "P" and "transparency" not in im.info:
        idx = np.asarray(im)
        return (idx > 0) & (idx != 255)  # palette masks: index 0 background, 255 "void" (VOC style)
    if im.mode in ("RGBA", "LA", "PA", "P"):
        rgba = np.asarray(im.convert("RGBA"))
        if rgba[..., 3].min() < 255:
            return rgba[..., 3] > threshold
    grey = np.asarray(im.convert("L"))
    if grey.max() <= 1:  # 0/1 label images
        return grey > 0
    return grey > threshold


def split_instances(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    """(H, W) bool -> one bool mask per connected component of at least ``min_area`` pixels, in reading order.

    Smaller components are given to the nearest large component (pixel by pixel), so the union is unchanged
    whenever at least one component is large enough.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    big = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= max(min_area, 1)]
    if not big:
        return []
    small = [k for k in range(1, n) if k not in big]
    if small:
        is_big = np.isin(labels, big)
        # for every pixel, the label of the nearest big-component pixel
        _, nearest = cv2.distanceTransformWithLabels(
            (~is_big).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        ys, xs = np.nonzero(is_big)
        owner = np.zeros(int(nearest.max()) + 1, np.int32)
        owner[nearest[ys, xs]] = labels[ys, xs]
        stray = np.isin(labels, small)
        labels = labels.copy()
        labels[stray] = owner[nearest[stray]]
    return [labels == k for k in big]


class MaskPairsSource(Source):
    type = "mask_pairs"

    def tasks(self) -> Listing:
        img_root: Path = self.options["images"]
        mask_root: Path = self.options["masks"]
        skipped: list[tuple[str, str]] = []

        def by_stem(root: Path) -> dict[str, list[Path]]:
            out: dict[str, list[Path]] = {}
            for p in list_files(root):
                out.setdefault(relative(p.with_suffix(""), root), []).append(p)
            return out

        images, masks = by_stem(img_root), by_stem(mask_root)
        keys, payloads = [], []
        for stem, paths in images.items():
            if len(paths) > 1:
                skipped += [(str(p), f"{len(paths)} images share the name '{stem}'") for p in paths]
                continue
            found = masks.get(stem)
            if not found:
                skipped.append((str(paths[0]), f"no mask named '{stem}.*' in {mask_root}"))
                continue
            if len(found) > 1:
                skipped.append((str(paths[0]), f"{len(found)} masks share the name '{stem}'"))
                continue
            keys.append(stem)
            payloads.append((str(paths[0]), str(found[0])))
        for stem, paths in masks.items():
            if stem not in images:
                skipped += [(str(p), f"no image named '{stem}.*' in {img_root}") for p in paths]
        return Listing(self.finish(keys, payloads), skipped=skipped)

    def load(self, task: Task) -> Example:
        img_path, mask_path = (Path(p) for p in task.payload)
        image = read_image(img_path)
        try:
            mask = read_binary_mask(mask_path, self.options["threshold"])
        except InputError as e:
            raise SkipItem(mask_path, e.problem) from None
        h, w = image.shape[:2]
        if mask.shape != (h, w):
            mh, mw = mask.shape
            if abs(mw / mh - w / h) > 0.01 * (w / h):
                raise SkipItem(mask_path, f"mask is {mw}x{mh} but the image is {w}x{h}")
            mask = (
                resize_mask(mask, (w, h))
                if mw > w
                else cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
            )
        size = fit_size(w, h, self.ctx.imgsz)
        resized = size != (w, h)
        image = resize_image(image, size)
        mask = resize_mask(mask, size)
        parts = split_instances(mask, self.options["min_area"])
        if not parts and not self.options["keep_empty"]:
            reason = "mask is empty" if not mask.any() else "no mask region reaches min_area"
            raise EmptyItem(mask_path, reason)
        return Example(
            image=image,
            masks=np.array(parts, bool).reshape(-1, size[1], size[0]),
            classes=np.full(len(parts), self.ctx.class_id(self.options["class"])),
            provenance={
                "type": "mask_pairs",
                "original": relative(img_path, self.options["images"]),
                "mask": relative(mask_path, self.options["masks"]),
                "original_size": [w, h],
            },
            copy_from=img_path if not resized and copyable(img_path) else None,
            files_read=2,
        )
