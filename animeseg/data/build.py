"""``animeseg data build``: every source of a ``datasets.yaml`` into one YOLO-seg dataset.

The dataset is built in a hidden folder next to the output (``.<out>.building-<pid>``) and moved into place only
when complete, so an interrupted build never leaves a half dataset where a finished one is expected, and an
existing dataset is replaced only with ``overwrite`` and only at the very end.

Output (see docs/data.md): ``data.yaml``, ``images/{train,val}``, ``labels/{train,val}``,
``annotations/{train,val}.json`` (COCO, exact RLE), ``provenance.jsonl``, ``manifest.json``, ``preview.jpg``.
Labels, annotations and provenance are byte-identical for the same config and seed, whatever ``workers`` is:
workers make examples in parallel but their results are written in task order.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from animeseg import __version__
from animeseg.data.config import DatasetConfig, config_hash, load_config
from animeseg.data.example import SkipItem
from animeseg.data.output import SPLITS, DatasetWriter, SourceTally
from animeseg.data.preview import render_preview
from animeseg.data.sources import BuildContext, Listing, Source, Task, make_source
from animeseg.data.write import Written, write_example
from animeseg.errors import AnimesegError, ConfigError, InputError
from animeseg.io import write_image, write_json, write_text
from animeseg.progress import ProgressCallback, Step, logger, report
from animeseg.versions import installed_version

#: The manifest's ``versions``: name -> the module whose installed version it records.
PACKAGES = {
    "ultralytics": "ultralytics",
    "numpy": "numpy",
    "opencv": "cv2",
    "pycocotools": "pycocotools",
    "pillow": "PIL",
    "pyyaml": "yaml",
}

# ----------------------------------------------------------------------------------------------- worker side
_SOURCES: dict[str, Source] = {}


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only compete


def _run(job: tuple[Any, BuildContext, Path, int, str, Task]) -> Written:
    """Make and write one task (in a worker process, or inline with ``workers=1``)."""
    config, ctx, root, seq, name, task = job
    source = _SOURCES.get(config.name)
    if source is None or source.config != config:
        source = _SOURCES[config.name] = make_source(config, ctx)
    base = Written(seq=seq, source=config.name, name=name, split=task.split, copies=task.copies)
    try:
        example = source.load(task)
    except SkipItem as e:  # EmptyItem and CrowdItem too, told apart by their kind
        base.skip, base.skip_kind = (e.file, e.reason), e.kind
        return base
    except InputError as e:
        base.skip, base.skip_kind = (e.path, e.problem), "bad"
        return base
    except Exception as e:  # a bug or an odd file must not cost the rest of a long build; it is listed
        base.skip, base.skip_kind = (str(task.key), f"unexpected error ({type(e).__name__}: {e})"), "bad"
        return base
    written = write_example(example, root, seq, config.name, name, task.split)
    written.copies = task.copies
    return written


def _pool(workers: int):
    """Worker processes started from a clean server process (``forkserver``): forking this process itself, with
    its threads (progress bar, OpenCV, torch), can deadlock a child. The server imports the heavy modules once
    (masks.mask_to_polygon joins multi-part masks with Ultralytics' ``merge_multi_segment``, which imports
    torch), so workers start in milliseconds. Windows has no fork: ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        mp = multiprocessing.get_context("forkserver")
        mp.set_forkserver_preload(["animeseg.data.build", "animeseg.data.workers_preload"])
    else:
        mp = multiprocessing.get_context("spawn")
    return mp.Pool(workers, initializer=_worker_init)


