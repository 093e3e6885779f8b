"""Fine-tune a YOLOv8-seg model on an animeseg dataset, offline, resumable, with the study's defaults.

Ultralytics does the training; this module decides what it is given and what is kept afterwards:

* the dataset: a ``data.yaml`` is used as it is; a ``datasets.yaml`` build config is built first, or its built
  copy reused when that copy's manifest carries the same ``config_hash``;
* the arguments: the reference study's defaults (batch auto, optimizer auto, lr0 0.01, momentum 0.937,
  weight decay 5e-4, dropout 0), absolute run folders, ``amp=False`` on CPU, any further Ultralytics train
  argument passed through as it is;
* the network: none. Model files are checked before Ultralytics sees them (``animeseg.yolo``), and on a GPU the
  AMP check, which would download ``yolo26n.pt``, is replaced by an offline one (:func:`offline_check_amp`);
* the result: the best weights copied into ``weights/`` next to a JSON sidecar (dataset manifest hash, train
  arguments, final metrics, package versions), and a summary table.

Importing this module imports Ultralytics (the trainer subclass must be importable by name: multi-GPU workers
unpickle it in fresh processes).
"""

from __future__ import annotations

import csv
import difflib
import importlib.metadata
import json
import os
import platform
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from animeseg._offline import import_ultralytics
from animeseg.console import console, progress, summary_table, warn
from animeseg.errors import AnimesegError, ConfigError, InputError
from animeseg.io import atomic_path, write_json
from animeseg.weights import sha256_file
from animeseg.yolo import WEIGHTS_HINT, is_model_config, load_yolo, resolve_model

import_ultralytics()

import torch  # noqa: E402  (after the offline set-up, like everything Ultralytics)
from ultralytics.models.yolo.segment import SegmentationTrainer  # noqa: E402

#: The reference study's training arguments; everything else is Ultralytics' default.
STUDY_DEFAULTS: dict[str, Any] = {
    "batch": -1,  # AutoBatch (single GPU); Ultralytics uses 16 on CPU
    "optimizer": "auto",
    "lr0": 0.01,
    "momentum": 0.937,
    "weight_decay": 5e-4,
    "dropout": 0.0,
}

#: Arguments animeseg sets itself; passing them through ``extra`` would silently fight the named options.
MANAGED_ARGS = frozenset({"data", "model", "mode", "task", "resume", "project", "name", "save_dir"})

#: Batch size per GPU when AutoBatch is asked for on several GPUs (Ultralytics' AutoBatch is single-GPU only).
DDP_BATCH_PER_GPU = 16

#: GPUs Ultralytics' own AMP check refuses (NaN losses with float16); kept identical to ``check_amp``.
_AMP_BAD_GPUS = re.compile(
    r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.IGNORECASE
)


