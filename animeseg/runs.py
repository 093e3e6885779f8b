"""An output folder of ``animeseg predict``: how its run went (:class:`RunSummary`), its completion records, the
temporary files a killed run leaves, and which folder a new run gets.

Each input that succeeds gets a completion record ``<out>/.animeseg/records/<key>.json`` (see
:mod:`animeseg.runner`): its annotations, the files it wrote, the settings that made them and the input's size
and modification time. A new run never silently mixes into an earlier run's folder: without an explicit folder
it gets the next free one (``runs/predict``, ``runs/predict2``...); an explicit folder that already holds files is
refused unless the run resumes it or replaces the earlier run's outputs (:func:`output_folder`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animeseg.errors import AnimesegError

if TYPE_CHECKING:
    from animeseg.media import MediaItem

RECORDS = ".animeseg/records"
RECORD_VERSION = 1
#: Where a run goes when no folder is named: this, else the same name numbered 2, 3...
DEFAULT_OUT = Path("runs/predict")
_TEMP = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")  # what io.atomic_path leaves behind when a process is killed


# ------------------------------------------------------------------------------------------------ results
@dataclass
class ItemResult:
    """How one input went: ``status`` is ``ok``, ``skipped`` (complete from an earlier run) or ``error``;
    ``bad_input`` for an error of the input itself (not an image, truncated...), which a new run cannot mend."""

    name: str
    status: str
    error: str | None = None
    images: int = 0
    instances: int = 0
    seconds: float = 0.0
    bad_input: bool = False


@dataclass
class RunSummary:
    """Counts of a run; ``exit_code`` is 0 when every input succeeded, else 1."""

    out: Path
    results: list[ItemResult] = field(default_factory=list)
    predictions: Path | None = None

    def _count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def succeeded(self) -> int:
        return self._count("ok")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("error")

    @property
    def retryable(self) -> int:
        """Failed inputs that were readable (an error while segmenting or writing): a new run may succeed."""
        return sum(r.status == "error" and not r.bad_input for r in self.results)

    @property
    def images(self) -> int:
        """Images and video frames segmented in this run (skipped inputs not counted)."""
        return sum(r.images for r in self.results if r.status == "ok")

    @property
    def instances(self) -> int:
        return sum(r.instances for r in self.results if r.status != "error")

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def rows(self) -> list[tuple[str, Any]]:
        """(what, count) rows of the end-of-run table."""
        per_image = self.seconds / self.images if self.images else 0.0
        return [
            ("inputs", len(self.results)),
            ("succeeded", self.succeeded),
            ("skipped (already complete)", self.skipped),
            ("failed", self.failed),
            ("images and frames segmented", self.images),
            ("instances", self.instances),
            ("seconds", f"{self.seconds:.1f}"),
            ("seconds per image", f"{per_image:.3f}" if self.images else "-"),
        ]


# ------------------------------------------------------------------------------------------------ records
def signature_of(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from JSON, so records compare equal across runs."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def record_path(out: Path, key: str) -> Path:
    """The completion record of the input named ``key``."""
    return out / RECORDS / f"{key}.json"


def source_stat(path: Path) -> dict[str, int]:
    """Size and modification time of an input: a record is only trusted for the same file."""
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def load_record(path: Path) -> dict[str, Any] | None:
    """A completion record, or None when it is missing, unreadable or of another version."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("version") == RECORD_VERSION else None


def kinds_for(item: MediaItem, save: Sequence[str]) -> list[str]:
    """The output kinds that apply to an input: ``json`` is run-level; ``video`` only for videos, whose
    annotated copy replaces per-frame overlay images; the layered file is ``layers`` for images and
    ``frame-layers`` for video frames."""
    kinds = [k for k in save if k != "json"]
    if item.kind != "video":
        return [k for k in kinds if k not in ("video", "frame-layers")]
    kinds = [k for k in kinds if k != "layers"]
    if "video" in kinds:
        kinds = [k for k in kinds if k != "overlays"]
    return kinds


