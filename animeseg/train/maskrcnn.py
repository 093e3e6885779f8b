"""``animeseg train --arch maskrcnn``: fine-tune torchvision's Mask R-CNN on a built dataset with PyTorch Lightning.

* data: the same ``--data`` as YOLO training (:func:`animeseg.train.data.resolve_data`), read as the exact COCO RLE
  ground truth of its ``annotations/{train,val}.json`` (:mod:`animeseg.maskrcnn.dataset`);
* start: torchvision's official COCO checkpoint of the backbone, from the weights folder (never downloaded; one
  line says how to get it), or ``--model`` (an animeseg Mask R-CNN checkpoint or a torchvision ``.pth``), or
  random weights with ``from_scratch``;
* run folder ``project/name``: Lightning checkpoints ``checkpoints/{best,last}.ckpt`` (best by validation loss)
  and ``logs/<n>/metrics.csv`` (one per start); ``resume`` continues from ``last.ckpt`` (optimizer, scheduler,
  epoch and all);
* devices: ``--device cpu``, one GPU, or several GPUs and nodes through Lightning's DDP (``devices``,
  ``num_nodes``); mixed precision (``16-mixed``) on GPUs;
* result: the best weights as an animeseg checkpoint in the weights folder, with a JSON sidecar recording the
  architecture, as for YOLO (:class:`animeseg.train.result.TrainResult`), and their COCO mask/box AP on the val split.

Importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from animeseg.errors import AnimesegError, InputError, MissingWeightsError
from animeseg.io import write_json
from animeseg.maskrcnn.model import ARCH, BACKBONES, ModelConfig, check_backbone
from animeseg.progress import ProgressCallback, Step, logger, report
from animeseg.train.maskrcnn_runs import (
    CHECKPOINTS,
    DevicePlan,
    device_plan,
    epochs_done,
    last_checkpoint,
    load_start,
    new_run_dir,
    pretrained_file,
)

#: Defaults of a Mask R-CNN fine-tune (torchvision's detection recipe, learning rate scaled to a batch of 4).
DEFAULTS: dict[str, Any] = {"epochs": 20, "imgsz": 640, "batch": 4, "lr0": 0.005, "momentum": 0.9, "weight_decay": 1e-4}


def _lightning() -> Any:
    try:
        import lightning.pytorch as pl
    except ImportError:
        raise AnimesegError(
            "--arch maskrcnn needs PyTorch Lightning: pip install 'animeseg[maskrcnn]' (or pip install lightning)"
        ) from None
    return pl


@contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Lightning's info lines and advice warnings only with ``verbose``."""
    names = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
    old = {n: logging.getLogger(n).level for n in names}
    with warnings.catch_warnings():
        if not verbose:
            for n in names:
                logging.getLogger(n).setLevel(logging.WARNING)
            warnings.filterwarnings("ignore", module=r"lightning(\.|_).*")
            warnings.filterwarnings("ignore", message=r".*(num_workers|does not have many workers|LeafSpec).*")
        try:
            yield
        finally:
            for n, level in old.items():
                logging.getLogger(n).setLevel(level)


def _progress_callback(pl: Any, on_progress: ProgressCallback) -> Any:
    class _Progress(pl.Callback):
        def on_train_start(self, trainer: Any, module: Any) -> None:
            report(on_progress, Step("train", int(trainer.current_epoch), int(trainer.max_epochs), "training"))

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            done = int(trainer.current_epoch) + 1
            m = trainer.callback_metrics
            info = {k: round(float(m[k]), 4) for k in ("val/loss", "train/loss_epoch") if k in m}
            report(
                on_progress, Step("train", done, int(trainer.max_epochs), f"epoch {done}/{trainer.max_epochs}", info)
            )

    return _Progress()


