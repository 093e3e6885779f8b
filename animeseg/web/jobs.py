"""One batch of uploads from the page: the same outputs as ``animeseg predict``, plus a zip of them.

Each batch gets its own folder under the server's jobs folder: ``inputs/`` (the uploads, removed when the batch
ends), ``out/`` (written by :func:`animeseg.runner.run`, exactly as ``animeseg predict --save
json,masks,cutouts,overlays,labelme,layers`` writes it) and the zip of ``out/``. A batch in which nothing
succeeded, or that raises, leaves no folder behind; every file is written atomically, so nothing is ever half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from animeseg.io import IMAGE_EXTS, atomic_path
from animeseg.media import MEDIA_EXTS, MOVIE_EXTS, MediaItem, expand_sources
from animeseg.progress import ProgressCallback
from animeseg.runner import SegmenterLike, run
from animeseg.runs import RECORDS
from animeseg.writers import PREDICTIONS, cutout_path, mask_path, overlay_path

#: What the page writes for each input: what its zip holds (``layers``: a PSD per image, not per video frame).
PAGE_SAVE = ("json", "masks", "cutouts", "overlays", "labelme", "layers")
#: Longest video the page takes (frames); longer ones are refused with a pointer to ``animeseg predict``.
MAX_VIDEO_FRAMES = 600


@dataclass
class Picture:
    """A file to show on the page, with its caption."""

    path: Path
    caption: str


@dataclass
class JobResult:
    """What one batch produced. ``zip`` is None when no input succeeded (then ``folder`` no longer exists)."""

    folder: Path
    zip: Path | None = None
    overlays: list[Picture] = field(default_factory=list)
    cutouts: list[Picture] = field(default_factory=list)
    masks: list[Picture] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    inputs: int = 0
    succeeded: int = 0
    images: int = 0
    instances: int = 0
    seconds: float = 0.0


def unsupported_message(name: str) -> str | None:
    """Why the page cannot take a file called ``name`` (None when its extension is one it reads)."""
    ext = Path(name).suffix.lower()
    if ext in MEDIA_EXTS:
        return None
    images = ", ".join(e[1:] for e in IMAGE_EXTS)
    videos = ", ".join(e[1:] for e in MOVIE_EXTS) + ", animated gif"
    what = f"'{ext}' files" if ext else "files without an extension"
    return f"{name}: unsupported file type ({what}); drop images ({images}) or a short video ({videos})"


def _unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem (2).ext``... when an earlier upload of the batch has it (case-insensitively)."""
    stem, ext = os.path.splitext(name)
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem} ({n}){ext}"
    taken.add(candidate.lower())
    return candidate


def _place(upload: Path, dest: Path) -> None:
    """Put an upload into the batch folder: a hard link where possible (no copy of a large video)."""
    try:
        os.link(upload, dest)
    except OSError:
        shutil.copyfile(upload, dest)


def _zip_name(items: Sequence[MediaItem]) -> str:
    stem = re.sub(r"[^\w.-]+", "_", Path(items[0].name).stem).strip("._") or "results"
    more = f"-and-{len(items) - 1}-more" if len(items) > 1 else ""
    return f"animeseg-{stem[:60]}{more}.zip"


def write_zip(out: Path, path: Path) -> Path:
    """Zip every output under ``out`` (paths relative to it) into ``path`` atomically; the runner's resume
    records are not outputs and stay out."""
    files = sorted(
        p for p in out.rglob("*") if p.is_file() and not p.relative_to(out).as_posix().startswith(RECORDS + "/")
    )
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for p in files:
            zf.write(p, p.relative_to(out).as_posix())
    return path


