"""What a weights sidecar records about a finished training run: versions, metrics, device, epochs."""

from __future__ import annotations

import csv
import platform
from pathlib import Path
from typing import Any

from animeseg.versions import installed_version

#: The sidecar's ``versions`` besides torch's and CUDA's: name -> the module whose installed version it records.
SIDECAR_PACKAGES = {
    "ultralytics": "ultralytics",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "opencv": "cv2",
    "pycocotools": "pycocotools",
}


def package_versions() -> dict[str, str | None]:
    """Versions that decide what a trained model is, for the sidecar."""
    import torch

    import animeseg

    out: dict[str, str | None] = {"python": platform.python_version(), "animeseg": animeseg.__version__}
    for name, module in SIDECAR_PACKAGES.items():
        out[name] = installed_version(module)
    out["torch"] = torch.__version__  # keeps the build tag (+cu130, +cpu)
    out["cuda"] = torch.version.cuda
    return out


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    return str(value)


def results_rows(save_dir: Path) -> list[dict[str, str]]:
    path = save_dir / "results.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def final_metrics(trainer: Any, best: Path) -> dict[str, float]:
    """Metrics of the best weights: the final validation in this process, else the checkpoint's (DDP)."""
    import torch

    metrics = getattr(trainer, "metrics", None)
    if not isinstance(metrics, dict) or not any(k.startswith("metrics/") for k in metrics):
        try:
            metrics = torch.load(best, map_location="cpu", weights_only=False).get("train_metrics") or {}
        except Exception:
            metrics = {}
    return {k: round(float(v), 6) for k, v in metrics.items() if k.startswith("metrics/") or k == "fitness"}


def device_name(trainer: Any) -> str:
    import torch

    device = getattr(trainer, "device", None)
    if device is not None and getattr(device, "type", "") == "cuda" and torch.cuda.is_available():
        return f"{trainer.args.device}: {torch.cuda.get_device_name(device)}"
    return str(getattr(trainer.args, "device", "cpu") or "cpu")
