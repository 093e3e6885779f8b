"""The batch loop behind ``animeseg predict``: read each input, segment it, write its outputs, record it.

Each input that succeeds gets a completion record ``<out>/.animeseg/records/<key>.json``, written atomically
after all of its outputs. The record holds its annotations, the output files it wrote, the settings that made
them and the input's size and modification time. ``resume=True`` skips an input whose record matches all of
these and whose files are all present, so a killed run continues where it stopped and ends with the same
outputs as an uninterrupted one; ``predictions.json`` is assembled from the records at the end. Failed inputs
get no record (they are retried), one ``error`` log line each and their reason in the :class:`RunSummary`.

Each input is processed through an :class:`animeseg.engine.Engine` (here by default), and progress goes to an
optional ``on_progress`` callback; nothing is printed.

A segmenter with a ``start(sequence)`` method (:class:`animeseg.track.TrackingSegmenter`) tracks: each video,
and the images of each output folder, is one sequence (:func:`animeseg.track.sequence_of`); with ``resume`` the
images of a sequence are skipped only when all of them are complete, since their tracks depend on each other.
The tracker's state lives in that segmenter, so tracking needs an engine that runs the items of a sequence in
order in one process, as :class:`~animeseg.engine.LocalEngine` does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from animeseg.engine import Engine, LocalEngine
from animeseg.errors import InputError
from animeseg.instances import Instances
from animeseg.io import read_image, write_json
from animeseg.media import MediaItem, iter_frames, video_fps
from animeseg.overlay import render_overlay
from animeseg.progress import ProgressCallback, Step, logger, report
from animeseg.readahead import Detected, ReadAhead, reader_for
from animeseg.runs import (
    RECORD_VERSION,
    ItemResult,
    RunSummary,
    clean_temp_files,
    is_complete,
    kinds_for,
    load_record,
    record_path,
    signature_of,
    source_stat,
)
from animeseg.track import frame_label, sequence_of
from animeseg.writers import (
    KIND_FOLDERS,
    PREDICTIONS,
    PredictionsBuilder,
    VideoOutput,
    WriteOptions,
    image_annotations,
    track_cutout_path,
    video_path,
    write_image_outputs,
)


class SegmenterLike(Protocol):
    """What the runner needs from :class:`animeseg.predict.Segmenter`."""

    names: dict[int, str]

    def __call__(self, image: np.ndarray) -> Instances: ...


def _tracking(segmenter: SegmenterLike) -> bool:
    return callable(getattr(segmenter, "start", None))


def _track_path(item: MediaItem, index: int | None = None) -> Callable[[int], str]:
    """Where the cut-outs of this image (or video frame ``index``) go, per track id."""
    folder, frame = sequence_of(item), frame_label(item, index)
    return lambda track_id: track_cutout_path(folder, track_id, frame)


class _Progress:
    """Progress of a run as :class:`~animeseg.progress.Step` records (task ``predict``): images and frames done
    of those expected, instances so far and seconds per image."""

    def __init__(self, total: int, on_progress: ProgressCallback | None):
        self.on_progress = on_progress
        self.instances = 0
        self.seconds = 0.0
        self.done = 0
        self.timed = 0
        self.total = total
        self.label = "predict"

    def _report(self) -> None:
        info = {"instances": self.instances, "s/image": self.seconds / self.timed if self.timed else "-"}
        report(self.on_progress, Step("predict", self.done, max(self.total, self.done), self.label, info))

    def describe(self, name: str) -> None:
        self.label = name
        self._report()

    def step(self, instances: int, seconds: float, images: int = 1, timed: bool = True) -> None:
        self.instances += instances
        self.done += images
        if timed:
            self.seconds += seconds
            self.timed += images
        self._report()

    def adjust_total(self, delta: int) -> None:
        self.total += delta


def _process_image(
    item: MediaItem,
    segmenter: SegmenterLike,
    out: Path,
    kinds: list[str],
    bar: _Progress,
    write: WriteOptions,
    reader: ReadAhead | None = None,
) -> tuple[list[dict], list[str], int]:
    t0 = time.perf_counter()
    got = reader.read(item) if reader is not None else read_image(item.path)
    tracks = None
    if _tracking(segmenter):
        segmenter.start(sequence_of(item))
        tracks = _track_path(item)
    if isinstance(got, Detected):  # detected ahead, on a reader thread; refined here
        image, inst = got.image, segmenter.refine(got.image, got.instances)  # type: ignore[attr-defined]
    else:
        image, inst = got, segmenter(got)
    files = write_image_outputs(out, item.key, image, inst, kinds, track_path=tracks, source=item.path, **asdict(write))
    h, w = image.shape[:2]
    entry = {"file_name": item.name, "height": h, "width": w, "annotations": image_annotations(inst)}
    bar.step(len(inst), time.perf_counter() - t0)
    return [entry], files, len(inst)


def _process_video(
    item: MediaItem, segmenter: SegmenterLike, out: Path, kinds: list[str], bar: _Progress, write: WriteOptions
) -> tuple[list[dict], list[str], int]:
    frame_kinds = [k for k in kinds if k != "video"]
    entries: list[dict] = []
    files: list[str] = []
    instances = 0
    frames = iter_frames(item.path)
    tracking = _tracking(segmenter)
    if tracking:
        segmenter.start(sequence_of(item), restart=True)
    video = VideoOutput(out / video_path(item.key), video_fps(item.path)) if "video" in kinds else None
    with video if video is not None else contextlib.nullcontext():
        t0 = time.perf_counter()
        for index, frame in frames:
            inst = segmenter(frame)
            tracks = _track_path(item, index) if tracking else None
            key = item.frame_key(index)
            files += write_image_outputs(out, key, frame, inst, frame_kinds, track_path=tracks, **asdict(write))
            if video is not None:
                video.write(render_overlay(frame, inst))
            h, w = frame.shape[:2]
            entries.append(
                {"file_name": item.frame_name(index), "height": h, "width": w, "annotations": image_annotations(inst)}
            )
            instances += len(inst)
            now = time.perf_counter()
            bar.step(len(inst), now - t0)
            t0 = now
    if video is not None:
        files.append(video_path(item.key))
    bar.adjust_total(len(entries) - (item.frames or 1))
    return entries, files, instances


def run(
    items: Sequence[MediaItem],
    segmenter: SegmenterLike,
    out: str | Path,
    save: Iterable[str],
    *,
    resume: bool = False,
    signature: dict[str, Any] | None = None,
    on_item: Callable[[ItemResult], None] | None = None,
    on_progress: ProgressCallback | None = None,
    engine: Engine | None = None,
    alpha: str = "binary",
    labelme_image_data: bool = False,
) -> RunSummary:
    """Segment every input of ``items`` and write the outputs named in ``save`` under ``out``.

    ``signature`` (model and settings, JSON-ready) is stored in each completion record; with ``resume`` an input
    is skipped only when its record has the same signature and covers every requested output. ``alpha`` is the
    cut-outs' alpha, ``binary`` or ``matte`` (see :func:`animeseg.writers.cutout`); ``labelme_image_data`` embeds
    each image in its LabelMe file (see :func:`animeseg.writers.write_labelme`). ``on_item`` is
    called after each input (tests use it to stop a run midway), ``on_progress`` with a
    :class:`~animeseg.progress.Step` per image or frame. ``engine`` runs each input (default: a
    :class:`~animeseg.engine.LocalEngine`). Returns the :class:`RunSummary`; the caller shows it and turns
    ``exit_code`` into the process status.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save = list(save)
    signature = signature_of(signature or {})
    clean_temp_files(out)
    summary = RunSummary(out=out)
    records: list[dict[str, Any] | None] = []
    total = sum((it.frames or 1) for it in items if it.kind != "error")
    redo = _incomplete_sequences(items, out, save, signature) if resume and _tracking(segmenter) else set()

    bar = _Progress(total, on_progress)
    engine = engine or LocalEngine()
    # an engine that runs the work elsewhere gets a silent progress; the outcomes drive the bar here instead
    here = getattr(engine, "in_process", False)
    # in this process, in order: the next images are decoded (and detected, where the detector runs images side
    # by side) while this one is refined and written
    reader = reader_for(items, segmenter) if here else None
    write = WriteOptions(alpha, labelme_image_data)
    work = ItemWork(
        segmenter, out, save, resume, signature, bar if here else _Progress(0, None), write, frozenset(redo), reader
    )

    outcomes = engine.map(work, items)
    try:
        for outcome in outcomes:
            if outcome.ok:
                result, record = outcome.value
                if not here:
                    _step_from_result(bar, outcome.item, result)
            else:
                result, record = _failed(outcome.item, outcome.error or "failed", bar, outcome.bad_input)
            summary.results.append(result)
            records.append(record)
            if on_item is not None:
                on_item(result)
    except KeyboardInterrupt:
        done = len(summary.results)
        name = items[done].name if done < len(items) else "the end"
        logger.error(
            f"interrupted at {name} ({done} of {len(items)} inputs done); finished outputs are kept: run again "
            "with --resume to continue"
        )
        raise
    finally:
        if reader is not None:
            reader.close()

    if "json" in save:
        builder = PredictionsBuilder(segmenter.names)
        for item, result, record in zip(items, summary.results, records, strict=True):
            if record is None:
                builder.add_error(item.name, result.error or "failed")
                continue
            for entry in record["images"]:
                builder.add_ok(entry["file_name"], entry["height"], entry["width"], entry["annotations"])
        summary.predictions = builder.write(out / PREDICTIONS)
    return summary


