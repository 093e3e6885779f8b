"""Errors that reach users as one line."""

from __future__ import annotations

from pathlib import Path


class AnimesegError(Exception):
    """A problem the user can act on; the CLI prints its message as one line, without a traceback."""

    exit_code = 2


class ConfigError(AnimesegError):
    """A bad configuration file: names the file, the key and what is wrong."""

    def __init__(self, file: str | Path, key: str, problem: str):
        self.file, self.key, self.problem = str(file), key, problem
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {problem}")


class InputError(AnimesegError):
    """A bad input file (missing, empty, corrupt, unsupported...): names the file and the problem."""

    exit_code = 1

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


class MissingWeightsError(AnimesegError):
    """A model or checkpoint file that is not on disk; says how to get it, never downloads."""

    def __init__(self, path: str | Path, hint: str = ""):
        self.path = str(path)
        msg = f"{self.path}: model file not found"
        super().__init__(f"{msg}; {hint}" if hint else msg)


#: The optional extras (``pip install 'animeseg[EXTRA]'``) and what each one adds to the core install.
EXTRAS = {
    "onnxruntime": "the ONNX Runtime backend and the ONNX SAM refiner",
    "train": "PyTorch models (.pt), training, tracking (--track), GPUs",
    "sam": "Segment Anything on PyTorch (--refine sam with a .pth checkpoint)",
    "maskrcnn": "Mask R-CNN training and checkpoints",
    "export": "exporting models to ONNX and OpenVINO",
    "matte": "soft-edged cut-outs (--alpha matte)",
    "ray": "--engine ray",
    "web": "animeseg serve",
}

#: Optional top-level modules -> the extra that installs them.
MODULE_EXTRAS = {
    "onnxruntime": "onnxruntime",
    "torch": "train",
    "torchvision": "train",
    "ultralytics": "train",
    "lap": "train",
    "cloudpickle": "train",
    "segment_anything": "sam",
    "lightning": "maskrcnn",
    "pytorch_lightning": "maskrcnn",
    "onnx": "export",
    "nncf": "export",
    "pymatting": "matte",
    "ray": "ray",
    "gradio": "web",
}


class MissingExtraError(AnimesegError):
    """An optional package this work needs is not installed: one line naming the extra that installs it."""

    def __init__(self, module: str, extra: str, what: str = ""):
        self.module, self.extra = module, extra
        needs = f"{what} needs {module}" if what else f"{module} is needed"
        super().__init__(f"{needs}, which is not installed: pip install 'animeseg[{extra}]' ({EXTRAS[extra]})")


def missing_extra(error: ImportError, what: str = "") -> MissingExtraError | None:
    """The :class:`MissingExtraError` behind ``error`` when it is an optional module that is not installed (the
    module, or one it imports, is one of :data:`MODULE_EXTRAS`), else None."""
    name = getattr(error, "name", None) or ""
    top = name.split(".")[0]
    if not isinstance(error, ModuleNotFoundError) or top not in MODULE_EXTRAS:
        return None
    return MissingExtraError(top, MODULE_EXTRAS[top], what)


def require(module: str, what: str = "", extra: str | None = None) -> object:
    """Import and return ``module`` (an optional one, see :data:`MODULE_EXTRAS`), or raise
    :class:`MissingExtraError` saying which extra installs it (``extra``, else the module's own); ``what`` names
    what needs it (``--alpha matte``)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = missing_extra(e, what)
        if hint is None:
            raise
        if extra is not None:
            hint = MissingExtraError(hint.module, extra, what)
        raise hint from None
