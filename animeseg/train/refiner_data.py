"""Training samples of the learned refiner: crops of composites with the detector's real masks and exact alphas.

From a dataset built by ``animeseg data build`` from composite sources (its ``provenance.jsonl`` says where each
sprite went), every image gives:

* one ``detected`` sample per detection that overlaps a character (mask IoU >= 0.3): cropped around the
  detector's box, with the detector's own mask and the other detections' masks as the network will see them;
* one ``true`` sample per character: cropped around its true box (jittered), whose coarse mask training makes up
  on the fly (:mod:`animeseg.train.refiner`: coarse, shifted, missing limbs, merged neighbours, holes).

Each sample is 7 channels of :data:`~animeseg.refine.learned.SIZE` squared uint8: RGB, the detector's own mask,
the other detections' masks, the true alpha (0-255) and the other characters' true masks. No PyTorch here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animeseg.instances import Instances
from animeseg.io import read_image, read_rgba
from animeseg.refine.learned import SIZE, crop_boxes, resize_to

#: Channel layout of a stored sample.
RGB, OWN, OTHERS, ALPHA, TRUE_OTHERS = slice(0, 3), 3, 4, 5, 6
KINDS = ("detected", "true")


@dataclass
class Composite:
    """One composite: ``image`` RGB (H, W, 3) uint8 and ``alphas`` (N, H, W) float32 visible soft alphas."""

    name: str
    image: np.ndarray
    alphas: np.ndarray


def composites(dataset: str | Path) -> Iterator[Composite]:
    """The composites of a built dataset with their exact alphas (remade from ``provenance.jsonl``)."""
    from animeseg.data.painting import visible_alphas

    root = Path(dataset)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    fg_roots = {s["name"]: Path(s["options"]["foregrounds"]) for s in manifest["sources"] if s["type"] == "composite"}
    cache: dict[Path, np.ndarray] = {}
    with open(root / "provenance.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("type") != "composite" or not record.get("foregrounds"):
                continue
            files = [fg_roots[record["source"]] / fg["file"] for fg in record["foregrounds"]]
            rgba = [cache[p] if p in cache else cache.setdefault(p, read_rgba(p)) for p in files]
            if len(cache) > 64:
                cache.clear()
            image = read_image(root / record["image"])
            yield Composite(record["image"], image, visible_alphas(record, rgba))


def _crop(plane: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in box)
    return resize_to(np.ascontiguousarray(plane[y1:y2, x1:x2]), SIZE)


def _sample(
    image: np.ndarray, own: np.ndarray, others: np.ndarray, alpha: np.ndarray, true_others: np.ndarray, box: np.ndarray
) -> np.ndarray:
    out = np.empty((7, SIZE, SIZE), np.uint8)
    out[RGB] = _crop(image, box).transpose(2, 0, 1)
    for ch, plane in ((OWN, own), (OTHERS, others), (TRUE_OTHERS, true_others)):
        out[ch] = (_crop(plane.astype(np.float32), box) >= 0.5) * 255
    out[ALPHA] = np.clip(_crop(alpha, box) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, H, W) x (M, H, W) bool -> (N, M) IoU."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def image_samples(comp: Composite, found: Instances, rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    """The samples of one composite given the detector's instances ``found``: (samples, kinds)."""
    h, w = comp.image.shape[:2]
    truth = comp.alphas >= 0.5
    samples: list[np.ndarray] = []
    kinds: list[int] = []
    union_true = truth.sum(0)
    if len(found):
        iou = mask_iou(found.masks, truth)
        union_found = found.masks.sum(0)
        crops = crop_boxes(found.boxes, h, w)
        for i in range(len(found)):
            j = int(iou[i].argmax())
            if iou[i, j] < 0.3:
                continue
            others = (union_found - found.masks[i]) > 0
            true_others = (union_true - truth[j]) > 0
            samples.append(_sample(comp.image, found.masks[i], others, comp.alphas[j], true_others, crops[i]))
            kinds.append(0)
    empty = np.zeros((h, w), bool)
    for j in range(len(truth)):
        ys, xs = np.nonzero(truth[j])
        if len(ys) < 64:
            continue
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
        size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
        box = box + rng.normal(0.0, 0.04, 4) * size
        crop = crop_boxes(box[None], h, w)[0]
        true_others = (union_true - truth[j]) > 0
        samples.append(_sample(comp.image, empty, empty, comp.alphas[j], true_others, crop))
        kinds.append(1)
    return samples, kinds


def build_samples(
    dataset: str | Path,
    detect: Callable[[np.ndarray], Instances],
    out: str | Path,
    seed: int = 0,
    on_image: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write ``samples.npy`` (M, 7, SIZE, SIZE) uint8 and ``kinds.npy`` (M,) into ``out``; returns counts.

    ``detect`` is the detector whose masks the refiner learns to correct (the packaged model, raw).
    """
    from animeseg.io import atomic_path

    rng = np.random.default_rng(seed)
    samples: list[np.ndarray] = []
    kinds: list[int] = []
    images = 0
    for comp in composites(dataset):
        s, k = image_samples(comp, detect(comp.image), rng)
        samples += s
        kinds += k
        images += 1
        if on_image is not None:
            on_image(images)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "samples.npy") as tmp:
        np.save(tmp, np.stack(samples) if samples else np.zeros((0, 7, SIZE, SIZE), np.uint8))
    with atomic_path(out / "kinds.npy") as tmp:
        np.save(tmp, np.asarray(kinds, np.int8))
    return {"images": images, **{name: int(np.sum(np.asarray(kinds) == i)) for i, name in enumerate(KINDS)}}
