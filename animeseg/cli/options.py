"""Options shared by several commands, each defined once: same name, same help, same checks everywhere.

Commands declare them as annotated parameters (``device: options.Device = None``) and turn them into library
values with the helpers below, before any work, so every bad value is one line and exit code 2.

Detection settings (``--imgsz``, ``--conf``, ``--iou``, ``--max-det``) default to None: the model's own
(:func:`animeseg.settings.model_defaults`), laid under what the user gives by :func:`detect_settings`. ``--refine``
likewise defaults to the model's refiner; its choices are the refiners registered when the command line is
built (``Refine`` is made on each access, see :func:`__getattr__`), not when this module was imported.
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from animeseg.refine import RefineOptions, refiner_names
from animeseg.sam import sam_types

if TYPE_CHECKING:
    from animeseg.settings import DetectSettings, ModelDefaults


@cache
def packaged_defaults() -> ModelDefaults:
    """The packaged model's defaults (read from its sidecar once), for the help texts."""
    from animeseg.settings import model_defaults
    from animeseg.weights import packaged_model

    return model_defaults(packaged_model())


def default_note(key: str) -> str:
    """Help text's end for a setting whose default is the model's own."""
    defaults = packaged_defaults()
    value = defaults.refine if key == "refine" else getattr(defaults.detect, key)
    return f" Default: the model's own ({value} for the packaged model)."


def _check_refine(value: str | None) -> str | None:
    if value is not None and value not in refiner_names():
        raise typer.BadParameter(f"--refine {value}: choose one of {', '.join(refiner_names())}")
    return value


def _refine_option() -> Any:
    """``--refine NAME``: None (the model's refiner), ``none`` or a refiner registered now."""
    names = refiner_names()
    return Annotated[
        str | None,
        typer.Option(
            "--refine",
            metavar="[" + "|".join(names) + "]",
            callback=_check_refine,
            help="Mask refinement: none, or a refiner (learned: a small packaged network redraws each mask with its "
            "neighbours in view; grabcut needs no weights; sam: Segment Anything prompted with the detector's boxes). "
            "Refined masks are kept only where they agree with the detector's." + default_note("refine"),
            show_default=False,
        ),
    ]


def __getattr__(name: str) -> Any:
    # `Refine` is built on each access: Typer reads a command's annotations when it builds the command line (the
    # commands' modules postpone them), so a refiner registered after this import is still a choice
    if name == "Refine":
        return _refine_option()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_sam_type(value: str) -> str:
    if value not in sam_types():
        raise typer.BadParameter(f"--sam-type {value}: choose one of {', '.join(sam_types())}")
    return value


Model = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        metavar="PATH",
        help="YOLOv8-seg or animeseg Mask R-CNN weights (.pt or .onnx, or an exported folder; the architecture is "
        "read from the file). Default: the newest animeseg-trained weights in weights/, else the anime model "
        "packaged with animeseg.",
        show_default=False,
    ),
]


def imgsz_option(help: str) -> Any:
    """``--imgsz`` with a command's own help (the flag, its bounds and metavar are the same everywhere)."""
    return Annotated[int | None, typer.Option("--imgsz", min=32, metavar="PIXELS", help=help, show_default=False)]


def conf_option(help: str) -> Any:
    """``--conf`` with a command's own help."""
    return Annotated[
        float | None, typer.Option("--conf", min=0.0, max=1.0, metavar="SCORE", help=help, show_default=False)
    ]


def max_det_option(help: str) -> Any:
    """``--max-det`` with a command's own help."""
    return Annotated[int | None, typer.Option("--max-det", min=1, metavar="N", help=help, show_default=False)]


Imgsz = imgsz_option("Inference size in pixels (long side)." + default_note("imgsz"))
Conf = conf_option("Lowest detection score kept." + default_note("conf"))
Iou = Annotated[
    float | None,
    typer.Option(
        "--iou",
        min=0.0,
        max=1.0,
        metavar="IOU",
        help="IoU threshold of non-maximum suppression." + default_note("iou"),
        show_default=False,
    ),
]
MaxDet = max_det_option("Most instances kept per image." + default_note("max_det"))
Device = Annotated[
    str | None,
    typer.Option(
        "--device",
        metavar="DEVICE",
        help="cpu, 0, cuda:0, mps... for the detector and SAM alike. Default: the first GPU if there is one, "
        "else the CPU.",
        show_default=False,
    ),
]
Runtime = Annotated[
    str,
    typer.Option(
        "--runtime",
        help="How ONNX models run: auto (OpenVINO where installed, in bf16 where the CPU has it, else ONNX Runtime), "
        "onnxruntime, openvino (its best precision here), openvino-bf16 or openvino-fp32. Measured in "
        "docs/benchmarks.md.",
    ),
]
RefineSam = Annotated[bool, typer.Option("--refine-sam", help="Shorthand for --refine sam.", show_default=False)]
_SAM_FILES = "SAM checkpoint (.pth/.pt: ViT SAM, MobileSAM, SAM 2 / 2.1) or a SAM folder from `animeseg export onnx`"
SamCheckpoint = Annotated[
    Path | None,
    typer.Option(
        "--sam-checkpoint",
        metavar="PATH",
        help=f"{_SAM_FILES}, for --refine sam. Default: an official SAM file in weights/.",
        show_default=False,
    ),
]
#: ``serve``'s: the page offers SAM when it has a checkpoint
ServeSamCheckpoint = Annotated[
    Path | None,
    typer.Option(
        "--sam-checkpoint",
        metavar="PATH",
        help=f"{_SAM_FILES}: the page then offers SAM refinement. Default: an official SAM file in weights/, if any.",
        show_default=False,
    ),
]


