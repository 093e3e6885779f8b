"""``animeseg data check DIR``: validate any YOLO-seg dataset and print class and size statistics.

Errors (exit code 1): unreadable images, label lines that are not numbers, class ids outside ``names``,
coordinates outside [0, 1], polygons with fewer than 3 points, files mixing polygon and box lines (Ultralytics
refuses them), label files without an image. Warnings: images without a label file (Ultralytics trains on them as
background), box-only lines, repeated lines, files with identical content.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.data.sources.yolo import find_layout
from animeseg.errors import InputError
from animeseg.io import image_size, read_image
from animeseg.progress import ProgressCallback, Step, report
from animeseg.yolo_labels import DECIMALS, label_path, read_labels

MAX_LISTED = 1000


class _Problems:
    def __init__(self):
        self.items: list[dict[str, str]] = []
        self.count = 0

    def add(self, file: Path | str, problem: str) -> None:
        self.count += 1
        if len(self.items) < MAX_LISTED:
            self.items.append({"file": str(file), "problem": problem})


def _check_label(path: Path, nc: int | None, errors: _Problems, warnings: _Problems) -> list[tuple[int, int]]:
    """(class id, points) of each valid polygon line of one label file; problems are recorded."""
    try:
        label = read_labels(path, nc)
    except (OSError, UnicodeDecodeError) as e:
        errors.add(path, f"cannot read ({e})")
        return []
    kinds = {"polygon" if p.kind == "error" else p.kind for _, p in label.problems}
    for n, problem in label.problems:
        (warnings if problem.kind == "box" else errors).add(path, f"line {n}: {problem.reason}")
    out = []
    seen = set()
    for n, line in label.lines:
        kinds.add("polygon")
        key = (line.class_id, line.polygon.round(DECIMALS).tobytes())
        if key in seen:
            warnings.add(path, f"line {n}: repeats an earlier line")
        seen.add(key)
        out.append((line.class_id, len(line.polygon)))
    if {"box", "polygon"} <= kinds:
        errors.add(path, "mixes polygon and box lines (Ultralytics refuses such files)")
    return out


def check_dataset(
    folder: str | Path, decode: bool = True, on_progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Check a YOLO-seg dataset folder; returns a report dict (``errors``/``warnings`` counts, their first
    listed items, per-split statistics, groups of identical files). ``decode`` reads every image fully (catches
    truncated files); without it only headers are read. ``on_progress`` receives a step per image (task
    ``check``)."""
    folder = Path(folder).expanduser().resolve()
    groups, names = find_layout(folder)
    nc = len(names) if names else None
    errors, warnings = _Problems(), _Problems()
    splits: dict[str, Any] = {}
    hashes: dict[str, list[str]] = defaultdict(list)
    label_dirs: dict[Path, set[str]] = defaultdict(set)
    total = sum(len(f) for _, f in groups)
    done = 0
    for split, files in groups:
        key = split or "all"
        widths, heights, points, per_image = [], [], [], []
        instances: Counter = Counter()
        negatives = missing = 0
        for img in files:
            done += 1
            report(on_progress, Step("check", done, total, "checking"))
            lbl = label_path(img)
            label_dirs[lbl.parent].add(lbl.stem)
            try:
                w, h = (read_image(img).shape[1::-1]) if decode else image_size(img)
                widths.append(w)
                heights.append(h)
            except InputError as e:
                errors.add(img, f"unreadable image: {e.problem}")
            with open(img, "rb") as f:
                hashes[hashlib.blake2b(f.read(), digest_size=16).hexdigest()].append(str(img))
            if not lbl.is_file():
                missing += 1
                negatives += 1
                warnings.add(img, "no label file (trained on as background)")
                continue
            found = _check_label(lbl, nc, errors, warnings)
            per_image.append(len(found))
            negatives += not found
            for cls, n in found:
                instances[cls] += 1
                points.append(n)
        splits[key] = {
            "images": len(files),
            "without_label_file": missing,
            "negatives": negatives,
            "instances": {names.get(c, str(c)) if names else str(c): n for c, n in sorted(instances.items())},
            "width": _spread(widths),
            "height": _spread(heights),
            "instances_per_image": {
                "mean": round(float(np.mean(per_image)), 3) if per_image else 0.0,
                "max": int(max(per_image)) if per_image else 0,
            },
            "points_per_polygon": round(float(np.mean(points)), 1) if points else 0.0,
        }
    for d, stems in label_dirs.items():
        if d.is_dir():
            for txt in sorted(d.glob("*.txt")):
                if txt.stem not in stems:
                    errors.add(txt, "label file without an image (orphan)")
    duplicates = [sorted(v) for v in hashes.values() if len(v) > 1]
    for group in duplicates[:MAX_LISTED]:
        warnings.add(group[0], f"same content as {len(group) - 1} other file(s): {', '.join(group[1:4])}")
    return {
        "folder": str(folder),
        "names": {int(k): v for k, v in names.items()},
        "splits": splits,
        "errors": errors.count,
        "warnings": warnings.count,
        "error_list": errors.items,
        "warning_list": warnings.items,
        "duplicates": duplicates,
    }


def _spread(values: list[int]) -> dict[str, int]:
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": int(min(values)), "median": int(np.median(values)), "max": int(max(values))}
