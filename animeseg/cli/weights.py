"""`animeseg weights` commands: list, download and verify the official checkpoints.

`download` is the only command in animeseg that uses the network.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Model files: list, download (the only command that uses the network), verify and import them.\n\n"
    "The official checkpoints are YOLOv8n/s/m-seg, SAM vit_b/l/h, MobileSAM, SAM 2.1 t/s/b/l and torchvision's "
    "COCO Mask R-CNN / MobileNetV3 starting points; `download` puts them into weights/ and checks their SHA-256.",
    no_args_is_help=True,
)

_DIR_HELP = "Weights folder (default: $ANIMESEG_WEIGHTS, else weights/ of the project)."


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


@app.command("list")
def list_(
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Show the official checkpoints, their SHA-256 and whether they are in the weights folder, plus any
    animeseg-trained weights and the model `predict` uses by default."""
    from animeseg import weights as W
    from animeseg.cli.console import console, summary_table
    from animeseg.errors import MissingWeightsError
    from animeseg.settings import describe_defaults, model_defaults

    rows = []
    for w in W.OFFICIAL.values():
        path = W.official_path(w, directory)
        if path.is_file():
            state = "present" if w.size is None or path.stat().st_size == w.size else "present (size differs)"
        elif W.part_path(path).is_file():
            state = "partial download"
        else:
            state = "missing"
        # the light SAMs' and torchvision's authors publish no size: show the file's own when it is here
        size = _size(w.size) if w.size is not None else _size(path.stat().st_size) if path.is_file() else "unpublished"
        rows.append((w.name, w.filename, size, state))
    title = f"Official weights in {W.weights_dir(directory)}"
    console.print(summary_table(title, ["name", "file", "size", "status"], rows))
    # sha256sum's own format, so `sha256sum -c` can check a folder fetched by hand
    console.print("SHA-256 (where each digest comes from below):")
    for w in W.OFFICIAL.values():
        digest = w.sha256 if w.sha256 is None or len(w.sha256) == 64 else f"{w.sha256} (published prefix)"
        console.print(f"{digest or 'not published':64}  {w.filename}", soft_wrap=True, highlight=False)
    for src in sorted({w.digest_source for w in W.OFFICIAL.values()}):
        names = ", ".join(w.name for w in W.OFFICIAL.values() if w.digest_source == src)
        console.print(f"{names}: {src}", soft_wrap=True)
    trained = W.trained_weights(directory)
    for p in trained:
        console.print(f"animeseg-trained: {p}", soft_wrap=True)
    packaged = [
        (W.DEFAULT_NAME, str(W.packaged_model(f)), _size(W.packaged_model(f).stat().st_size))
        for f in ("onnx", "pt")
        if W.packaged_model(f).is_file()
    ]
    if packaged:
        console.print(summary_table("Packaged anime model (docs/model.md)", ["name", "file", "size"], packaged))
    try:
        default = W.default_model(directory)
        console.print(f"default model for predict: {default}", soft_wrap=True)
        console.print(f"its defaults: {describe_defaults(model_defaults(default))}", soft_wrap=True, markup=False)
    except MissingWeightsError as e:
        console.print(f"default model for predict: none ({e})", soft_wrap=True)