# ------------------------------------------------------------------------------------------------ train
def train_maskrcnn(
    data: str | Path | None,
    *,
    backbone: str = "resnet50_fpn_v2",
    model: str | Path | None = None,
    epochs: int | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    device: str | None = None,
    devices: int | None = None,
    num_nodes: int = 1,
    project: str | Path = "runs/train",
    name: str | None = None,
    resume: bool = False,
    from_scratch: bool = False,
    lr0: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    amp: bool = True,
    loader_workers: int | None = None,
    weights_dir: str | Path | None = None,
    model_options: dict[str, Any] | None = None,
    evaluate_val: bool = True,
    callbacks: list[Any] | None = None,
    seed: int = 0,
    verbose: bool = False,
    workers: int = 1,
    on_progress: ProgressCallback | None = None,
) -> Any:
    """Train (or resume) a Mask R-CNN; returns a :class:`animeseg.train.result.TrainResult` (weights, sidecar, run).

    Args:
        data: a built dataset (``data.yaml``, its folder, or a ``datasets.yaml`` built first); it must hold
            ``annotations/train.json`` (and ``val.json`` for validation). With ``resume`` it may be None.
        backbone: one of :data:`~animeseg.maskrcnn.model.BACKBONES`.
        model: starting weights instead of the official COCO file (an animeseg Mask R-CNN ``.pt``, a torchvision
            ``.pth``); with ``resume``, a ``last.ckpt`` to continue.
        epochs, imgsz, batch, lr0, momentum, weight_decay: None keeps :data:`DEFAULTS` (on resume: the run's).
        device, devices, num_nodes, amp: see :func:`device_plan`.
        project, name: the run folder ``project/name`` (default name ``maskrcnn-<backbone>-<dataset folder>``).
        resume: continue from ``last.ckpt`` (see :func:`last_checkpoint`); ``epochs`` may extend the run.
        from_scratch: random initial weights (no weights file needed).
        loader_workers: DataLoader processes (default: 0 on the CPU, 4 on GPUs).
        weights_dir: where the best weights and their sidecar go (default:
            :func:`animeseg.train.result.default_weights_dir`).
        model_options: ``ModelConfig`` fields beyond backbone/imgsz/names (``width_mult``, ``options``).
        evaluate_val: score the best weights on the val split with ``animeseg eval``'s COCOeval for the sidecar.
        callbacks: further Lightning callbacks.
        workers: processes for building a ``datasets.yaml`` first.
        on_progress: receives a Step per epoch (task ``train``) and the dataset build's steps.
    """
    pl = _lightning()
    import torch

    from animeseg.maskrcnn.dataset import CocoMasks, annotations_file, collate
    from animeseg.maskrcnn.module import MaskRCNNModule
    from animeseg.train.data import resolve_data

    project = Path(project).expanduser().resolve()
    started = datetime.now(timezone.utc)
    ckpt_path: Path | None = None
    if resume:
        ckpt_path = last_checkpoint(project, name, model)
        hp = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
        saved = hp.get("train_settings") or {}
        if hp.get("arch") != ARCH or not saved:
            raise InputError(ckpt_path, "not a checkpoint of `animeseg train --arch maskrcnn`")
        done = epochs_done(ckpt_path)
        settings = {**saved, "epochs": epochs or saved["epochs"]}
        if done >= settings["epochs"]:
            raise AnimesegError(
                f"{ckpt_path}: this run already finished all its {settings['epochs']} epochs; nothing to resume "
                "(pass a larger --epochs to train on)"
            )
        data_arg = data if data is not None else settings["data"]
        run = ckpt_path.parent.parent
        logger.info(f"Resuming {ckpt_path} at epoch {done + 1}")
    else:
        if data is None:
            raise AnimesegError("--data is required (unless --resume)")
        data_arg = data
    resolved = resolve_data(data_arg, workers, on_progress)
    train_json = annotations_file(resolved.data_yaml, "train")
    has_val = (resolved.data_yaml.parent / "annotations" / "val.json").is_file()
    train_set = CocoMasks(resolved.data_yaml, "train", augment=True)
    val_set = CocoMasks(resolved.data_yaml, "val") if has_val else None
    if val_set is not None and len(val_set) == 0:
        val_set = None

    if resume:
        module = MaskRCNNModule.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
        module.hparams.train_settings = settings
        start_label = str(ckpt_path)
    else:
        settings = {
            "data": str(resolved.data_yaml),
            "backbone": check_backbone(backbone),
            "epochs": int(epochs or DEFAULTS["epochs"]),
            "imgsz": int(imgsz or DEFAULTS["imgsz"]),
            "batch": int(batch or DEFAULTS["batch"]),
            "lr0": float(lr0 if lr0 is not None else DEFAULTS["lr0"]),
            "momentum": float(momentum if momentum is not None else DEFAULTS["momentum"]),
            "weight_decay": float(weight_decay if weight_decay is not None else DEFAULTS["weight_decay"]),
            "from_scratch": bool(from_scratch),
            "seed": seed,
        }
        config = ModelConfig(backbone=backbone, names=train_set.names, imgsz=settings["imgsz"], **(model_options or {}))
        start = None if from_scratch else Path(model).expanduser() if model is not None else pretrained_file(backbone)
        if start is not None and not start.is_file():
            raise MissingWeightsError(start)
        module = MaskRCNNModule(
            config.to_dict(),
            lr0=settings["lr0"],
            momentum=settings["momentum"],
            weight_decay=settings["weight_decay"],
            freeze_bn=start is not None,
            train_settings=settings,
        )
        start_label = "from scratch (random weights)"
        if start is not None:
            copied, skipped = load_start(module.model, start)
            start_label = f"{start} ({copied} tensors copied, {skipped} skipped)"
        run = new_run_dir(project, name or f"maskrcnn-{backbone}-{resolved.data_yaml.parent.name}")

    plan = device_plan(device, devices, num_nodes, amp)
    n_workers = loader_workers if loader_workers is not None else (0 if plan.accelerator == "cpu" else 4)
    loader_kw = {"batch_size": settings["batch"], "collate_fn": collate, "num_workers": n_workers}
    if n_workers:
        loader_kw["persistent_workers"] = True
    train_loader = torch.utils.data.DataLoader(
        train_set, shuffle=True, drop_last=len(train_set) > settings["batch"], **loader_kw
    )
    val_loader = torch.utils.data.DataLoader(val_set, shuffle=False, **loader_kw) if val_set is not None else None
    if plan.accelerator == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)

    ckpt_dir = run / CHECKPOINTS
    trainer_callbacks: list[Any] = [
        pl.callbacks.ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor="val/loss" if val_loader is not None else None,
            mode="min",
            save_top_k=1,
            save_last=True,
            enable_version_counter=False,
        )
    ]
    trainer_callbacks += callbacks or []
    if on_progress is not None:
        trainer_callbacks.append(_progress_callback(pl, on_progress))
    with _quiet(verbose):
        pl.seed_everything(int(settings.get("seed", 0)), workers=True, verbose=False)
        trainer = pl.Trainer(
            accelerator=plan.accelerator,
            devices=plan.devices,
            num_nodes=plan.num_nodes,
            precision=plan.precision,
            max_epochs=settings["epochs"],
            default_root_dir=str(run),
            # one log folder per start: Lightning's CSV logger rewrites metrics.csv when a resumed run reuses one
            logger=pl.loggers.CSVLogger(str(run), name="logs", version=str(len(list((run / "logs").glob("*"))))),
            callbacks=trainer_callbacks,
            enable_progress_bar=verbose,
            enable_model_summary=verbose,
            num_sanity_val_steps=0,
            log_every_n_steps=10,
        )
        _fit(trainer, module, train_loader, val_loader, ckpt_path)
    if trainer.interrupted:
        last = ckpt_dir / "last.ckpt"
        where = f"{last} holds {epochs_done(last)} finished epoch(s)" if last.is_file() else "no epoch finished yet"
        raise AnimesegError(
            f"{run}: training interrupted at epoch {trainer.current_epoch + 1}/{settings['epochs']} ({where}); "
            f"continue with `animeseg train --arch maskrcnn --resume --project {run.parent} --name {run.name}`"
        )
    if not trainer.is_global_zero:
        return None
    return _finish(
        run, settings, resolved, train_json, plan, start_label, ckpt_path, weights_dir, started, evaluate_val
    )