# --------------------------------------------------------------------------------------------------- helpers
def _versions() -> dict[str, str]:
    out = {"animeseg": __version__, "python": platform.python_version()}
    for name, module in PACKAGES.items():
        out[name] = installed_version(module) or "not installed"
    return out


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _check_out(cfg: DatasetConfig, out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output that would mix with or destroy other files."""
    if out.exists() and not out.is_dir():
        raise AnimesegError(f"{out}: output exists and is not a folder")
    for s in cfg.sources:
        for k, v in s.options.items():
            if isinstance(v, Path) and _inside(v, out):
                raise ConfigError(cfg.path, f"{s.key}.{k}", f"{v} is inside the output folder {out}")
    if _inside(cfg.path, out):
        raise ConfigError(cfg.path, "out", f"the output folder {out} holds the config file itself")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise AnimesegError(f"{out}: output folder exists and is not empty; pass --overwrite to replace it")
        if not (out / "manifest.json").is_file():
            raise AnimesegError(
                f"{out}: not a dataset built by animeseg (no manifest.json), so --overwrite will not delete it; "
                "remove it yourself or choose another output folder"
            )


def _swap(tmp: Path, out: Path) -> None:
    """Move the finished build into place, replacing a previous one only now."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _select(cfg: DatasetConfig, only: list[str] | None) -> list:
    if not only:
        return list(cfg.sources)
    names = [s.name for s in cfg.sources]
    for n in only:
        if n not in names:
            raise ConfigError(cfg.path, "--only", f"no source named {n!r} (sources: {', '.join(names)})")
    return [s for s in cfg.sources if s.name in only]


def _data_yaml(out: Path, names: list[str], has_val: bool) -> str:
    spec = {
        "path": str(out),
        "train": "images/train",
        "val": "images/val" if has_val else "images/train",
        "names": dict(enumerate(names)),
    }
    head = "# Written by `animeseg data build`; what went in: manifest.json, provenance.jsonl.\n"
    if not has_val:
        head += "# No validation images were written (val_fraction 0 or too few items): val uses train.\n"
    return head + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------------------------ build
def build_dataset(
    config: str | Path,
    out: str | Path | None = None,
    only: list[str] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Build the dataset described by ``config`` and return its manifest (also written to ``manifest.json``).

    Args:
        config: path of a ``datasets.yaml``.
        out: output folder (default: the config's ``out``).
        only: build only these source names.
        workers: processes that make examples (1: in this process).
        overwrite: replace an existing dataset folder (one with a ``manifest.json``).
        on_progress: receives a :class:`~animeseg.progress.Step` per item made, one task per source.

    Raises :class:`ConfigError` for a bad config and :class:`AnimesegError` for an output folder that is in the
    way, both before any work. Bad data files are skipped, logged as warnings and listed in the manifest.
    """
    cfg = load_config(config)
    out = Path(out).expanduser().resolve() if out is not None else cfg.out
    chosen = _select(cfg, only)
    _check_out(cfg, out, overwrite)
    ctx = BuildContext.of(cfg)
    digest = config_hash(cfg)
    workers = max(1, int(workers))

    # List every source first: a source that cannot be listed stops the build before anything is written.
    listings: list[tuple[Source, Listing]] = []
    for i, s in enumerate(chosen):
        report(on_progress, Step("list", i, len(chosen), f"listing {s.name}"))
        source = make_source(s, ctx)
        try:
            listing = source.tasks()
        except InputError as e:  # an annotation file that does not parse: the source is skipped, listed
            listing = Listing([], skipped=[(e.path, e.problem)])
        listings.append((source, listing))
    report(on_progress, Step("list", len(chosen), len(chosen), "sources listed"))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    writer = DatasetWriter(tmp, cfg.classes, cfg.seed)
    pool = None
    try:
        if workers > 1:
            pool = _pool(workers)
        for source, listing in listings:
            tally = SourceTally(source.name, source.type, source.options)
            writer.start_source(tally, len(listings))
            for f, r in tally.add_listing(listing):
                logger.warning(f"{f}: {r}")
            tasks = listing.tasks
            width = max(6, len(str(len(tasks))))
            jobs = ((source.config, ctx, tmp, i, f"{source.name}_{i:0{width}d}", t) for i, t in enumerate(tasks))
            label = f"{source.name} ({source.type})"
            report(on_progress, Step(source.name, 0, len(tasks), label))
            if pool is None:
                results = map(_run, jobs)
            else:
                results = pool.imap(_run, jobs, chunksize=max(1, min(8, len(tasks) // (workers * 16))))
            for done, written in enumerate(results, 1):
                for f, r in writer.add(written):
                    logger.warning(f"{f}: {r}")
                report(on_progress, Step(source.name, done, len(tasks), label))
        if pool is not None:
            pool.close()
            pool.join()
            pool = None
        manifest = _finish(cfg, out, tmp, writer, chosen, only, workers, digest)
        _swap(tmp, out)
    except BaseException:
        if pool is not None:
            pool.terminate()
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _finish(cfg, out, tmp, writer: DatasetWriter, chosen, only, workers, digest) -> dict[str, Any]:
    info = {
        "description": f"built by animeseg {__version__} from {cfg.path.name}",
        "config_hash": digest,
        "seed": cfg.seed,
        "date_created": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    writer.close(info)
    tallies = [writer.tallies[s.name].manifest() for s in chosen if s.name in writer.tallies]
    images = {s: sum(t["images"][s] for t in tallies) for s in SPLITS}
    instances = {s: sum(t["instances"][s] for t in tallies) for s in SPLITS}
    write_text(tmp / "data.yaml", _data_yaml(out, cfg.classes, images["val"] > 0))
    preview = render_preview(tmp, writer.preview_samples())
    if preview is not None:
        write_image(tmp / "preview.jpg", preview, quality=90)
    manifest = {
        "animeseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": str(cfg.path),
        "config_hash": digest,
        "seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
        "imgsz": cfg.imgsz,
        "classes": cfg.classes,
        "out": str(out),
        "only": list(only) if only else None,
        "workers": workers,
        "versions": _versions(),
        "images": images,
        "instances": instances,
        "sources": tallies,
    }
    write_json(tmp / "manifest.json", manifest, indent=2)
    return manifest
