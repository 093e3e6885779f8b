"""Fine-tune a YOLOv8-seg model on an animeseg dataset, offline, resumable, with the study's defaults.

Ultralytics does the training; this module decides what it is given and what is kept afterwards:

* the dataset (:mod:`animeseg.train.data`): a ``data.yaml`` is used as it is; a ``datasets.yaml`` build config is
  built first, or its built copy reused when that copy's manifest carries the same ``config_hash``;
* the arguments (:mod:`animeseg.train.args`): the reference study's defaults (batch auto, optimizer auto, lr0
  0.01, momentum 0.937, weight decay 5e-4, dropout 0), absolute run folders, ``amp=False`` on CPU, any further
  Ultralytics train argument passed through as it is;
* the network: none. Model files are checked before Ultralytics sees them (``animeseg.yolo``), and on a GPU the
  AMP check, which would download ``yolo26n.pt``, is replaced by an offline one
  (:func:`animeseg.train.amp.offline_check_amp`, installed by :class:`animeseg.train.trainer.AnimesegTrainer`);
* the result: the best weights copied into ``weights/`` next to a JSON sidecar (dataset manifest hash, train
  arguments, final metrics, package versions), returned as a :class:`TrainResult`.

Importing this module imports neither Ultralytics nor torch; :func:`train` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animeseg.errors import AnimesegError, InputError
from animeseg.io import write_json
from animeseg.progress import ProgressCallback, Step, logger, report
from animeseg.train.amp import offline_check_amp
from animeseg.train.args import (
    DDP_BATCH_PER_GPU,
    MANAGED_ARGS,
    STUDY_DEFAULTS,
    check_extra,
    gpu_count,
    parse_extra,
    train_arguments,
)
from animeseg.train.data import ResolvedData, is_yolo_data_yaml, resolve_data
from animeseg.train.result import TrainResult, copy_weights, default_weights_dir
from animeseg.train.sidecar import device_name, final_metrics, jsonable, package_versions, results_rows
from animeseg.weights import sha256_file
from animeseg.yolo import WEIGHTS_HINT, is_model_config, load_yolo, resolve_model

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------------------ model
def scratch_model(model: str | Path) -> tuple[str, bool]:
    """What to build for ``--from-scratch``: ``(model to load, pretrained flag)``.

    A config is used as is. An existing weights file is loaded for its architecture only (``pretrained=False``
    makes Ultralytics build a fresh model from the checkpoint's own yaml). A missing official weights name
    (``yolov8m-seg.pt``) maps to the bundled config of the same size (``yolov8m-seg.yaml``): no file needed.
    """
    if is_model_config(model):
        return resolve_model(model), False
    path = Path(model).expanduser()
    if path.is_file():
        return resolve_model(path), False
    config = f"{path.stem}.yaml"
    try:
        return resolve_model(config), False
    except AnimesegError:
        raise AnimesegError(
            f"{model}: not found, and {config} is not an architecture bundled with Ultralytics; "
            "pass an architecture file such as yolov8m-seg.yaml with --from-scratch"
        ) from None


# ------------------------------------------------------------------------------------------------ offline AMP
# ------------------------------------------------------------------------------------------------ runs
def latest_checkpoint(project: Path, name: str | None = None) -> Path:
    """``last.pt`` of run ``project/name``, or of the most recently written run under ``project``."""
    if name:
        last = project / name / "weights" / "last.pt"
        if not last.is_file():
            raise InputError(last, "no checkpoint to resume (is --project/--name the interrupted run?)")
        return last
    runs = sorted(project.glob("*/weights/last.pt"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise InputError(project, "no run with weights/last.pt to resume; pass --name or --model path/to/last.pt")
    return runs[-1]


def default_run_name(model: str | Path, data_yaml: Path) -> str:
    """``<model stem>-<dataset folder>``, e.g. ``yolov8m-seg-mix1``."""
    return f"{Path(str(model)).stem}-{data_yaml.parent.name}"


@contextmanager
def _ultralytics_logging(verbose: bool) -> Iterator[None]:
    """Ultralytics' warnings always, its full log and batch bars with ``verbose``; restored afterwards."""
    import logging

    import ultralytics.utils as U

    level = logging.INFO if verbose else logging.WARNING
    old_level, old_verbose, old_env = U.LOGGER.level, U.VERBOSE, os.environ.get("YOLO_VERBOSE")
    os.environ["YOLO_VERBOSE"] = str(verbose).lower()  # for processes Ultralytics starts (DDP workers)
    handlers = [(h, h.level) for h in U.LOGGER.handlers]
    U.LOGGER.setLevel(level)
    for h, _ in handlers:
        h.setLevel(level)
    U.VERBOSE = verbose
    try:
        yield
    finally:
        U.LOGGER.setLevel(old_level)
        for h, lvl in handlers:
            h.setLevel(lvl)
        U.VERBOSE = old_verbose
        if old_env is None:
            os.environ.pop("YOLO_VERBOSE", None)
        else:
            os.environ["YOLO_VERBOSE"] = old_env


def _epoch_progress(model: Any, on_progress: ProgressCallback) -> None:
    """Report epochs to ``on_progress`` through Ultralytics callbacks (task ``train``, the mask mAP in ``info``)."""

    def on_train_start(trainer: Any) -> None:
        report(on_progress, Step("train", int(trainer.start_epoch), int(trainer.epochs), "training"))

    def on_fit_epoch_end(trainer: Any) -> None:
        done = min(trainer.epoch + 1, trainer.epochs)
        m = (trainer.metrics or {}).get("metrics/mAP50-95(M)")
        info = {} if m is None else {"mask mAP50-95": round(float(m), 3)}
        report(on_progress, Step("train", int(done), int(trainer.epochs), f"epoch {done}/{trainer.epochs}", info))

    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)


