"""`animeseg eval`."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    model: Path = typer.Option(..., "--model", "-m", help="YOLO segmentation weights (.pt, .onnx) to evaluate."),
    data: Path = typer.Option(
        ...,
        "--data",
        "-d",
        help="A built dataset (data.yaml or its folder; ground truth from annotations/<split>.json) or any COCO "
        "instances JSON with masks (then give --images).",
    ),
    split: str = typer.Option("val", "--split", help="Split of a built dataset to evaluate on."),
    images: Path = typer.Option(
        None, "--images", help="Folder the COCO file's image file_name entries are relative to (default: its folder)."
    ),
    classes: list[str] = typer.Option(
        None,
        "--classes",
        "-c",
        help="Map a model class to a ground-truth category, MODEL=GT, by name or id; repeat for several "
        "(e.g. -c person=character). Unmapped model classes are dropped (default: equal names).",
    ),
    imgsz: int = typer.Option(640, "--imgsz", min=32, help="Inference image size in pixels."),
    conf: float = typer.Option(
        0.001, "--conf", min=0.0, max=1.0, help="Lowest detection score kept; AP needs low-score detections too."
    ),
    threshold: float = typer.Option(
        0.25,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Score from which a detection counts as found, for foreground IoU/F/MAE and missed/spurious counts.",
    ),
    iou: float = typer.Option(0.7, "--iou", min=0.0, max=1.0, help="Non-maximum-suppression IoU."),
    max_det: int = typer.Option(100, "--max-det", min=1, help="Most detections per image (COCO AP reads 100)."),
    device: str = typer.Option(None, "--device", help="cpu or a GPU index such as 0 (default: GPU 0 if any)."),
    refine: str = typer.Option(
        "none",
        "--refine",
        help="Also score refined masks from the same detections, side by side with the raw ones: none, grabcut, sam.",
    ),
    sam_checkpoint: Path = typer.Option(
        None, "--sam-checkpoint", help="SAM weights (.pth) or an exported SAM ONNX folder, for --refine sam."
    ),
    sam_type: str = typer.Option("auto", "--sam-type", help="SAM architecture: auto (from the weights), vit_b/l/h."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output folder for metrics.json, metrics.md and predictions (default: runs/eval/...)."
    ),
) -> None:
    """Evaluate a model on COCO ground truth: mask/box AP (pycocotools), foreground IoU/F/MAE, missed/spurious."""
    from animeseg.evaluate import evaluate as run_evaluate

    refiner = None
    if refine.lower() != "none":
        try:
            from animeseg.refine import build_refiner
        except ImportError:
            from animeseg.errors import AnimesegError

            raise AnimesegError(f"--refine {refine}: refinement is not available in this installation") from None
        refiner = build_refiner(refine.lower(), sam_checkpoint=sam_checkpoint, sam_type=sam_type, device=device)
    run_evaluate(
        model,
        data,
        split=split,
        images=images,
        classes=classes,
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        max_det=max_det,
        threshold=threshold,
        device=device,
        refiner=refiner,
        out=out,
    )
