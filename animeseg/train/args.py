"""The arguments ``animeseg train`` hands to Ultralytics: the study's defaults, named options, pass-through keys."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from animeseg.errors import AnimesegError
from animeseg.progress import logger

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


def is_cpu(device: str | None) -> bool:
    """True when ``device`` (None: automatic) means training on the CPU."""
    if device is None or str(device).strip() == "":
        import torch

        return not torch.cuda.is_available()
    return str(device).strip().lower() in {"cpu", "mps"}


def gpu_count(device: str | None) -> int:
    """GPUs that ``device`` asks for (``0,1,2,3`` -> 4; None: one when there is a GPU)."""
    if device is None or is_cpu(device):
        return 0 if is_cpu(device) else 1
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
        logger.warning(
            f"{values}: no effect with optimizer=auto (Ultralytics then chooses the optimizer, its learning rate "
            "and momentum itself); pass --optimizer SGD or AdamW to use them"
        )
    dev = args.get("device")
    if is_cpu(None if dev is None else str(dev)):
        args.setdefault("amp", False)  # nothing to check on CPU; also keeps the check from running at all
    gpus = gpu_count(None if dev is None else str(dev))
    if gpus > 1:
        try:
            import cloudpickle  # noqa: F401  (Ultralytics pickles the trainer for its DDP workers with it)
        except ImportError:
            raise AnimesegError(
                f"device={dev}: training on several GPUs needs the cloudpickle package (pip install cloudpickle)"
            ) from None
        if float(args["batch"]) < 1:
            args["batch"] = DDP_BATCH_PER_GPU * gpus
            logger.info(
                f"AutoBatch works on one GPU only; using batch={args['batch']} ({DDP_BATCH_PER_GPU} per GPU). "
                "Set --batch to choose."
            )
        elif int(args["batch"]) % gpus:
            raise AnimesegError(f"--batch {args['batch']} must be a multiple of the {gpus} GPUs in --device {dev}")
    return args
