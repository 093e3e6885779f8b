"""`animeseg export`: models to ONNX, each export checked against PyTorch before it is trusted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from animeseg.cli import options
from animeseg.errors import AnimesegError

app = typer.Typer(
    help="Export the detector and Segment Anything to ONNX, or the detector to OpenVINO IR (run them without PyTorch).",
    no_args_is_help=True,
)

#: ``--sam-type`` of this command: the light family has no ONNX export here
SamType = options.sam_type_option(" Only ViT SAMs (vit_b, vit_l, vit_h) are exported to ONNX.")


@app.command("onnx")
def onnx_command(
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        metavar="PATH",
        help="YOLO segmentation or animeseg Mask R-CNN checkpoint (.pt) to export (the architecture is read from "
        "it); written as OUT/<name>.onnx. Default, when --sam-checkpoint is not given either: the packaged model.",
    ),
    imgsz: int = typer.Option(
        None,
        "--imgsz",
        help="Detector input size in pixels (YOLO: multiple of 32, default 640, always set explicitly in the export; "
        "Mask R-CNN: the long side inside the graph, default its training size).",
        show_default=False,
    ),
    dynamic: bool = typer.Option(
        True,
        "--dynamic/--static",
        help="Detector with dynamic batch and image size: each image gets the smallest rectangle of stride "
        "multiples around it, as the checkpoint does (--static: a fixed --imgsz square).",
    ),
    half: bool = typer.Option(False, "--half", help="Detector in FP16 (SAM stays FP32: FP16 is slower on CPUs)."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="int8 for CPUs: the detector statically quantised (weights and activations, ranges calibrated on "
        "--calibration images), SAM dynamically (weights).",
    ),
    calibration: list[str] | None = typer.Option(
        None,
        "--calibration",
        metavar="IMAGES",
        help="With --int8: images the detector's int8 ranges are calibrated on (files, folders, globs; 20-100 like "
        "the ones you will segment). Default: 12 anime scenes shipped with animeseg.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("exports"), "--out", help="Output folder (SAM goes to OUT/sam_<type>[_int8]/)."),
    sam_checkpoint: Path | None = typer.Option(
        None, "--sam-checkpoint", help="Segment Anything checkpoint (.pth) to export as encoder + decoder ONNX."
    ),
    sam_type: SamType = "auto",
    check_image: Path | None = typer.Option(
        None,
        "--check-image",
        help="Image for the parity checks (default: with --int8 the first calibration image, else a built-in "
        "synthetic scene).",
    ),
) -> None:
    """Export to ONNX and check each file against PyTorch (mask IoU, largest logit difference).

    A failed parity check is an error (exit code 2): the files are kept for inspection but must not be used.
    """
    _require_export()
    if model is None and sam_checkpoint is None:
        from animeseg.weights import packaged_model

        model = packaged_model("pt")
    if half and int8:
        raise AnimesegError("choose one of --half and --int8, not both")
    if model is not None:
        from animeseg.yolo import resolve_model

        resolve_model(model)  # a missing file or one that is no model: one line, before anything loads

    from animeseg import export as ex
    from animeseg.cli.console import console, progress, summary_table, warn
    from animeseg.io import read_image

    images = None
    if int8 and model is not None:
        images = _calibration_images(calibration) if calibration else ex.calibration_images()
    elif calibration:
        warn("--calibration is only used with --int8; ignored")
    # int8 is checked on the kind of image its ranges were calibrated for: the first calibration image
    image = read_image(check_image) if check_image is not None else images[0] if images else None
    if half and sam_checkpoint is not None:
        warn("--half applies to the detector only; SAM is exported in FP32")
    reports: list[ex.Parity] = []
    steps = (2 if model is not None else 0) + (3 if sam_checkpoint is not None else 0)
    from animeseg.maskrcnn.model import architecture

    maskrcnn = model is not None and architecture(model) == "maskrcnn"
    if maskrcnn and (not dynamic or half or int8):
        raise AnimesegError(f"{model}: Mask R-CNN exports are fp32, any image size; drop --static/--half/--int8")
    with progress() as bar:
        task = bar.add_task("exporting", total=steps)
        if maskrcnn:
            from animeseg.maskrcnn.export import check_maskrcnn, export_maskrcnn

            bar.update(task, description=f"exporting {model.name} (Mask R-CNN)")
            onnx_path = export_maskrcnn(model, out, imgsz=imgsz)
            bar.update(task, advance=1, description="checking Mask R-CNN parity")
            reports.append(check_maskrcnn(model, onnx_path, image=image))
            bar.advance(task)
        elif model is not None:
            imgsz = imgsz or 640
            bar.update(task, description=f"exporting {model.name}")
            onnx_path = ex.export_detector(
                model, imgsz=imgsz, dynamic=dynamic, half=half, int8=int8, out=out, calibration=images
            )
            bar.update(task, advance=1, description="checking detector parity")
            precision = "int8" if int8 else "fp16" if half else "fp32"
            reports.append(ex.check_detector(model, onnx_path, image=image, imgsz=imgsz, precision=precision))
            bar.advance(task)
        if sam_checkpoint is not None:
            from animeseg.sam import config_from_state_dict, load_sam

            bar.update(task, description=f"loading {sam_checkpoint.name}")
            sam = load_sam(sam_checkpoint, sam_type, device="cpu")
            ex.require_vit(sam, sam_checkpoint)
            config = config_from_state_dict(sam.state_dict())
            bar.update(task, advance=1, description=f"exporting SAM {config.name}")
            folder = ex.export_sam(sam_checkpoint, sam_type, out / ex.sam_folder_name(config.name, int8), int8, sam=sam)
            bar.update(task, advance=1, description="checking SAM parity")
            reports.append(ex.check_sam(folder, sam, image=image))
            bar.advance(task)

    for report in reports:
        console.print(parity_table(report))
    rows = []
    for report in reports:
        files = sorted(report.path.iterdir()) if report.path.is_dir() else [report.path]
        for f in files:
            if f.is_file():
                verdict = "passed" if report.passed else "FAILED"
                rows.append((str(f), f"{f.stat().st_size / 2**20:.1f} MB", report.precision, verdict))
    console.print(summary_table("ONNX export", ["file", "size", "precision", "parity"], rows))
    for report in reports:
        ex.raise_if_failed(report)


@app.command("openvino")
def openvino_command(
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        metavar="PATH",
        help="YOLO segmentation checkpoint (.pt) to export. Default: the packaged model.",
    ),
    imgsz: int = typer.Option(640, "--imgsz", help="Input size in pixels (a multiple of 32)."),
    int8: bool = typer.Option(
        False, "--int8", help="Statically quantised to int8 first (as export onnx --int8), calibrated on --calibration."
    ),
    calibration: list[str] | None = typer.Option(
        None,
        "--calibration",
        metavar="IMAGES",
        help="With --int8: images the int8 ranges are calibrated on. Default: 12 anime scenes shipped with animeseg.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("exports"), "--out", help="Output folder."),
) -> None:
    """Export a YOLO-seg checkpoint to OpenVINO IR (OUT/<name>[.int8].xml + .bin, beside its ONNX file).

    `animeseg predict --model OUT/<name>.xml` runs it on OpenVINO (bf16 where the CPU has it). The ONNX file is
    checked against PyTorch first, then the IR on OpenVINO in fp32; a failed check is an error (exit code 2).
    """
    _require_export()
    from animeseg import export as ex
    from animeseg.cli.console import console, progress, summary_table
    from animeseg.weights import packaged_model

    model = model if model is not None else packaged_model("pt")
    images = (_calibration_images(calibration) if calibration else ex.calibration_images()) if int8 else None
    image = images[0] if images else None
    precision = "int8" if int8 else "fp32"
    with progress() as bar:
        task = bar.add_task(f"exporting {model.name}", total=4)
        onnx_path = ex.export_detector(model, imgsz=imgsz, int8=int8, out=out, calibration=images)
        bar.update(task, advance=1, description="checking ONNX parity")
        reports = [ex.check_detector(model, onnx_path, image=image, imgsz=imgsz, precision=precision)]
        bar.update(task, advance=1, description="converting to OpenVINO")
        xml = ex.export_openvino(onnx_path)
        bar.update(task, advance=1, description="checking OpenVINO parity")
        reports.append(ex.check_detector(model, xml, image=image, imgsz=imgsz, precision=precision))
        bar.advance(task)
    for report in reports:
        console.print(parity_table(report))
    rows = [
        (str(f), f"{f.stat().st_size / 2**20:.1f} MB", precision, "passed" if r.passed else "FAILED")
        for r in reports
        for f in ([r.path, r.path.with_suffix(".bin")] if r.path.suffix == ".xml" else [r.path])
    ]
    console.print(summary_table("OpenVINO export", ["file", "size", "precision", "parity"], rows))
    for report in reports:
        ex.raise_if_failed(report)


def _require_export() -> None:
    """Exporting reads PyTorch checkpoints and writes ONNX: one line naming the extra when either is missing."""
    from animeseg.errors import require

    for module in ("torch", "ultralytics", "onnx"):
        require(module, "animeseg export", extra="export")


def _calibration_images(sources: list[str], limit: int = 200) -> list[Any]:
    """The images named by ``--calibration`` (at most ``limit``), read as RGB; one line when there are none."""
    from animeseg.io import read_image
    from animeseg.media import expand_sources

    paths = [it.path for it in expand_sources(sources) if it.kind == "image"][:limit]
    if not paths:
        raise AnimesegError(f"--calibration {' '.join(sources)}: no images found")
    return [read_image(p) for p in paths]


def parity_table(report: Any) -> Any:
    """A rich renderable of a parity report: a metric table and a line saying what was compared."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    verdict = "[green]passed[/]" if report.passed else "[red]FAILED[/]"
    fmt = "OpenVINO" if Path(report.path).suffix == ".xml" else "ONNX"
    table = Table(
        title=f"{report.model} {report.precision} {fmt} vs PyTorch: {verdict}",
        title_justify="left",
        header_style="bold",
    )
    for i, col in enumerate(("metric", "value", "limit", "")):
        table.add_column(col, justify="left" if i == 0 else "right")
    for name, value, limit, ok in report.rows():
        style = {"pass": "green", "FAIL": "red"}.get(ok, "dim")
        table.add_row(name, value, limit, f"[{style}]{ok}[/]")
    detail = f"{report.path}" + (f": {report.detail}" if report.detail else "")
    return Group(table, Text(detail, style="dim"))