@dataclass
class ItemWork:
    """The work on one input (segment it, write its outputs and its completion record), as one picklable
    callable: an engine may run it in another process, where ``segmenter`` is then built (see
    :class:`animeseg.predict.SegmenterSpec`)."""

    segmenter: SegmenterLike
    out: Path
    save: list[str]
    resume: bool
    signature: dict[str, Any]
    bar: _Progress
    write: WriteOptions = WriteOptions()
    redo: frozenset[str] = frozenset()  # tracked image sequences redone whole on --resume
    reader: ReadAhead | None = None  # reads images one ahead (only where the work runs here, in order)

    def __call__(self, item: MediaItem) -> tuple[ItemResult, dict[str, Any] | None]:
        skip_done = self.resume and _sequence(item) not in self.redo
        return _run_one(
            item, self.segmenter, self.out, self.save, skip_done, self.signature, self.bar, self.write, self.reader
        )


def _step_from_result(bar: _Progress, item: MediaItem, result: ItemResult) -> None:
    """Progress of an input done elsewhere, as :func:`_run_one` reports it when run here."""
    bar.describe(item.name)
    bar.step(result.instances, result.seconds, images=result.images, timed=result.status == "ok")
    if item.kind == "video":
        bar.adjust_total(result.images - (item.frames or 1))


