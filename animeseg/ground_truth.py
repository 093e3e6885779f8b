"""Ground truth for ``animeseg eval``: COCO annotations with masks, where their images are, and how the model's
classes map onto their categories."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pycocotools.coco import COCO

from animeseg.errors import AnimesegError, ConfigError, InputError
from animeseg.instances import Instances


@dataclass
class GroundTruth:
    """COCO ground truth and where its images are.

    Attributes:
        coco: the pycocotools index of the annotation file.
        paths: image id -> image file.
        source: the annotation file.
    """

    coco: COCO
    paths: dict[int, Path]
    source: Path

    @property
    def categories(self) -> dict[int, str]:
        """COCO category id -> name."""
        return {int(c["id"]): str(c["name"]) for c in self.coco.dataset.get("categories", [])}


def quiet_coco(path: Path | None = None, dataset: dict[str, Any] | None = None) -> COCO:
    """A pycocotools COCO index without its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        if dataset is None:
            try:
                dataset = json.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as e:
                raise InputError(path, f"cannot read ({e.strerror})") from None
            except ValueError as e:
                raise InputError(path, f"not valid JSON ({e})") from None
        if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
            raise InputError(path or "ground truth", "not a COCO instances file (no 'images' list)")
        dataset.setdefault("annotations", [])
        dataset.setdefault("categories", [])
        coco.dataset = dataset
        coco.createIndex()
    return coco


def _find_image(file_name: str, roots: Sequence[Path]) -> Path | None:
    rel = Path(file_name)
    for root in roots:
        for candidate in (root / rel, root / rel.name):
            if candidate.is_file():
                return candidate
    return None


def load_ground_truth(data: str | Path, split: str = "val", images: str | Path | None = None) -> GroundTruth:
    """Ground truth from a built dataset (``data.yaml`` or its folder: ``annotations/<split>.json``) or from any
    COCO instances file (then ``images`` is the folder its ``file_name`` entries are relative to).

    Annotations must have masks (polygons or RLE); a detection-only file is refused.
    """
    data = Path(data).expanduser().resolve()
    roots: list[Path] = []
    if data.is_dir():
        data = data / "data.yaml"
    if data.suffix.lower() in (".yaml", ".yml"):
        if not data.is_file():
            raise InputError(data, "no such dataset file")
        try:
            doc = yaml.safe_load(data.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(data, "", f"not valid YAML ({str(e).splitlines()[0]})") from None
        root = Path(doc.get("path") or data.parent)
        root = root if root.is_absolute() else (data.parent / root).resolve()
        ann_file = data.parent / "annotations" / f"{split}.json"
        if not ann_file.is_file():
            ann_file = root / "annotations" / f"{split}.json"
        if not ann_file.is_file():
            raise InputError(ann_file, f"no COCO annotations for split {split!r} (is this a built animeseg dataset?)")
        roots += [root, root / "images" / split]
        split_dir = doc.get(split)
        if isinstance(split_dir, str):
            roots.append(root / split_dir)
    else:
        ann_file = data
        if not ann_file.is_file():
            raise InputError(ann_file, "no such annotation file")
        roots.append(ann_file.parent)
    if images is not None:
        images = Path(images).expanduser().resolve()
        if not images.is_dir():
            raise InputError(images, "no such images folder")
        roots.insert(0, images)
    coco = quiet_coco(ann_file)
    anns = coco.dataset["annotations"]
    if anns and not all(a.get("segmentation") for a in anns):
        missing = sum(1 for a in anns if not a.get("segmentation"))
        raise InputError(ann_file, f"{missing} of {len(anns)} annotations have no mask (segmentation)")
    if not coco.dataset["categories"]:
        raise InputError(ann_file, "no categories")
    paths: dict[int, Path] = {}
    for img in coco.dataset["images"]:
        found = _find_image(str(img["file_name"]), roots)
        paths[int(img["id"])] = found if found is not None else roots[0] / str(img["file_name"])
    return GroundTruth(coco, paths, ann_file)


def class_map(
    model_names: dict[int, str], categories: dict[int, str], pairs: Iterable[str] | dict | None = None
) -> dict[int, int]:
    """Model class id -> ground-truth category id.

    ``pairs`` are ``"MODEL=GT"`` strings (or a dict), each side a name or an id (model class id; COCO category
    id), e.g. ``person=character`` or ``0=1``. Without pairs, classes map by equal names (case-insensitive).
    """
    by_model = {n.lower(): i for i, n in model_names.items()}
    by_gt = {n.lower(): i for i, n in categories.items()}

    def lookup(token: Any, names: dict[str, int], ids: Iterable[int], what: str) -> int:
        text = str(token).strip()
        if text.lower() in names:
            return names[text.lower()]
        if text.lstrip("-").isdigit() and int(text) in set(ids):
            return int(text)
        raise AnimesegError(f"--classes {text!r}: no {what} of that name or id (have: {', '.join(names)})")

    if pairs:
        if not isinstance(pairs, dict):
            pairs = [p.strip() for item in pairs for p in str(item).split(",") if p.strip()]  # a=b,c=d works too
        items = pairs.items() if isinstance(pairs, dict) else (p.split("=", 1) if "=" in p else (p, p) for p in pairs)
        out: dict[int, int] = {}
        for model_side, gt_side in items:
            m = lookup(model_side, by_model, model_names, "model class")
            out[m] = lookup(gt_side, by_gt, categories, "ground-truth category")
        return out
    out = {i: by_gt[n.lower()] for i, n in model_names.items() if n.lower() in by_gt}
    if not out:
        model_list = ", ".join(list(model_names.values())[:8]) + (", ..." if len(model_names) > 8 else "")
        raise AnimesegError(
            f"the model's classes ({model_list}) and the ground truth's ({', '.join(categories.values())}) share no "
            f"name; map them with --classes MODEL=GT, e.g. --classes {model_names.get(0, '0')}="
            f"{next(iter(categories.values()))}"
        )
    return out


def to_ground_truth_classes(instances: Instances, mapping: dict[int, int], categories: dict[int, str]) -> Instances:
    """Keep mapped instances and relabel them so that cocojson's ``category_id`` is the ground truth's id."""
    keep = np.array([int(c) in mapping for c in instances.classes], bool)
    kept = instances[keep]
    kept.classes = np.array([mapping[int(c)] - 1 for c in kept.classes], np.int64)
    kept.names = {cid - 1: name for cid, name in categories.items()}
    return kept


def ground_truth_foreground(gt: COCO, image_id: int, category_ids: Iterable[int]) -> np.ndarray:
    """(H, W) bool union of the image's ground-truth masks of ``category_ids`` (crowd regions included)."""
    info = gt.imgs[image_id]
    fg = np.zeros((int(info["height"]), int(info["width"])), bool)
    for ann in gt.loadAnns(gt.getAnnIds(imgIds=[image_id], catIds=list(category_ids), iscrowd=None)):
        fg |= gt.annToMask(ann).astype(bool)
    return fg
