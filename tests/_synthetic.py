"""A tiny YOLO-seg dataset of generated 'characters' for training and evaluation tests.

Layout matches a built animeseg dataset (``data.yaml``, ``images/{train,val}``, ``labels/{train,val}``,
``annotations/{train,val}.json`` with RLE masks, category_id = class + 1), so tests need not wait for
``animeseg data build``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from animeseg import cocojson
from animeseg.instances import Instances
from animeseg.io import write_image, write_json, write_text
from animeseg.masks import mask_to_polygon

NAMES = {0: "character"}


def character_masks(rng: np.random.Generator, size: int, count: int) -> list[np.ndarray]:
    """``count`` non-overlapping blob masks (body ellipse + head circle), each (size, size) bool."""
    masks: list[np.ndarray] = []
    taken = np.zeros((size, size), bool)
    for _ in range(count * 20):
        if len(masks) == count:
            break
        m = np.zeros((size, size), np.uint8)
        w = int(rng.integers(size // 8, size // 4))
        h = int(rng.integers(size // 4, size // 2))
        cx = int(rng.integers(w + 2, size - w - 2))
        cy = int(rng.integers(h // 2 + w // 2 + 2, size - h // 2 - 2))
        cv2.ellipse(m, (cx, cy), (w // 2 + 1, h // 2), 0, 0, 360, 1, -1)
        cv2.circle(m, (cx, cy - h // 2), max(w // 3, 2), 1, -1)
        mask = m.astype(bool)
        if (mask & taken).any():
            continue
        taken |= mask
        masks.append(mask)
    return masks


def render(rng: np.random.Generator, masks: list[np.ndarray], size: int) -> np.ndarray:
    """An RGB image: smooth noisy background, each mask filled with a flat colour and a dark outline."""
    noise = rng.integers(0, 255, (size // 8 + 1, size // 8 + 1, 3)).astype(np.uint8)
    image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR) // 2 + 60
    for mask in masks:
        colour = rng.integers(150, 255, 3)
        image[mask] = colour
        edges = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        image[edges] = (20, 20, 30)
    return image


def make_dataset(root: Path, n_train: int = 8, n_val: int = 4, size: int = 96, seed: int = 0) -> Path:
    """Write the dataset under ``root`` and return its ``data.yaml``."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        images, annotations = [], []
        for i in range(n):
            masks = character_masks(rng, size, int(rng.integers(1, 3)))
            image = render(rng, masks, size)
            name = f"{split}_{i:03d}.png"
            write_image(root / "images" / split / name, image)
            lines = []
            for mask in masks:
                poly = mask_to_polygon(mask) / size
                lines.append("0 " + " ".join(f"{v:.6f}" for v in poly.reshape(-1)))
            write_text(root / "labels" / split / f"{Path(name).stem}.txt", "\n".join(lines) + "\n")
            inst = Instances(
                np.zeros((len(masks), 4)), np.ones(len(masks)), np.zeros(len(masks)), np.stack(masks), NAMES
            )
            images.append(cocojson.image_record(i + 1, f"images/{split}/{name}", size, size))
            annotations += cocojson.instance_annotations(inst, i + 1, len(annotations) + 1, with_scores=False)
        coco = {"images": images, "annotations": annotations, "categories": cocojson.categories(NAMES)}
        write_json(root / "annotations" / f"{split}.json", coco)
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val", "names": NAMES}
    write_text(root / "data.yaml", yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"