@app.command("download")
def download(
    names: list[str] = typer.Argument(
        None,
        metavar="NAME...",
        help="Names to fetch: yolov8n-seg, yolov8s-seg, yolov8m-seg, sam_vit_b, sam_vit_l, sam_vit_h, mobile_sam, "
        "sam2.1_t, sam2.1_s, sam2.1_b, sam2.1_l, maskrcnn_resnet50_fpn_v2, fasterrcnn_mobilenet_v3_large_fpn.",
    ),
    all_: bool = typer.Option(False, "--all", help="Fetch every official file."),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the server before giving up."),
) -> None:
    """Download official checkpoints into the weights folder, resuming partial downloads, and check their
    SHA-256. Without network it says which address to fetch by hand and where to put the file."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from animeseg import weights as W
    from animeseg.cli.console import console, progress

    if all_:
        names = list(W.OFFICIAL)
    if not names:
        raise typer.BadParameter("name at least one checkpoint (see `animeseg weights list`) or pass --all")
    entries = [W.find(n) for n in names]
    for entry in entries:
        with progress(DownloadColumn(), TransferSpeedColumn()) as bar:
            task = bar.add_task(entry.name, total=entry.size)

            def start(total: int | None, have: int, task=task, bar=bar) -> None:
                bar.update(task, total=total, completed=have)

            path = W.download(
                entry,
                directory,
                on_start=start,
                on_bytes=lambda n, task=task, bar=bar: bar.advance(task, n),
                timeout=timeout,
            )
        if entry.sha256 and len(entry.sha256) < 64:
            check = f"sha256 prefix {entry.sha256} verified"
        elif entry.sha256:
            check = "sha256 verified"
        else:
            check = f"no published digest, unverified: sha256 {W.sha256_file(path)}"
        console.print(f"{entry.name}: {path} ({check})", soft_wrap=True)


@app.command("import")
def import_(
    onnx_model: Path = typer.Argument(
        ...,
        help="An Ultralytics YOLOv8/YOLO11 detect or segment ONNX export (fp32, fp16 or dynamically quantised int8).",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Checkpoint to write (default: weights/<onnx name>.pt)."),
    classes: list[str] = typer.Option(
        None,
        "--class",
        "-c",
        metavar="CLASS",
        help="Keep only this class (id or name; repeat it): the head is cut down to them.",
    ),
    names: list[str] = typer.Option(
        None, "--name", metavar="NAME", help="New names for the kept classes, in order; repeat it."
    ),
    image: Path | None = typer.Option(
        None, "--image", help="Image for the parity check (default: the example image shipped with animeseg)."
    ),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Turn an ONNX export back into a trainable checkpoint (for `animeseg train --model`, `predict`, `export`),
    and show its detections against the ONNX model's on a sample image."""
    from animeseg import weights as W
    from animeseg.cli.console import console, summary_table
    from animeseg.io import read_image
    from animeseg.onnx_to_checkpoint import compare, import_onnx

    dest = out or W.weights_dir(directory) / f"{onnx_model.stem}.pt"
    result = import_onnx(onnx_model, dest, classes=classes or None, rename=names or None)
    console.print(
        f"{result.checkpoint}: {result.architecture} ({result.task}, {len(result.names)} classes, "
        f"imgsz {result.imgsz}) from {result.precision} weights, {result.tensors} tensors",
        soft_wrap=True,
    )
    if result.kept_classes is not None:
        console.print("kept classes: " + ", ".join(f"{i}: {n}" for i, n in result.names.items()), soft_wrap=True)
        return  # the head changed on purpose: detections can no longer be compared one to one
    sample = image or W.example_image()
    parity = compare(onnx_model, result.checkpoint, read_image(sample))
    rows = [
        (
            r.cls,
            f"{r.onnx_conf:.3f}",
            "-" if r.ckpt_conf is None else f"{r.ckpt_conf:.3f}",
            f"{r.box_iou:.3f}",
            "-" if r.mask_iou is None else f"{r.mask_iou:.3f}",
        )
        for r in parity.rows
    ]
    title = f"ONNX vs checkpoint on {sample.name} at {parity.imgsz} px ({parity.onnx_count} vs {parity.ckpt_count})"
    console.print(summary_table(title, ["class", "ONNX conf", "ckpt conf", "box IoU", "mask IoU"], rows))
    console.print("parity: " + ("ok" if parity.ok() else "DIFFERS (see the rows above)"))


@app.command("verify")
def verify(
    targets: list[str] = typer.Argument(
        None,
        metavar="NAME_OR_FILE...",
        help="Official names or file paths to check (default: every official file present in the weights folder).",
    ),
    sha256: str | None = typer.Option(
        None, "--sha256", help="Expected digest, for a file that is not one of the official ones."
    ),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Check files against their published SHA-256. Exit code 1 if any differs."""
    from animeseg import weights as W
    from animeseg.cli.console import console, error
    from animeseg.errors import AnimesegError, MissingWeightsError

    if sha256 is not None and not W.is_sha256(sha256):
        raise typer.BadParameter("--sha256 must be 64 hexadecimal digits")
    jobs: list[tuple[Path, str | None, str]] = []
    if not targets:
        for w in W.OFFICIAL.values():
            path = W.official_path(w, directory)
            if path.is_file():
                jobs.append((path, w.sha256, w.name))
        if not jobs:
            console.print(f"no official weights in {W.weights_dir(directory)}; nothing to verify")
            return
    for target in targets or []:
        path = Path(target).expanduser()
        if sha256 is not None:
            jobs.append((path, sha256, str(path)))
            continue
        try:
            entry = W.find(path.name)
        except AnimesegError:
            raise AnimesegError(
                f"{target}: not an official file name; pass --sha256 HEX to check it against a digest"
            ) from None
        if not path.is_file() and path.parent == Path("."):
            path = W.official_path(entry, directory)
        jobs.append((path, entry.sha256, entry.name))
    bad = 0
    for path, expected, label in jobs:
        try:
            result = W.verify(path, expected)
        except MissingWeightsError as e:
            error(str(e))
            bad += 1
            continue
        if result.ok:
            console.print(f"[green]ok[/] {label}: {path} sha256 {result.actual}", soft_wrap=True)
        elif result.ok is None:
            console.print(f"{label}: {path} sha256 {result.actual} (no published digest)", soft_wrap=True)
        else:
            error(f"{path}: SHA-256 {result.actual} does not match the expected {result.expected}")
            bad += 1
    if bad:
        raise typer.Exit(1)
