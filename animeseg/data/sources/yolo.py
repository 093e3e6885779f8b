"""``yolo`` source: an existing Ultralytics YOLO-seg dataset, included as it is.

The folder is either a dataset with a ``data.yaml`` (``path``, ``train``, ``val`` as folders or ``.txt`` image
lists, ``names``), or a plain ``images/`` + ``labels/`` tree (``images/train``, ``images/val`` when split). Its own
train/val split is kept (``test`` is not used); a dataset without a validation split is split like any other
source. Labels are found and read by
:mod:`animeseg.yolo_labels` (the way Ultralytics finds them; a file with an invalid line is skipped, listed).
Polygons are kept as written (clipped to [0, 1]); class ids are mapped through the dataset's ``names`` and the source's
``classes``. An image without a label file is a negative (``keep_empty``, default true).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from animeseg.data.example import EmptyItem, Example, SkipItem, copyable, fit_size, resize_image
from animeseg.data.sources.base import TRAIN, VAL, Listing, Source, Task, relative
from animeseg.errors import ConfigError, InputError
from animeseg.io import IMAGE_EXTS, list_files, read_image
from animeseg.masks import polygon_to_mask
from animeseg.yolo_labels import LabelFile, label_path, read_labels

SPLIT_NAMES = {"train": TRAIN, "val": VAL, "valid": VAL, "validation": VAL}


def _yaml_file(folder: Path) -> Path | None:
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_layout(folder: Path) -> tuple[list[tuple[str | None, list[Path]]], dict[int, str]]:
    """The splits of a YOLO dataset folder: ``([(split name or None, image files)], names)``.

    Split names are as the dataset has them (``train``, ``val``, ``test``...); None when it has no split.
    Raises :class:`InputError` when the folder is not laid out as a YOLO dataset.
    """
    folder = Path(folder)
    yml = _yaml_file(folder)
    if yml is not None:
        try:
            spec = yaml.safe_load(yml.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise InputError(yml, f"cannot read ({str(e).splitlines()[0]})") from None
        if not isinstance(spec, dict):
            raise InputError(yml, "not a mapping")
        base = Path(str(spec.get("path") or yml.parent)).expanduser()
        base = base if base.is_absolute() else yml.parent / base
        if not base.is_dir():  # a dataset moved since its data.yaml was written
            base = yml.parent
        names = spec.get("names") or {}
        try:
            names = dict(enumerate(names)) if isinstance(names, list) else {int(k): str(v) for k, v in names.items()}
        except (AttributeError, ValueError):
            raise InputError(yml, "'names' is neither a list nor a mapping of class ids to names") from None
        groups = []
        for key in ("train", "val", "valid", "test"):
            entries = spec.get(key)
            if not entries:
                continue
            files: list[Path] = []
            for entry in entries if isinstance(entries, list) else [entries]:
                p = Path(str(entry)) if Path(str(entry)).is_absolute() else base / str(entry)
                if p.is_dir():
                    files += list_files(p)
                elif p.is_file() and p.suffix == ".txt":
                    for line in p.read_text(encoding="utf-8").splitlines():
                        if line.strip():
                            q = Path(line.strip())
                            files.append(q if q.is_absolute() else (p.parent / q).resolve())
                else:
                    raise InputError(yml, f"'{key}' points at {p}, which does not exist")
            groups.append((key, files))
        return groups, names
    images = folder / "images"
    if not images.is_dir():
        raise InputError(folder, "neither a data.yaml nor an images/ folder: not a YOLO dataset")
    splits = [d for d in sorted(images.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if splits:
        return [(d.name, list_files(d)) for d in splits], {}
    return [(None, list_files(images))], {}


class YoloSource(Source):
    type = "yolo"

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self._names: dict[int, str] | None = None

    def layout(self) -> tuple[list[tuple[str | None, list[Path]]], dict[int, str]]:
        try:
            return find_layout(self.options["folder"])
        except InputError as e:
            raise ConfigError(self.ctx.config_file, f"{self.config.key}.folder", str(e)) from None

    def names(self) -> dict[int, str]:
        if self._names is None:
            self._names = self.layout()[1]
        return self._names

    def tasks(self) -> Listing:
        groups, names = self.layout()
        self._names = names
        keys, payloads, splits = [], [], []
        folder: Path = self.options["folder"]
        stats: Counter = Counter({"classes in the dataset": len(names)})
        for split_name, files in groups:
            if split_name is not None and split_name not in SPLIT_NAMES:
                stats[f"'{split_name}' images not used"] += len(files)
                continue
            split = SPLIT_NAMES.get(split_name) if split_name else None
            for p in files:
                if p.suffix.lower() not in IMAGE_EXTS:
                    continue
                keys.append(f"{split}/{relative(p, folder)}")
                payloads.append(str(p))
                splits.append(split)
        # keep the dataset's own split when it has one with validation images; otherwise split like any source
        fixed = splits if None not in splits and VAL in splits else None
        return Listing(self.finish(keys, payloads, fixed), stats=stats)

    def class_of(self, idx: int) -> int | None:
        name = self.names().get(idx)
        mapped = self.map_label(name) if name is not None else None
        if mapped is None:
            mapped = self.map_label(str(idx))
        return self.ctx.class_id(mapped) if mapped is not None else None

    def load(self, task: Task) -> Example:
        img_path = Path(task.payload)
        image = read_image(img_path)
        h, w = image.shape[:2]
        lbl = label_path(img_path)
        polygons: list[np.ndarray] = []
        classes: list[int] = []
        dropped: Counter = Counter()
        label = read_labels(lbl) if lbl.is_file() else LabelFile()
        if label.problems:  # one bad line makes the whole file untrustworthy: the image is skipped, listed
            n, problem = label.problems[0]
            reason = "box-only label (detection, not segmentation)" if problem.kind == "box" else problem.reason
            raise SkipItem(lbl, f"line {n}: {reason}")
        for _n, line in label.lines:
            cls = self.class_of(line.class_id)
            if cls is None:
                dropped[f"label '{self.names().get(line.class_id, line.class_id)}' not mapped"] += 1
                continue
            polygons.append(line.polygon)
            classes.append(cls)
        if not polygons and not self.options["keep_empty"]:
            raise EmptyItem(img_path, "no instance left")
        size = fit_size(w, h, self.ctx.imgsz)
        masks = [polygon_to_mask(p * [size[0], size[1]], size[1], size[0]) for p in polygons]
        provenance: dict[str, Any] = {"type": "yolo", "original": relative(img_path, self.options["folder"])}
        if lbl.is_file():
            provenance["label"] = relative(lbl, self.options["folder"])
        return Example(
            image=resize_image(image, size),
            masks=np.array(masks, bool).reshape(-1, size[1], size[0]),
            classes=np.array(classes, np.int64),
            provenance=provenance,
            polygons=polygons,
            copy_from=img_path if size == (w, h) and copyable(img_path) else None,
            dropped=dropped,
            files_read=1 + lbl.is_file(),
        )
