"""Loading YOLO segmentation models without surprises: local files only, never a silent download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from animeseg._offline import import_ultralytics
from animeseg.errors import AnimesegError, MissingWeightsError
from animeseg.io import TORCH_EXTS

WEIGHTS_HINT = (
    "get official weights with `animeseg weights download yolov8m-seg` (or fetch "
    "https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8m-seg.pt by hand into weights/), "
    "or pass a model config such as yolov8n-seg.yaml to start from random weights"
)


def is_model_config(model: str | Path) -> bool:
    """True for a model *architecture* name/file (``yolov8n-seg.yaml``), which needs no weights."""
    return str(model).endswith((".yaml", ".yml"))


def resolve_model(model: str | Path) -> str:
    """Check that ``model`` can be loaded without the network and return the string to give Ultralytics.

    Weights (``.pt``, ``.onnx``, ...) must exist on disk. A ``.yaml`` may be a file or one of Ultralytics'
    bundled architecture names. Raises :class:`MissingWeightsError` otherwise, before anything is imported.
    """
    path = Path(model).expanduser()
    if is_model_config(model):
        if path.is_file():
            return str(path.resolve())
        import_ultralytics()
        from ultralytics.nn.tasks import yaml_model_load

        # Bundled configs are stored without their scale letter (yolov8-seg.yaml serves yolov8n/s/m/l/x-seg.yaml);
        # Ultralytics' own loader maps the name and reads the scale from it, so the name itself is what we return.
        try:
            yaml_model_load(str(model))
        except Exception:
            raise AnimesegError(f"{model}: no such model config file, nor one bundled with Ultralytics") from None
        return str(model)
    if path.is_dir() and (path / "model.onnx").is_file():
        path = path / "model.onnx"
    if not path.is_file():
        raise MissingWeightsError(path, WEIGHTS_HINT)
    if path.stat().st_size == 0:
        raise AnimesegError(f"{path}: model file is empty")
    suffix = path.suffix.lower()
    if suffix not in (*TORCH_EXTS, ".onnx"):
        raise AnimesegError(
            f"{path}: not a model file; give .pt or .onnx weights, a folder exported by `animeseg export onnx`, "
            "or a model config (.yaml)"
        )
    return str(path.resolve())


def load_yolo(model: str | Path, task: str = "segment") -> Any:
    """An ``ultralytics.YOLO`` for a local weights file or a model config, checked first (see resolve_model)."""
    resolved = resolve_model(model)
    YOLO = import_ultralytics().YOLO
    try:
        return YOLO(resolved, task=task)
    except Exception as e:
        raise AnimesegError(f"{model}: cannot load model ({type(e).__name__}: {e})") from None
