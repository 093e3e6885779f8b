"""Training data for Mask R-CNN: the exact COCO RLE ground truth that ``animeseg data build`` writes.

A built dataset holds ``annotations/{train,val}.json`` next to its ``data.yaml``; they are read through
:func:`animeseg.ground_truth.load_ground_truth` (the one reader of COCO ground truth), so the masks Mask R-CNN
learns from are the same the evaluation scores against, not the YOLO polygons approximating them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animeseg.errors import InputError


def annotations_file(data_yaml: str | Path, split: str) -> Path:
    """``annotations/<split>.json`` of a built dataset, or a one-line :class:`InputError` saying it is missing."""
    data_yaml = Path(data_yaml)
    path = data_yaml.parent / "annotations" / f"{split}.json"
    if not path.is_file():
        raise InputError(
            path,
            "missing: Mask R-CNN trains on the COCO RLE ground truth that `animeseg data build` writes into "
            "annotations/*.json (build the dataset with `animeseg data build`)",
        )
    return path


class CocoMasks:
    """One split of a built dataset as (image, target) pairs for torchvision's Mask R-CNN.

    Item ``i``: a (3, H, W) float32 tensor in [0, 1] and a target dict with ``boxes`` (N, 4) xyxy float32,
    ``labels`` (N,) int64 (category id: class id + 1, 0 being background) and ``masks`` (N, H, W) uint8.
    ``augment`` adds a horizontal flip (p 0.5) and a mild brightness/contrast/saturation jitter; geometric
    changes that would need the RLE re-encoded (crops, rotations) are left out.
    """

    def __init__(self, data_yaml: str | Path, split: str, augment: bool = False):
        from animeseg.ground_truth import load_ground_truth

        annotations_file(data_yaml, split)
        self.gt = load_ground_truth(data_yaml, split)
        self.ids = sorted(int(i) for i in self.gt.coco.getImgIds())
        self.augment = augment
        if not self.ids:
            raise InputError(self.gt.source, f"no images in split {split!r}")

    @property
    def names(self) -> dict[int, str]:
        """Class id (category id - 1) -> name."""
        return {cid - 1: name for cid, name in self.gt.categories.items()}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from animeseg.io import read_image

        image_id = self.ids[index]
        image = read_image(self.gt.paths[image_id])
        h, w = image.shape[:2]
        anns = [a for a in self.gt.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        masks = np.zeros((len(anns), h, w), np.uint8)
        for k, ann in enumerate(anns):
            masks[k] = self.gt.coco.annToMask(ann)
        boxes = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        # an image without characters (a hard negative) keeps empty (0, 4) boxes and (0, H, W) masks
        drawn = masks.reshape(len(anns), h * w).any(1)
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1) & drawn
        labels = np.array([a["category_id"] for a in anns], np.int64)[keep]
        boxes, masks = boxes[keep], masks[keep]
        if self.augment:
            image, boxes, masks = self._augment(image, boxes, masks)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
        target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(labels),
            "masks": torch.from_numpy(np.ascontiguousarray(masks)),
            "image_id": image_id,
        }
        return x, target

    @staticmethod
    def _augment(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, ...]:
        import torch

        # torch's generator: seeded per DataLoader worker (and by Lightning's seed_everything), numpy's is not
        def uniform(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand(()))

        w = image.shape[1]
        if uniform(0, 1) < 0.5:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
            boxes = boxes.copy()
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        img = image.astype(np.float32)
        contrast, brightness = uniform(0.8, 1.2), uniform(-20, 20)
        grey = img.mean(2, keepdims=True)
        img = grey + (img - grey) * uniform(0.8, 1.2)  # saturation
        img = (img - img.mean()) * contrast + img.mean() + brightness
        return np.clip(img, 0, 255).astype(np.uint8), boxes, masks


def collate(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Images of different sizes stay a list: torchvision's transform batches them itself."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