def sam_type_option(note: str = "") -> object:
    """``--sam-type``, with a command's own ``note`` at the end of its help."""
    return Annotated[
        str,
        typer.Option(
            "--sam-type",
            metavar="TYPE",
            callback=_check_sam_type,
            help=f"SAM architecture: {', '.join(sam_types())}; auto reads it from the checkpoint. mobile_sam and "
            "sam2*: the light family (CPU-friendly, on Ultralytics' models)." + note,
        ),
    ]


SamType = sam_type_option()
Classes = Annotated[
    list[str] | None,
    typer.Option(
        "--classes",
        "-c",
        metavar="IDS",
        help="Class ids to keep, comma-separated or repeated (0,2 or -c 0 -c 2; with COCO models 0 = person). "
        "An id the model does not have is an error. Default: every class.",
        show_default=False,
    ),
]


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


EngineOpt = Annotated[
    EngineName,
    typer.Option(
        "--engine",
        metavar="[local|ray]",
        help="Where inputs run: local (this process) or ray (Ray actors, each loading the model once: this "
        'machine\'s cores, or a cluster with --ray-address). Ray needs pip install "animeseg\\[ray]".',
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to run on (auto, ray://head:10001). Default: a local Ray instance for this run. "
        "--out must be a path every node can write (a shared filesystem).",
        show_default=False,
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Ray workers (actors). Default: one per CPU, or per GPU share with --gpus-per-worker.",
        show_default=False,
    ),
]
GpusPerWorker = Annotated[
    float,
    typer.Option("--gpus-per-worker", min=0.0, help="GPUs each Ray worker reserves (0.5: two workers per GPU)."),
]


def engine(name: EngineName, address: str | None, workers: int | None, gpus_per_worker: float):
    """The :class:`animeseg.engine.Engine` the engine options name; Ray's options without ``--engine ray`` are
    a usage error, and ``--engine ray`` without Ray installed one line saying how to install it."""
    from animeseg.engine import LocalEngine

    if name == EngineName.local:
        given = [o for o, v in (("--ray-address", address), ("--workers", workers)) if v is not None]
        given += ["--gpus-per-worker"] if gpus_per_worker else []
        if given:
            raise typer.BadParameter(f"{', '.join(given)} need --engine ray", param_hint="--engine")
        return LocalEngine()
    from animeseg.engine_ray import RayEngine

    return RayEngine(address, workers, gpus_per_worker)


def model_file(model: Path | None) -> Path:
    """``--model`` checked and resolved to a file (:func:`animeseg.weights.default_model` when not given)."""
    from animeseg.weights import default_model
    from animeseg.yolo import resolve_model

    return Path(resolve_model(model if model is not None else default_model()))


def check_alpha(alpha: str, method: str) -> None:
    """``--alpha matte`` with a refiner that predicts no alpha needs PyMatting (the ``matte`` extra): one line
    before any image when it is missing. The learned refiner's own alpha needs nothing more."""
    from animeseg.refine import refiner_class

    if alpha == "matte" and not getattr(refiner_class(method), "predicts_alpha", False):
        from animeseg.errors import require

        require("pymatting", f"--alpha matte with --refine {method}")


def refine_method(refine: str | None, refine_sam: bool, default: str) -> str:
    """The refiner name from ``--refine`` and its ``--refine-sam`` shorthand; ``default`` (the model's) when
    neither is given."""
    if refine_sam:
        if refine not in (None, "none", "sam"):
            raise typer.BadParameter(f"--refine-sam means --refine sam, not --refine {refine}; give one of them")
        return "sam"
    return refine if refine is not None else default


def detect_settings(
    model: Path,
    *,
    imgsz: int | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    device: str | None = None,
    classes: list[int] | None = None,
    base: DetectSettings | None = None,
) -> DetectSettings:
    """The detection settings of a run: ``base`` (default: ``model``'s own defaults) with every option the user
    gave over it."""
    from animeseg.settings import model_defaults

    start = base if base is not None else model_defaults(model).detect
    return start.override(imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=device, classes=classes)


def refine_options(name: str, sam_checkpoint: Path | None, sam_type: str, device: str | None) -> RefineOptions:
    """The refiner's options, checked before any work: the device as torch spells it, a default SAM file from
    weights/ when the refiner reads one and none was given; a warning for settings the refiner does not read."""
    from animeseg.progress import logger
    from animeseg.refine import check_refiner, refiner_class
    from animeseg.weights import default_sam

    cls = refiner_class(name)
    uses = set(getattr(cls, "uses", ())) if cls is not None else set()
    if sam_checkpoint is None and "sam_checkpoint" in uses:
        sam_checkpoint = default_sam()
    elif sam_checkpoint is not None and "sam_checkpoint" not in uses:
        logger.warning(f"--sam-checkpoint is only used with --refine sam; ignored with --refine {name}")
    options = RefineOptions(sam_checkpoint, sam_type, device)
    return check_refiner(name, options)


def parse_class_ids(values: list[str] | None) -> list[int] | None:
    """``["0,2"]`` or ``["0", "2"]`` -> ``[0, 2]``; nothing -> None (every class)."""
    text = " ".join(values or []).replace(",", " ").strip()
    if not text:
        return None
    try:
        ids = [int(v) for v in text.split()]
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give class ids as integers, e.g. --classes 0 or --classes 0,2", param_hint="--classes"
        ) from None
    if any(v < 0 for v in ids):
        raise typer.BadParameter("class ids are 0 or more", param_hint="--classes")
    return sorted(set(ids))