# ------------------------------------------------------------------------------------------------ train
def train(
    data: str | Path | None,
    model: str | Path = "yolov8m-seg.pt",
    *,
    epochs: int | None = None,
    imgsz: int | None = None,
    batch: float | None = None,
    device: str | None = None,
    project: str | Path = "runs/train",
    name: str | None = None,
    resume: bool = False,
    from_scratch: bool = False,
    optimizer: str | None = None,
    lr0: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    dropout: float | None = None,
    extra: dict[str, Any] | None = None,
    weights_dir: str | Path | None = None,
    callbacks: dict[str, Callable[[Any], None] | list[Callable[[Any], None]]] | None = None,
    verbose: bool = False,
    workers: int = 1,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train (or resume training) a YOLO segmentation model; returns the best weights copied into ``weights_dir``
    with their sidecar (:class:`TrainResult`).

    Args:
        data: a built dataset's ``data.yaml`` (or its folder), any Ultralytics segmentation ``data.yaml``, or a
            ``datasets.yaml`` build config (built first, or reused when already built from the same config).
            With ``resume`` it may be None: the run's own dataset is used.
        model: weights (``.pt``) to fine-tune, or an architecture (``yolov8n-seg.yaml``) to train from random
            weights. With ``resume``, a ``last.pt`` checkpoint may be given here instead of ``project``/``name``.
        epochs, imgsz, batch, device, optimizer, lr0, momentum, weight_decay, dropout: Ultralytics arguments;
            None keeps the study default (:data:`STUDY_DEFAULTS`) or Ultralytics' own.
        project, name: the run folder ``project/name`` (made absolute; Ultralytics adds 2, 3... when it exists).
        resume: continue the interrupted run ``project/name`` (the latest run under ``project`` without a name).
        from_scratch: same architecture as ``model``, no pretrained weights.
        extra: any further Ultralytics train arguments (``{"mosaic": 0.5, "plots": False}``).
        weights_dir: where the best weights and their ``.json`` sidecar are copied (default: see
            :func:`default_weights_dir`).
        callbacks: Ultralytics callbacks to add, ``{event: fn or [fn, ...]}``.
        verbose: show Ultralytics' own log and per-batch progress.
        workers: worker processes when a ``datasets.yaml`` has to be built.
        on_progress: receives a :class:`~animeseg.progress.Step` per epoch (task ``train``) and the dataset build's
            steps; not called on several GPUs (DDP workers would have to unpickle it).
    """
    from animeseg.train.trainer import AnimesegTrainer

    project = Path(project).expanduser().resolve()
    started = datetime.now(timezone.utc)
    if resume:
        plan = _plan_resume(data, model, project, name, imgsz=imgsz, batch=batch, device=device, extra=extra)
    else:
        if data is None:
            raise AnimesegError("--data is required (unless --resume)")
        resolved = resolve_data(data, workers, on_progress)
        args = train_arguments(
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            device=device,
            optimizer=optimizer,
            lr0=lr0,
            momentum=momentum,
            weight_decay=weight_decay,
            dropout=dropout,
            extra=extra,
        )
        if from_scratch:
            to_load, args["pretrained"] = scratch_model(model)
        else:
            to_load = resolve_model(model)
        run_name = name or default_run_name(model, resolved.data_yaml)
        kwargs = {**args, "data": str(resolved.data_yaml), "project": str(project), "name": run_name}
        plan = _Plan(load_yolo(to_load), kwargs, resolved, str(model), from_scratch)

    yolo = plan.yolo
    for event, fns in (callbacks or {}).items():
        for fn in fns if isinstance(fns, (list, tuple)) else [fns]:
            yolo.add_callback(event, fn)
    ddp = gpu_count(plan.device) > 1
    # DDP workers unpickle the callbacks: a live progress callback cannot travel, Ultralytics' own log shows instead
    if on_progress is not None and not ddp:
        _epoch_progress(yolo, on_progress)
    try:
        with _ultralytics_logging(verbose or ddp):
            yolo.train(trainer=AnimesegTrainer, **plan.kwargs)
    except AssertionError as e:
        if resume and "nothing to resume" in str(e):
            raise AnimesegError(f"{plan.checkpoint}: this run already finished all its epochs") from None
        raise
    except FileNotFoundError as e:
        raise AnimesegError(f"training could not start: {e}") from None
    return _finish(yolo.trainer, plan, weights_dir, started)


@dataclass
class _Plan:
    """What is handed to Ultralytics, and what the sidecar says about it."""

    yolo: Any
    kwargs: dict[str, Any]
    data: ResolvedData
    model_label: str
    from_scratch: bool
    checkpoint: Path | None = None
    saved_device: str | None = None

    @property
    def device(self) -> str | None:
        device = self.kwargs.get("device", self.saved_device)
        return None if device is None else str(device)


def _plan_resume(
    data: str | Path | None,
    model: str | Path,
    project: Path,
    name: str | None,
    *,
    imgsz: int | None,
    batch: float | None,
    device: str | None,
    extra: dict[str, Any] | None,
) -> _Plan:
    """Resume ``last.pt`` (``model`` if it is one, else run ``project/name``, else the latest run)."""
    model_path = Path(str(model)).expanduser()
    if model_path.suffix == ".pt" and model_path.is_file() and model_path.name != "best.pt" and not name:
        last = model_path.resolve()
    else:
        last = latest_checkpoint(project, name)
    check_extra(extra or {})
    resolved = resolve_data(data) if data is not None else None
    yolo = load_yolo(last)
    ckpt = getattr(yolo, "ckpt", None) or {}
    ckpt_args = ckpt.get("train_args") or {}
    # From a finished (stripped) checkpoint Ultralytics quietly starts a NEW run with default arguments; refuse.
    if ckpt.get("epoch", -1) < 0 or ckpt.get("optimizer") is None:
        raise AnimesegError(f"{last}: this run already finished all its epochs; nothing to resume")
    if resolved is None:
        ckpt_data = ckpt_args.get("data")
        if not ckpt_data or not Path(ckpt_data).is_file():
            raise InputError(last, f"its dataset {ckpt_data!r} is gone; pass --data to point at it")
        resolved = resolve_data(ckpt_data)
    kwargs: dict[str, Any] = {"resume": True, "data": str(resolved.data_yaml)}
    for key, value in {"imgsz": imgsz, "batch": batch, "device": device, **(extra or {})}.items():
        if value is not None:
            kwargs[key] = value
    logger.info(f"Resuming {last}")
    return _Plan(
        yolo,
        kwargs,
        resolved,
        str(ckpt_args.get("model", last)),
        ckpt_args.get("pretrained") is False,
        checkpoint=last,
        saved_device=ckpt_args.get("device"),
    )


def _finish(trainer: Any, plan: _Plan, weights_dir: str | Path | None, started: datetime) -> TrainResult:
    """Copy the best weights and write their sidecar."""
    save_dir = Path(trainer.save_dir)
    best = Path(trainer.best if Path(trainer.best).is_file() else trainer.last)
    if not best.is_file():
        raise AnimesegError(f"{save_dir}: training ended without writing weights")
    folder = Path(weights_dir).expanduser().resolve() if weights_dir is not None else default_weights_dir()
    out = copy_weights(best, folder, save_dir.name)
    sidecar = {
        "weights": out.name,
        "weights_sha256": sha256_file(out),
        "architecture": "yolo",
        "run": str(save_dir),
        "model": plan.model_label,
        "from_scratch": bool(plan.from_scratch),
        "resumed": plan.checkpoint is not None,
        "dataset": plan.data.fingerprint(),
        "names": jsonable(getattr(trainer, "data", {}).get("names", {})),
        "train_args": jsonable(vars(trainer.args)),
        "epochs_completed": len(results_rows(save_dir)),
        "metrics": final_metrics(trainer, best),
        "versions": package_versions(),
        "device": device_name(trainer),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out.with_suffix(".json"), sidecar, indent=2)
    return TrainResult(out, sidecar, save_dir)


__all__ = [
    "STUDY_DEFAULTS",
    "DDP_BATCH_PER_GPU",
    "MANAGED_ARGS",
    "TrainResult",
    "ResolvedData",
    "WEIGHTS_HINT",
    "offline_check_amp",
    "check_extra",
    "is_yolo_data_yaml",
    "parse_extra",
    "resolve_data",
    "train",
    "train_arguments",
]