def is_complete(rec: dict[str, Any] | None, item: MediaItem, kinds: list[str], signature: dict, out: Path) -> bool:
    """Whether ``rec`` says ``item`` was finished with these settings and outputs, and its files are all there."""
    if rec is None or rec.get("name") != item.name or rec.get("signature") != signature:
        return False
    if not set(kinds) <= set(rec.get("save", [])):
        return False
    try:
        if rec.get("source") != source_stat(item.path):
            return False
    except OSError:
        return False
    return all((out / f).is_file() for f in rec.get("files", []))


def clean_temp_files(out: Path) -> int:
    """Remove temporary files a killed run left in ``out`` (``.name.XXXX.tmp.ext``); returns how many."""
    removed = 0
    if not out.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(out):
        for f in files:
            if _TEMP.match(f):
                with contextlib.suppress(OSError):
                    (Path(dirpath) / f).unlink()
                    removed += 1
    return removed


# ------------------------------------------------------------------------------------------------ run folders
def is_used(folder: Path) -> bool:
    """Whether ``folder`` exists and holds anything (an earlier run's outputs, or other files)."""
    try:
        return folder.is_dir() and any(folder.iterdir())
    except OSError:
        return False


def numbered(base: Path, n: int) -> Path:
    """``base`` for the first run, ``base2``, ``base3``... after it (Ultralytics' own numbering)."""
    return base if n == 1 else base.with_name(f"{base.name}{n}")


def latest_run_folder(base: Path) -> Path:
    """The most recent numbered run folder of ``base`` that holds anything (``base`` itself when none does)."""
    n, last = 1, base
    while n < 10_000:
        folder = numbered(base, n)
        if not folder.exists() and n > 1:
            break
        if is_used(folder):
            last = folder
        n += 1
    return last


def next_run_folder(base: Path) -> Path:
    """The first of ``base``, ``base2``, ``base3``... that does not exist or is empty."""
    n = 1
    while is_used(numbered(base, n)):
        n += 1
    return numbered(base, n)


def output_folder(out: str | Path | None, *, resume: bool = False, overwrite: bool = False) -> Path:
    """The folder a run writes to, so that it never silently mixes with an earlier run's files.

    ``out`` None: a new numbered folder under :data:`DEFAULT_OUT` (with ``resume``, the latest one; with
    ``overwrite``, :data:`DEFAULT_OUT` itself). A named ``out`` is used as it is when it is empty or new, or with
    ``resume`` (continue the run in it) or ``overwrite`` (replace its run: see :func:`clear_run`); otherwise a
    one-line :class:`AnimesegError` says what to do.
    """
    if resume and overwrite:
        raise AnimesegError("--resume continues an earlier run and --overwrite replaces it: give one of them")
    if out is None:
        if resume:
            return latest_run_folder(DEFAULT_OUT)
        return DEFAULT_OUT if overwrite else next_run_folder(DEFAULT_OUT)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise AnimesegError(f"{out}: --out is a file, not a folder")
    if is_used(out) and not (resume or overwrite):
        raise AnimesegError(
            f"{out}: holds an earlier run's files; pass --resume to continue that run, --overwrite to replace "
            "its outputs, or another --out"
        )
    return out


def clear_run(out: Path) -> int:
    """Remove what an earlier run wrote into ``out`` (the files its records list, the records and
    ``predictions.json``), and nothing else; returns how many files went."""
    from animeseg.writers import PREDICTIONS

    removed = 0
    records = out / RECORDS
    files = {out / PREDICTIONS}
    if records.is_dir():
        for path in records.rglob("*.json"):
            rec = load_record(path)
            files |= {out / f for f in (rec or {}).get("files", [])}
    for f in files:
        with contextlib.suppress(OSError):
            f.unlink()
            removed += 1
    shutil.rmtree(out / RECORDS.split("/")[0], ignore_errors=True)
    clean_temp_files(out)
    for dirpath, _dirs, _files in sorted(os.walk(out), key=lambda t: -len(t[0])):  # emptied folders go too
        if Path(dirpath) != out:
            with contextlib.suppress(OSError):
                Path(dirpath).rmdir()
    return removed
