"""`animeseg eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from animeseg.cli import options
from animeseg.settings import AP_SETTINGS


def evaluate(
    model: options.Model = None,
    data: Path = typer.Option(
        ...,
        "--data",
        "-d",
        help="A built dataset (data.yaml or its folder; ground truth from annotations/<split>.json) or any COCO "
        "instances JSON with masks (then give --images).",
    ),
    split: str = typer.Option("val", "--split", help="Split of a built dataset to evaluate on."),
    images: Path = typer.Option(
        None,
        "--images",
        metavar="DIR",
        help="Folder the COCO file's image file_name entries are relative to (default: its folder).",
    ),
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--classes",
            "-c",
            metavar="MODEL=GT",
            help="Which model class is which ground-truth category: MODEL=GT pairs, by name or id, comma-separated "
            "or repeated. Default: classes with equal names.",
            show_default=False,
        ),
    ] = None,
    imgsz: options.Imgsz = None,
    conf: options.conf_option(
        f"Lowest detection score kept. Default: {AP_SETTINGS['conf']} (AP reads low-score detections too)."
    ) = None,
    threshold: float = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="Score from which a detection counts as found (and, with a refiner, is refined), for foreground "
        "IoU/F/MAE and missed/spurious counts. Default: the model's own --conf, what predict keeps "
        f"({options.packaged_defaults().detect.conf} for the packaged model).",
        show_default=False,
    ),
    iou: options.Iou = None,
    max_det: options.max_det_option(
        f"Most instances kept per image. Default: {AP_SETTINGS['max_det']} (what COCO AP reads)."
    ) = None,
    device: options.Device = None,
    refine: options.Refine = None,
    refine_sam: options.RefineSam = False,
    sam_checkpoint: options.SamCheckpoint = None,
    sam_type: options.SamType = "auto",
    out: Path = typer.Option(
        None, "--out", "-o", help="Output folder for metrics.json, metrics.md and predictions (default: runs/eval/...)."
    ),
    runtime: options.Runtime = "auto",
) -> None:
    """Evaluate a model on COCO ground truth: mask/box AP (pycocotools), foreground IoU/F/MAE, missed/spurious.

    With a refiner (the model's own, learned for the packaged model, or --refine), refined masks from the same
    detections are scored side by side with the raw ones.
    """
    from animeseg.cli.console import console, summary_table, warn
    from animeseg.cli.render import ProgressBars
    from animeseg.device import resolve_device
    from animeseg.evaluate import evaluate as run_evaluate
    from animeseg.metrics import table_rows
    from animeseg.refine import build_refiner
    from animeseg.settings import model_defaults

    model_file = options.model_file(model)
    method = options.refine_method(refine, refine_sam, model_defaults(model_file).refine)
    torch_device = resolve_device(device)
    refiner = build_refiner(method, options=options.refine_options(method, sam_checkpoint, sam_type, torch_device))
    with ProgressBars() as bars:
        metrics = run_evaluate(
            model_file,
            data,
            split=split,
            images=images,
            classes=classes,
            imgsz=imgsz,
            conf=conf,
            iou=iou,
            max_det=max_det,
            threshold=threshold,
            device=torch_device,
            refine=refiner,
            out=out,
            on_progress=bars,
            runtime=runtime,
        )
    results = metrics["results"]
    title = f"Evaluation ({metrics['images']['evaluated']} images) -> {metrics['out']}"
    console.print(summary_table(title, ["metric", *results], table_rows(results)))
    for failed in metrics["images"]["failed"]:
        warn(f"{failed['file']}: {failed['error']} (not evaluated)")