def _sequence(item: MediaItem) -> str | None:
    return sequence_of(item) if item.kind == "image" else None


def _incomplete_sequences(items: Sequence[MediaItem], out: Path, save: list[str], signature: dict) -> set[str]:
    """Image sequences with at least one input not complete from an earlier run: they are redone as a whole."""
    redo = set()
    for item in items:
        seq = _sequence(item)
        if seq is not None and seq not in redo:
            rec = load_record(record_path(out, item.key))
            if not is_complete(rec, item, kinds_for(item, save), signature, out):
                redo.add(seq)
    return redo


def _run_one(
    item: MediaItem,
    segmenter: SegmenterLike,
    out: Path,
    save: list[str],
    resume: bool,
    signature: dict[str, Any],
    bar: _Progress,
    write: WriteOptions = WriteOptions(),
    reader: ReadAhead | None = None,
) -> tuple[ItemResult, dict[str, Any] | None]:
    if item.kind == "error":
        raise InputError(item.path, item.error or "unusable input")  # found by expand_sources; reported here

    bar.describe(item.name)
    kinds = kinds_for(item, save)
    rec_file = record_path(out, item.key)
    old = load_record(rec_file)
    if resume and is_complete(old, item, kinds, signature, out):
        n_images = len(old["images"])
        n_inst = sum(len(e["annotations"]) for e in old["images"])
        bar.step(n_inst, 0.0, images=n_images, timed=False)
        bar.adjust_total(n_images - (item.frames or 1) if item.kind == "video" else 0)
        return ItemResult(item.name, "skipped", None, n_images, n_inst), old

    t0 = time.perf_counter()
    if item.kind == "video":
        entries, files, n_inst = _process_video(item, segmenter, out, kinds, bar, write)
    else:
        entries, files, n_inst = _process_image(item, segmenter, out, kinds, bar, write, reader)
    source = source_stat(item.path)
    seconds = time.perf_counter() - t0

    if old is not None:  # an earlier run may have written more instances' files of the kinds just rewritten
        rewritten = {KIND_FOLDERS[k] for k in kinds}
        for stale in set(old.get("files", [])) - set(files):
            if stale.split("/", 1)[0] in rewritten:
                with contextlib.suppress(OSError):
                    (out / stale).unlink()
    record = {
        "version": RECORD_VERSION,
        "name": item.name,
        "kind": item.kind,
        "signature": signature,
        "source": source,
        "save": kinds,
        "files": files,
        "images": entries,
        "seconds": round(seconds, 4),
    }
    write_json(rec_file, record)
    return ItemResult(item.name, "ok", None, len(entries), n_inst, seconds), record


def _failed(item: MediaItem, message: str, bar: _Progress, bad_input: bool = False) -> tuple[ItemResult, None]:
    logger.error(f"{item.path}: {message}")
    if item.kind == "image":
        bar.step(0, 0.0, images=1, timed=False)
    return ItemResult(item.name, "error", message, bad_input=bad_input), None
