"""What every dataset source shares: the :class:`Source` base class, its tasks and listings, and the split and
hashing rules (see :mod:`animeseg.data.sources` for how a source works)."""

from __future__ import annotations

import hashlib
import math
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from animeseg.data.config import DatasetConfig, SourceConfig
from animeseg.data.example import Example

VAL, TRAIN = "val", "train"


class LRUCache(OrderedDict):
    """A small least-recently-used cache: a source reuses decoded files across examples, memory stays bounded."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key: Any, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


@dataclass(frozen=True)
class BuildContext:
    """The dataset-wide settings a source needs (small and picklable)."""

    seed: int
    imgsz: int
    val_fraction: float
    classes: tuple[str, ...]
    config_file: str = ""

    @classmethod
    def of(cls, config: DatasetConfig) -> BuildContext:
        return cls(config.seed, config.imgsz, config.val_fraction, tuple(config.classes), str(config.path))

    def class_id(self, name: str) -> int:
        return self.classes.index(name)


@dataclass
class Task:
    """One unit of work: ``key`` identifies it stably (a relative path, a composite number), ``payload`` is what
    :meth:`Source.load` needs, ``copies`` how many times the written image appears in train (``weight`` > 1)."""

    key: str
    payload: Any
    split: str = TRAIN
    copies: int = 1


@dataclass
class Listing:
    """What :meth:`Source.tasks` found: the tasks, files it could not use, and counters for the manifest
    (``dropped``: instances left out by reason; ``crowd_images``/``crowd_regions``: the crowd policy at work;
    ``stats``: anything else worth reporting)."""

    tasks: list[Task]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    crowd_images: int = 0
    crowd_regions: int = 0
    empty: int = 0
    files_read: int = 0


class Source:
    """Base class of all source types; see the module docstring for the two-step contract."""

    type = ""

    def __init__(self, config: SourceConfig, ctx: BuildContext):
        self.config = config
        self.ctx = ctx
        self.name = config.name
        self.options = config.options

    def tasks(self) -> Listing:
        raise NotImplementedError

    def load(self, task: Task) -> Example:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ helpers
    def salt(self) -> str:
        return f"{self.ctx.seed}/{self.name}"

    def map_label(self, label: str) -> str | None:
        """Class name for a source label, or None when it is not mapped.

        With an explicit ``classes`` mapping only its keys count; without one, labels equal to a class name map
        to themselves.
        """
        mapping = self.config.classes
        if mapping:
            return mapping.get(label)
        return label if label in self.ctx.classes else None

    def finish(
        self, keys: Sequence[str], payloads: Sequence[Any], fixed_splits: Sequence[str] | None = None
    ) -> list[Task]:
        """Tasks for items ``keys`` (sorted by key): ``max_images`` and ``weight`` applied, splits decided.

        ``fixed_splits`` keeps a split the data already has (a YOLO dataset's own train/val); otherwise a
        deterministic ``val_fraction`` share is chosen by hashing keys with the seed.
        """
        order = sorted(range(len(keys)), key=lambda i: keys[i])
        keys = [keys[i] for i in order]
        payloads = [payloads[i] for i in order]
        splits = [fixed_splits[i] for i in order] if fixed_splits is not None else None
        keep = list(range(len(keys)))
        limit = self.config.max_images
        w = self.config.weight
        if w < 1:
            limit = min(limit or len(keep), max(1, round(len(keep) * w)) if keep else 0)
        if limit is not None and limit < len(keep):
            ranked = sorted(keep, key=lambda i: stable_hash(self.salt(), "pick", keys[i]))
            keep = sorted(ranked[:limit])
        if splits is None:
            val = choose_val([keys[i] for i in keep], self.ctx.val_fraction, self.salt())
            split_of = {i: (VAL if j in val else TRAIN) for j, i in enumerate(keep)}
        else:
            split_of = {i: splits[i] for i in keep}
        tasks = []
        for i in keep:
            split = split_of[i]
            copies = repeat_count(w, stable_hash(self.salt(), "copy", keys[i])) if split == TRAIN else 1
            tasks.append(Task(keys[i], payloads[i], split, copies))
        return tasks


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of ``parts`` that is the same in every process and every Python run."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def choose_val(keys: Sequence[str], val_fraction: float, salt: str) -> set[int]:
    """Indices of ``keys`` that go to val: exactly ``round(n * val_fraction)`` of them (at least 1 when
    ``val_fraction`` > 0 and there are 2 or more; never all), the ones with the smallest salted hash."""
    n = len(keys)
    if val_fraction <= 0 or n < 2:
        return set()
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    ranked = sorted(range(n), key=lambda i: stable_hash(salt, "split", keys[i]))
    return set(ranked[:n_val])


def repeat_count(weight: float, h: int) -> int:
    """How many times a training item appears for a ``weight`` above 1: the whole part, plus one more for the
    item's hash-chosen share of the fractional part."""
    if weight <= 1:
        return 1
    whole = math.floor(weight)
    frac = weight - whole
    return whole + (1 if (h % 1_000_000) / 1_000_000 < frac else 0)


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (as provenance records it)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
