"""`animeseg predict`: segment anime characters in images, folders, globs and videos."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class RefineMethod(str, Enum):
    none = "none"
    sam = "sam"
    grabcut = "grabcut"


class SamType(str, Enum):
    auto = "auto"
    vit_b = "vit_b"
    vit_l = "vit_l"
    vit_h = "vit_h"


class AlphaMode(str, Enum):
    binary = "binary"
    matte = "matte"


DEFAULT_SAVE = "json,overlays,video"


def parse_classes(text: str | None) -> list[int] | None:
    """``"0,2"`` (commas or spaces) -> ``[0, 2]``; None or empty -> None (every class)."""
    if text is None or not text.strip():
        return None
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give class ids as integers, e.g. --classes 0 or --classes 0,2") from None
    if any(v < 0 for v in values):
        raise typer.BadParameter("class ids are 0 or more")
    return sorted(set(values))


def _sam_source(refine: RefineMethod, sam_checkpoint: Path | None) -> Path | None:
    """The SAM checkpoint (file, or exported ONNX folder with sam.json) for --refine sam, checked before any
    work; None for the other methods."""
    from animeseg.console import warn
    from animeseg.errors import AnimesegError, MissingWeightsError
    from animeseg.sam import SAM_HINT
    from animeseg.weights import default_sam

    if refine is not RefineMethod.sam:
        if sam_checkpoint is not None:
            warn(f"--sam-checkpoint is only used with --refine sam; ignored with --refine {refine.value}")
        return None
    if sam_checkpoint is None:
        found = default_sam()
        if found is None:
            raise AnimesegError(
                "--refine sam needs a SAM checkpoint: pass --sam-checkpoint PATH or get one with "
                "`animeseg weights download sam_vit_b` (--refine grabcut needs no weights)"
            )
        return found
    path = sam_checkpoint.expanduser()
    if path.is_dir():
        if not (path / "sam.json").is_file():
            raise AnimesegError(f"{path}: a folder, but not an exported SAM (no sam.json in it)")
        return path
    if not path.is_file():
        raise MissingWeightsError(path, SAM_HINT)
    return path


def _check_device(device: str | None) -> str | None:
    """Validate ``--device`` (Ultralytics' spelling: ``cpu``, ``0``, ``cuda:0``, ``mps``) before any work and
    return it as torch spells it (``cuda:0``), for the refiner; None stays None (automatic)."""
    if device is None:
        return None
    from animeseg._offline import import_ultralytics
    from animeseg.errors import AnimesegError

    import_ultralytics()
    from ultralytics.utils.torch_utils import select_device

    try:
        return str(select_device(device, verbose=False))
    except Exception as e:
        raise AnimesegError(f"--device {device}: {str(e).splitlines()[0]}") from None


def _file_stamp(path: Path) -> dict:
    """Identity of a model file for resume records: changing the weights invalidates earlier outputs."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return {"path": str(path.resolve()), "files": {p.name: _file_stamp(p)["size"] for p in files}}
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _check_frames(items: list, tracker: str) -> None:
    """--track: the tracker is valid and there are frames to track (one warning line per lone image), else one
    line and exit 2."""
    from animeseg.console import warn
    from animeseg.errors import AnimesegError
    from animeseg.track import lone_images, tracker_config

    tracker_config(tracker)
    lone = lone_images(items)
    lone_keys = {it.key for it in lone}
    if lone and not any(it.kind in ("image", "video") and it.key not in lone_keys for it in items):
        names = ", ".join(it.name for it in lone[:3]) + (f" and {len(lone) - 3} more" if len(lone) > 3 else "")
        raise AnimesegError(
            f"--track needs frames: a video, or a folder of images; {names} "
            f"{'is a single image' if len(lone) == 1 else 'are single images'}"
        )
    for it in lone:
        warn(f"{it.path}: a single image, not a sequence; --track needs frames (its characters are numbered 1, 2...)")


def _tracker_stamp(tracker: str) -> dict | str:
    """Identity of the tracker for resume records (a YAML file's settings count, not only its name)."""
    from animeseg.track import TRACKERS, tracker_config

    return tracker if tracker in TRACKERS else tracker_config(tracker)


def predict(
    sources: list[str] = typer.Argument(
        ...,
        help="Image files, folders (searched recursively), globs (quote them: 'art/**/*.png') and videos "
        "(mp4, avi, mkv, webm, mov, animated GIF; every frame is segmented).",
        show_default=False,
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="YOLOv8-seg weights (.pt or .onnx, or an exported folder). Default: the newest animeseg-trained "
        "weights in weights/, else the official weights/yolov8m-seg.pt.",
        show_default=False,
    ),
    imgsz: int = typer.Option(640, "--imgsz", min=32, help="Inference size in pixels (long side)."),
    conf: float = typer.Option(0.25, "--conf", min=0.0, max=1.0, help="Minimum detection confidence."),
    iou: float = typer.Option(0.7, "--iou", min=0.0, max=1.0, help="IoU threshold of non-maximum suppression."),
    max_det: int = typer.Option(300, "--max-det", min=1, help="Most instances kept per image."),
    device: str | None = typer.Option(
        None, "--device", help="cpu, 0, cuda:0, mps... Default: the first GPU if there is one, else the CPU."
    ),
    classes: str | None = typer.Option(
        None, "--classes", help="Keep only these class ids, comma-separated (with COCO models 0 = person)."
    ),
    out: Path = typer.Option(
        Path("runs/predict"), "--out", "-o", help="Output folder; outputs mirror the inputs' relative paths."
    ),
    save: str = typer.Option(
        DEFAULT_SAVE,
        "--save",
        help="Outputs, comma-separated: json (predictions.json), masks (0/255 PNG per instance), semantic (union "
        "per image), cutouts (RGBA per character + whole image), overlays, txt (YOLO-seg labels), video "
        "(annotated copy of each video; replaces per-frame overlays), or all.",
    ),
    refine: RefineMethod = typer.Option(
        RefineMethod.none,
        "--refine",
        help="Mask refinement: sam (Segment Anything, prompted with YOLO's boxes), grabcut (needs no weights) or "
        "none. Refined masks are kept only where they agree with YOLO's.",
    ),
    sam_checkpoint: Path | None = typer.Option(
        None,
        "--sam-checkpoint",
        help="SAM checkpoint (.pth) or exported SAM ONNX folder, for --refine sam. Default: an official SAM "
        "file in weights/.",
        show_default=False,
    ),
    sam_type: SamType = typer.Option(
        SamType.auto, "--sam-type", help="SAM architecture; auto reads it from the checkpoint."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Skip inputs whose outputs in --out are complete from an earlier run."
    ),
    track: bool = typer.Option(
        False,
        "--track",
        help="Follow each character through a video, or through the images of one folder (a sequence, in name "
        "order): every instance gets a track_id, overlays and videos colour characters by track, and cut-outs "
        "go to one folder per track. --conf is what a detection needs to start a track.",
    ),
    tracker: str = typer.Option(
        "bytetrack", "--tracker", help="With --track: bytetrack or botsort (Ultralytics' trackers), or a tracker YAML."
    ),
    alpha: AlphaMode = typer.Option(
        AlphaMode.binary,
        "--alpha",
        help="Alpha of the cut-outs: binary (the mask, 0 or 255) or matte (soft edges from image matting around "
        "the mask's edge, colours cleaned of the old background; about a second or more per character).",
    ),
) -> None:
    """Segment anime characters: YOLOv8-seg instances at full resolution, optionally refined by SAM or GrabCut.

    Exit code 0 when every input succeeded, 1 when some failed (one line each), 2 on a usage error.
    """
    from animeseg.console import console, error, warn
    from animeseg.media import expand_sources
    from animeseg.writers import parse_save
    from animeseg.yolo import resolve_model

    try:
        kinds = parse_save(save)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--save") from None
    if not kinds:
        raise typer.BadParameter("name at least one output", param_hint="--save")
    class_ids = parse_classes(classes)

    # everything that can be wrong with the set-up fails here, in one line, before any image is read
    if model is None:
        from animeseg.weights import default_model

        model = default_model()
    model_file = Path(resolve_model(model))
    sam_path = _sam_source(refine, sam_checkpoint)
    torch_device = _check_device(device)

    items = expand_sources(sources, exclude=out)
    if not items:
        error(f"no images or videos found in {', '.join(sources)}")
        raise typer.Exit(1)
    if track:
        _check_frames(items, tracker)
    elif tracker != "bytetrack":
        warn("--tracker is only used with --track; ignored")
    if alpha is AlphaMode.matte and "cutouts" not in kinds:
        warn("--alpha matte only changes cut-outs; add cutouts to --save (ignored)")

    from animeseg.predict import Segmenter

    refiner = None
    if refine is not RefineMethod.none:
        from animeseg.refine import build_refiner

        refiner = build_refiner(refine.value, sam_checkpoint=sam_path, sam_type=sam_type.value, device=torch_device)
    segmenter = Segmenter(
        model_file, refiner, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=device, classes=class_ids
    )
    if track:
        from animeseg.track import TrackingSegmenter

        segmenter = TrackingSegmenter(segmenter, tracker)
    signature = {
        "model": _file_stamp(model_file) if model_file.exists() else str(model_file),
        "imgsz": imgsz,
        "conf": conf,
        "iou": iou,
        "max_det": max_det,
        "classes": class_ids,
        "refine": refine.value,
        "sam": _file_stamp(sam_path) if sam_path is not None else None,
        "sam_type": sam_type.value if sam_path is not None else None,
        "track": _tracker_stamp(tracker) if track else None,
        "alpha": alpha.value,
    }

    from animeseg.runner import print_summary, run

    summary = run(items, segmenter, out, kinds, resume=resume, signature=signature, alpha=alpha.value)
    print_summary(summary)
    if summary.predictions is not None:
        console.print(f"predictions: {summary.predictions}", soft_wrap=True)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
