"""`animeseg cut INPUT OUTPUT.png`: the image with every character kept and the background transparent."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from animeseg.cli import options
from animeseg.errors import AnimesegError, InputError

#: Formats that keep an alpha channel (a cut-out written as JPEG would lose its transparency).
RGBA_EXTS = (".png", ".webp", ".tif", ".tiff")


def _read(source: str):  # -> np.ndarray
    """The RGB image at ``source`` (``-``: the bytes on standard input)."""
    import tempfile

    from animeseg.io import read_image

    if source != "-":
        return read_image(source)
    data = sys.stdin.buffer.read()
    with tempfile.TemporaryDirectory(prefix="animeseg-cut-") as tmp:
        path = Path(tmp) / "stdin"
        path.write_bytes(data)
        try:
            return read_image(path)
        except InputError as e:
            raise InputError("standard input", e.problem) from None


def cut(
    source: str = typer.Argument(..., metavar="INPUT", help="An image file, or - to read it from standard input."),
    target: str = typer.Argument(
        ...,
        metavar="OUTPUT",
        help=f"Where the RGBA image goes ({', '.join(e[1:] for e in RGBA_EXTS)}), or - for standard output (PNG).",
    ),
    model: options.Model = None,
    imgsz: options.Imgsz = None,
    conf: options.Conf = None,
    device: options.Device = None,
    classes: options.Classes = None,
    refine: options.Refine = None,
    sam_checkpoint: options.SamCheckpoint = None,
    sam_type: options.SamType = "auto",
    alpha: Annotated[
        str,
        typer.Option(
            "--alpha",
            metavar="[binary|matte]",
            help="binary: alpha is the characters' masks; matte: soft edges by image matting (slower).",
        ),
    ] = "binary",
) -> None:
    """Cut out every character: the image, transparent outside the characters (like rembg, for anime art).

    The same segmentation as `animeseg predict` (its model, defaults and options); the result is what predict
    writes as cutouts/<name>.png. Exit code 0 also when no character is found (the image is then all
    transparent, and a warning says so).
    """
    from animeseg.background import cut as cut_image
    from animeseg.cli.console import warn
    from animeseg.io import encode_image, write_image
    from animeseg.matte import ALPHA_MODES
    from animeseg.predict import SegmenterSpec
    from animeseg.settings import model_defaults

    if alpha not in ALPHA_MODES:
        raise typer.BadParameter(f"--alpha {alpha}: choose one of {', '.join(ALPHA_MODES)}", param_hint="--alpha")
    if target != "-" and Path(target).suffix.lower() not in RGBA_EXTS:
        raise AnimesegError(
            f"{target}: a cut-out needs transparency; name the output .png (or {', '.join(RGBA_EXTS[1:])})"
        )
    model_file = options.model_file(model)
    method = options.refine_method(refine, False, model_defaults(model_file).refine)
    options.check_alpha(alpha, method)
    settings = options.detect_settings(
        model_file, imgsz=imgsz, conf=conf, device=device, classes=options.parse_class_ids(classes)
    )
    from animeseg.device import resolve_device

    refine_with = options.refine_options(method, sam_checkpoint, sam_type, resolve_device(device))
    segmenter = SegmenterSpec(model_file, method, refine_with, settings).build()

    image = _read(source)
    rgba = cut_image(image, segmenter=segmenter, alpha=alpha)
    if not rgba[..., 3].any():
        warn(f"{source}: no character found; the cut-out is fully transparent")
    if target == "-":
        sys.stdout.buffer.write(encode_image(rgba, ".png"))
        sys.stdout.buffer.flush()
    else:
        write_image(target, rgba)