def _pictures(out: Path, items: Sequence[MediaItem], result: JobResult) -> None:
    """Fill the overlays, cut-outs and masks of ``result`` from ``out/predictions.json``, in its order."""
    doc = json.loads((out / PREDICTIONS).read_text(encoding="utf-8"))
    by_name = {it.name: it for it in items}
    names = {c["id"]: c["name"] for c in doc["categories"]}
    per_image: dict[int, list[dict]] = {}
    for ann in doc["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    for image in doc["images"]:
        if image.get("status") != "ok":
            continue
        file_name = image["file_name"]
        if file_name in by_name:
            key = by_name[file_name].key
        else:  # a video frame: "<video name>#<frame>"
            video, frame = file_name.rsplit("#", 1)
            key = by_name[video].frame_key(int(frame))
        result.overlays.append(Picture(out / overlay_path(key), file_name))
        for i, ann in enumerate(per_image.get(image["id"], [])):
            caption = f"{file_name} #{i}: {names.get(ann['category_id'], ann['category_id'])} {ann['score']:.2f}"
            result.cutouts.append(Picture(out / cutout_path(key, i), caption))
            result.masks.append(Picture(out / mask_path(key, i), caption))


def run_job(
    uploads: Sequence[str | Path],
    segmenter: SegmenterLike,
    jobs: str | Path,
    on_progress: ProgressCallback | None = None,
    alpha: str = "binary",
) -> JobResult:
    """Segment ``uploads`` (files, in the order given; their file names are the inputs' names) into a new
    folder under ``jobs`` and zip the outputs; ``alpha`` is the cut-outs' (``binary`` or ``matte``).

    Bad inputs (unsupported type, not an image, truncated, too large, an undecodable or too long video) become
    one line each in ``failures`` (``name: problem``); the others go on. ``on_progress`` receives the runner's
    :class:`~animeseg.progress.Step` per image or frame. Returns the :class:`JobResult`.
    """
    t0 = time.perf_counter()
    folder = Path(jobs) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    result = JobResult(folder=folder, inputs=len(uploads))
    try:
        _run(uploads, segmenter, result, on_progress, alpha)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if result.zip is None:
        shutil.rmtree(folder, ignore_errors=True)
    result.seconds = time.perf_counter() - t0
    return result


def _run(
    uploads: Sequence[str | Path],
    segmenter: SegmenterLike,
    result: JobResult,
    on_progress: ProgressCallback | None,
    alpha: str,
) -> None:
    inputs, out = result.folder / "inputs", result.folder / "out"
    inputs.mkdir(parents=True)
    taken: set[str] = set()
    placed: list[Path] = []
    for upload in map(Path, uploads):
        problem = unsupported_message(upload.name)
        if problem is not None:
            result.failures.append(problem)
            continue
        dest = inputs / _unique_name(upload.name, taken)
        _place(upload, dest)
        placed.append(dest)

    items: list[MediaItem] = []
    for item in expand_sources(placed):
        if item.kind == "video" and item.frames is not None and item.frames > MAX_VIDEO_FRAMES:
            result.failures.append(
                f"{item.name}: video too long for the page ({item.frames} frames, limit {MAX_VIDEO_FRAMES}); "
                f"use `animeseg predict` for long videos"
            )
        else:
            items.append(item)
    if not items:
        return

    summary = run(items, segmenter, out, PAGE_SAVE, on_progress=on_progress, alpha=alpha)
    shutil.rmtree(inputs, ignore_errors=True)
    result.failures += [f"{r.name}: {r.error}" for r in summary.results if r.status == "error"]
    result.succeeded, result.images, result.instances = summary.succeeded, summary.images, summary.instances
    if summary.succeeded:
        _pictures(out, items, result)
        result.zip = write_zip(out, result.folder / _zip_name(items))


def prune_jobs(jobs: str | Path, keep: int = 20, max_age_s: float = 3600.0) -> int:
    """Remove batch folders beyond the ``keep`` newest or older than ``max_age_s``; returns how many went."""
    jobs = Path(jobs)
    if not jobs.is_dir():
        return 0
    folders = sorted((p for p in jobs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    now, removed = time.time(), 0
    for i, folder in enumerate(folders):
        with contextlib.suppress(OSError):
            if i >= keep or now - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder)
                removed += 1
    return removed
