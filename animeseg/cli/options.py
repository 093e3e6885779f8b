"""Options shared by several commands, each defined once: same name, same help, same checks everywhere.

Commands declare them as annotated parameters (``device: options.Device = None``) and turn them into library
values with the helpers below, before any work, so every bad value is one line and exit code 2.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from animeseg.refine import RefineOptions, refiner_names
from animeseg.sam import sam_types

#: ``--refine`` choices: ``none`` and every registered refiner (``animeseg.refine.register``).
RefineMethod = Enum("RefineMethod", {name: name for name in refiner_names()}, type=str)  # type: ignore[misc]


def _check_sam_type(value: str) -> str:
    if value not in sam_types():
        raise typer.BadParameter(f"--sam-type {value}: choose one of {', '.join(sam_types())}")
    return value


Model = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        help="YOLOv8-seg or animeseg Mask R-CNN weights (.pt or .onnx, or an exported folder; the architecture is "
        "read from the file). Default: the newest animeseg-trained weights in weights/, else the anime model "
        "packaged with animeseg.",
        show_default=False,
    ),
]
Imgsz = Annotated[int, typer.Option("--imgsz", min=32, help="Inference size in pixels (long side).")]
Conf = Annotated[
    float,
    typer.Option("--conf", min=0.0, max=1.0, help="Lowest detection score kept (eval: AP needs low-score ones too)."),
]
Iou = Annotated[float, typer.Option("--iou", min=0.0, max=1.0, help="IoU threshold of non-maximum suppression.")]
MaxDet = Annotated[int, typer.Option("--max-det", min=1, help="Most instances kept per image (COCO AP reads 100).")]
Device = Annotated[
    str | None,
    typer.Option(
        "--device",
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
Refine = Annotated[
    RefineMethod,
    typer.Option(
        "--refine",
        help=f"Mask refinement: {', '.join(refiner_names())}. sam: Segment Anything prompted with YOLO's boxes; "
        "grabcut needs no weights. Refined masks are kept only where they agree with YOLO's.",
    ),
]
RefineSam = Annotated[bool, typer.Option("--refine-sam", help="Shorthand for --refine sam.", show_default=False)]
SamCheckpoint = Annotated[
    Path | None,
    typer.Option(
        "--sam-checkpoint",
        help="SAM checkpoint (.pth/.pt: ViT SAM, MobileSAM, SAM 2 / 2.1) or exported SAM ONNX folder, for --refine "
        "sam. Default: an official SAM file in weights/.",
        show_default=False,
    ),
]
SamType = Annotated[
    str,
    typer.Option(
        "--sam-type",
        callback=_check_sam_type,
        help=f"SAM architecture: {', '.join(sam_types())}; auto reads it from the checkpoint. mobile_sam and "
        "sam2*: the light family (CPU-friendly, on Ultralytics' models; not exported by export onnx).",
    ),
]
Classes = Annotated[
    list[str] | None,
    typer.Option(
        "--classes",
        "-c",
        help="Model classes, comma-separated or repeated (with COCO models 0 = person). predict: the class ids to "
        "keep. eval: MODEL=GT pairs mapping a model class to a ground-truth category, by name or id (default: "
        "equal names).",
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
        help="Where inputs run: local (this process) or ray (Ray actors, each loading the model once: this "
        'machine\'s cores, or a cluster with --ray-address). Ray needs pip install "animeseg[ray]".',
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


def refine_method(refine: Enum, refine_sam: bool) -> str:
    """The refiner name from ``--refine`` and its ``--refine-sam`` shorthand."""
    name = str(refine.value)
    if refine_sam:
        if name not in ("none", "sam"):
            raise typer.BadParameter(f"--refine-sam means --refine sam, not --refine {name}; give one of them")
        return "sam"
    return name


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