# ------------------------------------------------------------------------------------------------ dataset
@dataclass
class ResolvedData:
    """The YOLO ``data.yaml`` to train on and, for a built dataset, its manifest."""

    data_yaml: Path
    manifest: dict[str, Any] | None
    manifest_path: Path | None
    built_now: bool = False

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the training data in a weights sidecar."""
        return {
            "data_yaml": str(self.data_yaml),
            "data_yaml_sha256": sha256_file(self.data_yaml) if self.data_yaml.is_file() else None,
            "manifest": str(self.manifest_path) if self.manifest_path else None,
            "manifest_sha256": sha256_file(self.manifest_path) if self.manifest_path else None,
            "config_hash": (self.manifest or {}).get("config_hash"),
        }


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, "", f"not valid YAML ({str(e).splitlines()[0]})") from None


def is_yolo_data_yaml(doc: Any) -> bool:
    """True for an Ultralytics dataset file (``train``/``val`` + ``names``), as opposed to a build config."""
    return isinstance(doc, dict) and "train" in doc and ("names" in doc or "nc" in doc)


def _manifest_next_to(data_yaml: Path) -> tuple[dict[str, Any] | None, Path | None]:
    path = data_yaml.parent / "manifest.json"
    if not path.is_file():
        return None, None
    try:
        return json.loads(path.read_text(encoding="utf-8")), path
    except (OSError, ValueError):
        warn(f"{path}: unreadable manifest, the weights sidecar will not carry its hash")
        return None, None


def resolve_data(data: str | Path, workers: int = 1) -> ResolvedData:
    """Turn ``--data`` into a ``data.yaml``: a dataset folder, a ``data.yaml``, or a ``datasets.yaml`` to build.

    A build config is built with :func:`animeseg.data.build.build_dataset` unless its output folder already holds
    a ``manifest.json`` with the config's current hash (then the built copy is reused as it is).
    """
    path = Path(data).expanduser().resolve()
    if path.is_dir():
        for candidate in ("data.yaml", "datasets.yaml"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise InputError(path, "folder holds neither data.yaml (a built dataset) nor datasets.yaml (a config)")
    if not path.is_file():
        raise InputError(path, "no such dataset file")
    doc = _load_yaml(path)
    if is_yolo_data_yaml(doc):
        manifest, manifest_path = _manifest_next_to(path)
        return ResolvedData(path, manifest, manifest_path)
    return _build_or_reuse(path, workers)


def _build_or_reuse(config: Path, workers: int) -> ResolvedData:
    try:
        from animeseg.data.build import build_dataset
        from animeseg.data.config import config_hash, load_config
    except ImportError as e:
        raise AnimesegError(f"{config}: cannot build datasets in this installation ({e})") from None
    cfg = load_config(config)
    out = Path(getattr(cfg, "out", None) or config.parent / "dataset").resolve()
    manifest_path = out / "manifest.json"
    wanted = config_hash(config)
    if manifest_path.is_file() and (out / "data.yaml").is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        if manifest.get("config_hash") == wanted:
            console.print(f"Reusing the built dataset {out} (config hash {wanted[:12]} unchanged)")
            return ResolvedData(out / "data.yaml", manifest, manifest_path)
        console.print(f"{out}: built from another version of {config.name}; rebuilding")
    manifest = build_dataset(config, workers=workers, overwrite=True)
    out = Path(manifest.get("out", out)).resolve()
    return ResolvedData(out / "data.yaml", manifest, out / "manifest.json", built_now=True)


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
def offline_check_amp(model: torch.nn.Module) -> bool:
    """Ultralytics' ``check_amp`` without its download: whether to train this model with mixed precision.

    The original compares FP32 and AMP detections of ``yolo26n.pt``, fetching it from GitHub when missing. We run
    it only when that file is already on disk; otherwise we keep its GPU blacklist and answer like its own
    offline branch does (AMP on), saying so.
    """
    from ultralytics.utils import LOGGER, WEIGHTS_DIR
    from ultralytics.utils.checks import check_amp

    device = next(model.parameters()).device
    if device.type in {"cpu", "mps"}:
        return False
    if (Path(WEIGHTS_DIR) / "yolo26n.pt").is_file():
        return check_amp(model)
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
        if _AMP_BAD_GPUS.search(gpu):
            LOGGER.warning(f"AMP: {gpu} is known to give NaN losses with AMP; training in FP32.")
            return False
    LOGGER.info(
        "AMP: check skipped (offline, its reference model is not on disk); training with AMP. "
        "Pass --arg amp=False if losses become NaN."
    )
    return True


def _amp_check(model: torch.nn.Module) -> bool:
    return offline_check_amp(model)  # looked up at call time, so tests can observe it


class AnimesegTrainer(SegmentationTrainer):
    """Ultralytics' segmentation trainer with the AMP check kept offline.

    It lives at module level so that multi-GPU workers, which unpickle the trainer class by name in new
    processes, get the same behaviour.
    """

    def _setup_train(self):
        import ultralytics.engine.trainer as engine

        if self.device.type == "cpu":
            # Ultralytics trains on one thread fewer than the cores (one thread on a 2-core laptop): half speed.
            torch.set_num_threads(os.cpu_count() or 1)
        original = engine.check_amp
        engine.check_amp = _amp_check
        try:
            return super()._setup_train()
        finally:
            engine.check_amp = original


# ------------------------------------------------------------------------------------------------ arguments
def parse_extra(pairs: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as YAML (``0.5``, ``true``, ``[0, 1]``, ``SGD``)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AnimesegError(f"--arg {pair!r}: expected key=value, e.g. --arg mosaic=0.5")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key] = value
    return out


def check_extra(extra: dict[str, Any]) -> None:
    """Refuse pass-through keys Ultralytics does not know, and the ones animeseg manages itself."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    for key in extra:
        if key in MANAGED_ARGS:
            raise AnimesegError(f"--arg {key}=...: set by animeseg; use the --{key.replace('_', '-')} option instead")
        if key not in DEFAULT_CFG_DICT:
            close = difflib.get_close_matches(key, DEFAULT_CFG_DICT, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise AnimesegError(f"--arg {key}=...: not an Ultralytics train argument{hint}")


def _is_cpu(device: str | None) -> bool:
    if device is None or str(device).strip() == "":
        return not torch.cuda.is_available()
    return str(device).strip().lower() in {"cpu", "mps"}


def _gpu_count(device: str | None) -> int:
    if device is None or _is_cpu(device):
        return 0 if _is_cpu(device) else 1
    return len([d for d in str(device).split(",") if d.strip()])


def train_arguments(
    *,
    epochs: int | None,
    imgsz: int | None,
    batch: float | None,
    device: str | None,
    optimizer: str | None,
    lr0: float | None,
    momentum: float | None,
    weight_decay: float | None,
    dropout: float | None,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """The Ultralytics train arguments: study defaults, then named options, then pass-through ``extra``.

    A named option and an ``extra`` key for the same argument is an error (which one was meant?). Warns once when
    ``lr0`` (or ``momentum``) is set while the optimizer stays ``auto``, because Ultralytics then ignores it.
    """
    extra = dict(extra or {})
    check_extra(extra)
    named = {
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "device": device,
        "optimizer": optimizer,
        "lr0": lr0,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "dropout": dropout,
    }
    for key, value in named.items():
        if value is not None and key in extra:
            raise AnimesegError(f"--{key.replace('_', '-')} and --arg {key}=... both given; keep one")
    args = {**STUDY_DEFAULTS, **{k: v for k, v in named.items() if v is not None}, **extra}
    if isinstance(args.get("batch"), float) and args["batch"].is_integer():
        args["batch"] = int(args["batch"])
    # optimizer=auto picks the optimizer, lr0 and momentum itself: a value the user set would silently vanish
    ignored = [k for k in ("lr0", "momentum") if named[k] is not None or k in extra]
    if ignored and str(args.get("optimizer", "auto")).lower() == "auto":
        values = ", ".join(f"{k}={args[k]}" for k in ignored)
        warn(
            f"{values}: no effect with optimizer=auto (Ultralytics then chooses the optimizer, its learning rate "
            "and momentum itself); pass --optimizer SGD or AdamW to use them"
        )
    dev = args.get("device")
    if _is_cpu(None if dev is None else str(dev)):
        args.setdefault("amp", False)  # nothing to check on CPU; also keeps the check from running at all
    gpus = _gpu_count(None if dev is None else str(dev))
    if gpus > 1:
        try:
            import cloudpickle  # noqa: F401  (Ultralytics pickles the trainer for its DDP workers with it)
        except ImportError:
            raise AnimesegError(
                f"device={dev}: training on several GPUs needs the cloudpickle package (pip install cloudpickle)"
            ) from None
        if float(args["batch"]) < 1:
            args["batch"] = DDP_BATCH_PER_GPU * gpus
            console.print(
                f"AutoBatch works on one GPU only; using batch={args['batch']} ({DDP_BATCH_PER_GPU} per GPU). "
                "Set --batch to choose."
            )
        elif int(args["batch"]) % gpus:
            raise AnimesegError(f"--batch {args['batch']} must be a multiple of the {gpus} GPUs in --device {dev}")
    return args


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


def _epoch_progress(model: Any) -> Any:
    """A rich bar over epochs, fed by Ultralytics callbacks; returns the Progress (caller stops it)."""
    bar = progress()
    state: dict[str, Any] = {}

    def on_train_start(trainer: Any) -> None:
        state["task"] = bar.add_task("training", total=trainer.epochs, completed=trainer.start_epoch)

    def on_fit_epoch_end(trainer: Any) -> None:
        if "task" not in state:
            return
        metrics = trainer.metrics or {}
        m = metrics.get("metrics/mAP50-95(M)")
        desc = f"epoch {min(trainer.epoch + 1, trainer.epochs)}/{trainer.epochs}"
        if m is not None:
            desc += f" mask mAP50-95 {float(m):.3f}"
        bar.update(state["task"], completed=min(trainer.epoch + 1, trainer.epochs), description=desc)

    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    bar.start()
    return bar


def package_versions() -> dict[str, str | None]:
    """Versions that decide what a trained model is, for the sidecar."""
    import animeseg

    out: dict[str, str | None] = {"python": platform.python_version(), "animeseg": animeseg.__version__}
    for dist in ("ultralytics", "torch", "torchvision", "numpy", "opencv-python", "pycocotools"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["torch"] = torch.__version__  # keeps the build tag (+cu130, +cpu)
    out["cuda"] = torch.version.cuda
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    return str(value)


def _results_rows(save_dir: Path) -> list[dict[str, str]]:
    path = save_dir / "results.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def _final_metrics(trainer: Any, best: Path) -> dict[str, float]:
    """Metrics of the best weights: the final validation in this process, else the checkpoint's (DDP)."""
    metrics = getattr(trainer, "metrics", None)
    if not isinstance(metrics, dict) or not any(k.startswith("metrics/") for k in metrics):
        try:
            metrics = torch.load(best, map_location="cpu", weights_only=False).get("train_metrics") or {}
        except Exception:
            metrics = {}
    return {k: round(float(v), 6) for k, v in metrics.items() if k.startswith("metrics/") or k == "fitness"}


def default_weights_dir() -> Path:
    """The folder ``predict`` looks in first (``animeseg.weights``: ``$ANIMESEG_WEIGHTS``, the checkout's
    ``weights/``, else ``./weights``); ``./weights`` where that module is not installed."""
    try:
        from animeseg.weights import weights_dir
    except ImportError:
        return (Path.cwd() / "weights").resolve()
    return Path(weights_dir()).expanduser().resolve()


def _copy_weights(best: Path, weights_dir: Path, run_name: str) -> Path:
    dst = weights_dir / f"animeseg-{run_name}.pt"
    with atomic_path(dst) as tmp:
        shutil.copyfile(best, tmp)
    return dst


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
) -> Path:
    """Train (or resume training) a YOLO segmentation model; returns the best weights copied into ``weights_dir``.

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
    """
    project = Path(project).expanduser().resolve()
    started = datetime.now(timezone.utc)
    if resume:
        plan = _plan_resume(data, model, project, name, imgsz=imgsz, batch=batch, device=device, extra=extra)
    else:
        if data is None:
            raise AnimesegError("--data is required (unless --resume)")
        resolved = resolve_data(data, workers)
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
    ddp = _gpu_count(plan.device) > 1
    # DDP workers unpickle the callbacks: a live progress bar cannot travel, Ultralytics' own log is shown instead
    bar = None if ddp else _epoch_progress(yolo)
    try:
        with _ultralytics_logging(verbose or ddp):
            yolo.train(trainer=AnimesegTrainer, **plan.kwargs)
    except AssertionError as e:
        if resume and "nothing to resume" in str(e):
            raise AnimesegError(f"{plan.checkpoint}: this run already finished all its epochs") from None
        raise
    except FileNotFoundError as e:
        raise AnimesegError(f"training could not start: {e}") from None
    finally:
        if bar is not None:
            bar.stop()
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
    console.print(f"Resuming {last}")
    return _Plan(
        yolo,
        kwargs,
        resolved,
        str(ckpt_args.get("model", last)),
        ckpt_args.get("pretrained") is False,
        checkpoint=last,
        saved_device=ckpt_args.get("device"),
    )


def _finish(trainer: Any, plan: _Plan, weights_dir: str | Path | None, started: datetime) -> Path:
    """Copy the best weights, write their sidecar, print the summary; returns the copied weights."""
    save_dir = Path(trainer.save_dir)
    best = Path(trainer.best if Path(trainer.best).is_file() else trainer.last)
    if not best.is_file():
        raise AnimesegError(f"{save_dir}: training ended without writing weights")
    folder = Path(weights_dir).expanduser().resolve() if weights_dir is not None else default_weights_dir()
    out = _copy_weights(best, folder, save_dir.name)
    sidecar = {
        "weights": out.name,
        "weights_sha256": sha256_file(out),
        "run": str(save_dir),
        "model": plan.model_label,
        "from_scratch": bool(plan.from_scratch),
        "resumed": plan.checkpoint is not None,
        "dataset": plan.data.fingerprint(),
        "names": _jsonable(getattr(trainer, "data", {}).get("names", {})),
        "train_args": _jsonable(vars(trainer.args)),
        "epochs_completed": len(_results_rows(save_dir)),
        "metrics": _final_metrics(trainer, best),
        "versions": package_versions(),
        "device": _device_name(trainer),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out.with_suffix(".json"), sidecar, indent=2)
    _print_summary(out, save_dir, sidecar)
    return out


def _device_name(trainer: Any) -> str:
    device = getattr(trainer, "device", None)
    if device is not None and getattr(device, "type", "") == "cuda" and torch.cuda.is_available():
        return f"{trainer.args.device}: {torch.cuda.get_device_name(device)}"
    return str(getattr(trainer.args, "device", "cpu") or "cpu")


def _print_summary(weights: Path, save_dir: Path, sidecar: dict[str, Any]) -> None:
    m = sidecar["metrics"]
    rows = [
        ("weights", str(weights)),
        ("sidecar", str(weights.with_suffix(".json"))),
        ("run folder", str(save_dir)),
        ("epochs completed", sidecar["epochs_completed"]),
        ("mask mAP50-95", m.get("metrics/mAP50-95(M)", "n/a")),
        ("mask mAP50", m.get("metrics/mAP50(M)", "n/a")),
        ("box mAP50-95", m.get("metrics/mAP50-95(B)", "n/a")),
    ]
    console.print(summary_table("Training finished", ["", "value"], rows))


__all__ = [
    "STUDY_DEFAULTS",
    "AnimesegTrainer",
    "ResolvedData",
    "WEIGHTS_HINT",
    "offline_check_amp",
    "parse_extra",
    "resolve_data",
    "train",
    "train_arguments",
]
