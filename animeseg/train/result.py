"""What a training run of either architecture leaves: the best weights in the weights folder, next to their
JSON sidecar, and the run folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animeseg.io import atomic_path


@dataclass
class TrainResult:
    """What a training run left: the best weights copied into the weights folder, their sidecar (also written
    next to them as ``.json``) and the Ultralytics run folder."""

    weights: Path
    sidecar: dict[str, Any]
    run: Path


def default_weights_dir() -> Path:
    """The folder ``predict`` looks in first (``animeseg.weights``: ``$ANIMESEG_WEIGHTS``, the checkout's
    ``weights/``, else ``./weights``); ``./weights`` where that module is not installed."""
    try:
        from animeseg.weights import weights_dir
    except ImportError:
        return (Path.cwd() / "weights").resolve()
    return Path(weights_dir()).expanduser().resolve()


def copy_weights(best: Path, weights_dir: Path, run_name: str) -> Path:
    """Copy a run's best weights into ``weights_dir`` as ``animeseg-<run name>.pt`` (atomically); returns it."""
    dst = weights_dir / f"animeseg-{run_name}.pt"
    with atomic_path(dst) as tmp:
        shutil.copyfile(best, tmp)
    return dst
