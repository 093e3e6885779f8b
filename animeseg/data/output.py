"""The output folder, written as a stream: label files, COCO JSON, provenance and per-source counts.

Nothing here holds a source's images or masks: each :class:`~animeseg.data.write.Written` record is appended to
open files and forgotten, so memory does not grow with the dataset (only counters and a few preview samples).
The COCO files are streamed into two part files per split and joined at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.cocojson import categories, category_id, image_record
from animeseg.data.write import Written
from animeseg.io import atomic_path, write_text

SPLITS = ("train", "val")
CROWD_DROPPED = "crowd region"  # the `dropped` reason sources use for crowd / ignore regions under `crowd: drop`
MAX_LISTED = 1000  # skipped files listed one by one per source (all are counted)


class CocoStream:
    """Writes one COCO instances file record by record (images and annotations go to part files first)."""

    def __init__(self, path: Path, names: list[str], parts: Path):
        self.path = path
        self.names = names
        parts.mkdir(parents=True, exist_ok=True)
        self._img_path = parts / f"{path.stem}.images.part"
        self._ann_path = parts / f"{path.stem}.annotations.part"
        self._img = open(self._img_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close/abort)
        self._ann = open(self._ann_path, "w", encoding="utf-8")  # noqa: SIM115
        self.images = 0
        self.annotations = 0

    @staticmethod
    def _dump(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    def add(self, image: dict[str, Any], annotations: list[dict[str, Any]]) -> None:
        self._img.write(("," if self.images else "") + self._dump(image))
        self.images += 1
        for a in annotations:
            self._ann.write(("," if self.annotations else "") + self._dump(a))
            self.annotations += 1

    def close(self, info: dict[str, Any]) -> None:
        self._img.close()
        self._ann.close()
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as out:
            out.write('{"info":' + self._dump(info) + ',"images":[')
            with open(self._img_path, encoding="utf-8") as f:
                shutil.copyfileobj(f, out)
            out.write('],"annotations":[')
            with open(self._ann_path, encoding="utf-8") as f:
                shutil.copyfileobj(f, out)
            out.write('],"categories":' + self._dump(categories(self.names)) + "}\n")
        self._img_path.unlink()
        self._ann_path.unlink()

    def abort(self) -> None:
        self._img.close()
        self._ann.close()


class SourceTally:
    """Counts for one source, as the manifest reports them."""

    def __init__(self, name: str, type_: str, options: dict[str, Any]):
        self.name, self.type, self.options = name, type_, options
        self.files_read = 0
        self.images = Counter()
        self.instances = Counter()
        self.dropped: Counter = Counter()
        self.stats: Counter = Counter()
        self.skipped: list[dict[str, str]] = []
        self.skipped_count = 0
        self.empty = 0
        self.crowd_images = 0
        self.crowd_regions = 0
        self.seen_bad: set[tuple[str, str]] = set()

    def skip(self, file: str, reason: str) -> bool:
        """Record a bad file once; True when it is new (so it gets its warning line)."""
        if (file, reason) in self.seen_bad:
            return False
        self.seen_bad.add((file, reason))
        self.skipped_count += 1
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append({"file": file, "reason": reason})
        return True

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in self.options.items()},
            "files_read": self.files_read,
            "images": {s: self.images[s] for s in SPLITS},
            "instances": {s: self.instances[s] for s in SPLITS},
            "dropped": dict(sorted(self.dropped.items())),
            "stats": dict(sorted(self.stats.items())),
            "empty_images_left_out": self.empty,
            "crowd_images_skipped": self.crowd_images,
            "crowd_regions_dropped": self.crowd_regions,
            "skipped_count": self.skipped_count,
            "skipped": self.skipped,
        }


class DatasetWriter:
    """Appends :class:`Written` records to a dataset folder being built (``root``)."""

    def __init__(self, root: Path, names: list[str], seed: int, preview_slots: int = 16):
        self.root = root
        self.names = names
        self.stack = contextlib.ExitStack()
        parts = root / ".parts"
        self.coco = {s: CocoStream(root / "annotations" / f"{s}.json", names, parts) for s in SPLITS}
        self._prov_tmp = self.stack.enter_context(atomic_path(root / "provenance.jsonl"))
        self.provenance = self.stack.enter_context(open(self._prov_tmp, "w", encoding="utf-8"))  # noqa: SIM115
        for s in SPLITS:
            (root / "images" / s).mkdir(parents=True, exist_ok=True)
            (root / "labels" / s).mkdir(parents=True, exist_ok=True)
        self.image_id = 0
        self.ann_id = 0
        self.tallies: dict[str, SourceTally] = {}
        self.rng = np.random.default_rng([seed, 7])
        self.preview_slots = preview_slots
        self.preview: dict[str, list[dict[str, Any]]] = {}
        self.preview_seen: Counter = Counter()
        self.quota = preview_slots

    def start_source(self, tally: SourceTally, n_sources: int) -> None:
        self.tallies[tally.name] = tally
        self.quota = max(1, self.preview_slots // max(1, n_sources))

    def add(self, w: Written) -> list[tuple[str, str]]:
        """Write one record; returns the (file, reason) pairs that are new bad files (to warn about)."""
        t = self.tallies[w.source]
        t.files_read += w.files_read
        new_bad = [(f, r) for f, r in w.bad_files if t.skip(f, r)]
        if w.skip is not None:
            if w.skip_kind == "empty":
                t.empty += 1
            elif w.skip_kind == "crowd":
                t.crowd_images += 1
            elif t.skip(*w.skip):
                new_bad.append(w.skip)
            return new_bad
        t.dropped.update(w.dropped)
        t.crowd_regions += w.dropped.get(CROWD_DROPPED, 0)
        ext = Path(w.file).suffix
        for copy in range(w.copies):
            name = w.name if copy == 0 else f"{w.name}_r{copy}"
            rel = f"images/{w.split}/{name}{ext}"
            if copy:
                _link(self.root / w.file, self.root / rel)
            write_text(self.root / "labels" / w.split / f"{name}.txt", w.label_text)
            self._coco(w, f"{name}{ext}")
            record = {"image": rel, "split": w.split, "source": w.source, **w.provenance}
            if copy:
                record["repeat_of"] = w.file
            self.provenance.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
            t.images[w.split] += 1
            t.instances[w.split] += len(w.annotations)
        self._sample(w)
        return new_bad

    def _coco(self, w: Written, file_name: str) -> None:
        self.image_id += 1
        anns = []
        for a in w.annotations:
            self.ann_id += 1
            anns.append(
                {
                    "id": self.ann_id,
                    "image_id": self.image_id,
                    "category_id": category_id(a["class_id"]),
                    "category_name": self.names[a["class_id"]],
                    "bbox": a["bbox"],
                    "area": a["area"],
                    "segmentation": a["segmentation"],
                    "iscrowd": 0,
                }
            )
        self.coco[w.split].add(image_record(self.image_id, file_name, w.height, w.width, source=w.source), anns)

    def _sample(self, w: Written) -> None:
        """Reservoir sampling of preview images per source (deterministic: the writer sees records in order)."""
        kept = self.preview.setdefault(w.source, [])
        self.preview_seen[w.source] += 1
        n = self.preview_seen[w.source]
        sample = {
            "file": w.file,
            "masks": [a["segmentation"] for a in w.annotations],
            "caption": f"{w.source}: {len(w.annotations)} inst.",
        }
        if len(kept) < self.quota:
            kept.append(sample)
        else:
            j = int(self.rng.integers(n))
            if j < self.quota:
                kept[j] = sample

    def close(self, info: dict[str, Any]) -> None:
        for c in self.coco.values():
            c.close(info)
        shutil.rmtree(self.root / ".parts", ignore_errors=True)
        self.provenance.close()
        self.stack.close()  # renames provenance.jsonl into place

    def abort(self) -> None:
        for c in self.coco.values():
            c.abort()
        self.provenance.close()
        with contextlib.suppress(Exception):
            self.stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def preview_samples(self) -> list[dict[str, Any]]:
        out = []
        for samples in self.preview.values():
            out += samples
        return out[: self.preview_slots]


def _link(src: Path, dst: Path) -> None:
    """A repeated image: a hard link where the file system allows, else a copy (written atomically)."""
    try:
        os.link(src, dst)
    except OSError:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