def _fit(trainer: Any, module: Any, train_loader: Any, val_loader: Any, ckpt_path: Path | None) -> None:
    """``trainer.fit``, returning after Ctrl-C: Lightning then ignores SIGINT and calls ``sys.exit(1)``; the
    caller reports the interruption as one line instead, and Ctrl-C works again afterwards."""
    import contextlib
    import signal

    old = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SystemExit:
        if not trainer.interrupted:
            raise
    finally:
        with contextlib.suppress(ValueError):  # not the main thread: Lightning could not have changed it either
            signal.signal(signal.SIGINT, old)


def _finish(
    run: Path,
    settings: dict[str, Any],
    resolved: Any,
    train_json: Path,
    plan: DevicePlan,
    start_label: str,
    resumed_from: Path | None,
    weights_dir: str | Path | None,
    started: datetime,
    evaluate_val: bool,
) -> Any:
    """Save the best checkpoint as animeseg weights, score them on val, write the sidecar."""
    from animeseg.maskrcnn.model import load_checkpoint, save_checkpoint
    from animeseg.train.result import TrainResult, default_weights_dir
    from animeseg.train.sidecar import jsonable, package_versions
    from animeseg.weights import sha256_file

    ckpt_dir = run / CHECKPOINTS
    best = ckpt_dir / "best.ckpt" if (ckpt_dir / "best.ckpt").is_file() else ckpt_dir / "last.ckpt"
    if not best.is_file():
        raise AnimesegError(f"{run}: training ended without writing a checkpoint")
    net, config = load_checkpoint(best)
    folder = Path(weights_dir).expanduser().resolve() if weights_dir is not None else default_weights_dir()
    out = save_checkpoint(folder / f"animeseg-{run.name}.pt", net, config)
    metrics: dict[str, float] = {}
    rows = [row for log in sorted((run / "logs").glob("*/metrics.csv"), key=_version) for row in _csv_rows(log)]
    epoch_rows = [r for r in rows if r.get("val/loss") or r.get("train/loss_epoch")]
    for key in ("val/loss", "val/loss_mask", "train/loss_epoch"):
        values = [float(r[key]) for r in epoch_rows if r.get(key)]
        if values:
            metrics[key] = round(min(values) if key.startswith("val") else values[-1], 6)
    if evaluate_val and (resolved.data_yaml.parent / "annotations" / "val.json").is_file():
        metrics.update(_val_ap(out, resolved.data_yaml, config.imgsz, run / "val"))
    import importlib.metadata

    versions = package_versions()
    try:
        versions["lightning"] = importlib.metadata.version("lightning")
    except importlib.metadata.PackageNotFoundError:
        versions["lightning"] = None
    sidecar = {
        "weights": out.name,
        "weights_sha256": sha256_file(out),
        "architecture": ARCH,
        "backbone": config.backbone,
        "run": str(run),
        "checkpoint": str(best),
        "model": start_label,
        "from_scratch": bool(settings.get("from_scratch")),
        "resumed": resumed_from is not None,
        "dataset": {**resolved.fingerprint(), "annotations": str(train_json)},
        "names": jsonable(config.names),
        "imgsz": config.imgsz,
        "train_args": jsonable(settings),
        "epochs_completed": epochs_done(ckpt_dir / "last.ckpt"),
        "metrics": metrics,
        "versions": versions,
        "device": plan.label,
        "precision": plan.precision,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out.with_suffix(".json"), sidecar, indent=2)
    return TrainResult(out, sidecar, run)


def _version(path: Path) -> int:
    name = path.parent.name
    return int(name) if name.isdigit() else -1


def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _val_ap(weights: Path, data_yaml: Path, imgsz: int, out: Path) -> dict[str, float]:
    """COCO mask and box AP of ``weights`` on the val split, keyed as Ultralytics names them in a YOLO sidecar."""
    from animeseg.evaluate import evaluate

    result = evaluate(weights, data_yaml, split="val", imgsz=imgsz, device="cpu", out=out)["results"]["raw"]
    segm, bbox = result.get("mask") or {}, result.get("box") or {}
    return {
        "metrics/mAP50-95(M)": round(float(segm.get("AP") or 0.0), 6),
        "metrics/mAP50(M)": round(float(segm.get("AP50") or 0.0), 6),
        "metrics/mAP50-95(B)": round(float(bbox.get("AP") or 0.0), 6),
        "metrics/mAP50(B)": round(float(bbox.get("AP50") or 0.0), 6),
    }


__all__ = [
    "BACKBONES",
    "DEFAULTS",
    "DevicePlan",
    "device_plan",
    "epochs_done",
    "last_checkpoint",
    "pretrained_file",
    "train_maskrcnn",
]
