"""`animeseg predict`: segment anime characters in images, folders, globs and videos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from animeseg.cli import options

DEFAULT_SAVE = "json,overlays,cutouts,video"


def _check_alpha(value: str) -> str:
    from animeseg.matte import ALPHA_MODES

    if value not in ALPHA_MODES:
        raise typer.BadParameter(f"--alpha {value}: choose one of {', '.join(ALPHA_MODES)}")
    return value


Track = Annotated[
    bool,
    typer.Option(
        "--track",
        help="Follow each character through a video, or through the images of one folder (a sequence, in name "
        "order): every instance gets a track_id, overlays and videos colour characters by track, and cut-outs "
        "go to one folder per track. --conf is what a detection needs to start a track.",
    ),
]
Tracker = Annotated[
    str,
    typer.Option(
        "--tracker",
        metavar="[bytetrack|botsort|FILE.yaml]",
        help="With --track: bytetrack or botsort (Ultralytics' trackers), or a tracker YAML in their format.",
    ),
]
Stabilize = Annotated[
    bool,
    typer.Option(
        "--stabilize/--no-stabilize",
        help="With --track: make each character's mask consistent with its previous frames (motion-compensated "
        "blending along the track), so edges do not flicker; --no-stabilize keeps every frame's own masks.",
    ),
]
LabelmeImageData = Annotated[
    bool,
    typer.Option(
        "--labelme-image-data",
        help="With --save labelme: also embed each image in its LabelMe file (imageData, as LabelMe's own "
        "option does), so the file stands alone; by default it names the copy beside it (imagePath).",
    ),
]
Alpha = Annotated[
    str,
    typer.Option(
        "--alpha",
        metavar="[binary|matte]",
        callback=_check_alpha,
        help="Alpha of the cut-outs: binary (the mask, 0 or 255) or matte (soft edges from image matting around "
        "the mask's edge, colours cleaned of the old background; about a second or more per character).",
    ),
]


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
    from animeseg.cli.console import warn
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
        metavar="SOURCE...",
        help="Image files, folders (searched recursively), globs (quote them: 'art/**/*.png') and videos "
        "(mp4, avi, mkv, webm, mov, animated GIF; every frame is segmented).",
        show_default=False,
    ),
    model: options.Model = None,
    imgsz: options.Imgsz = None,
    conf: options.Conf = None,
    iou: options.Iou = None,
    max_det: options.MaxDet = None,
    device: options.Device = None,
    classes: options.Classes = None,
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="DIR",
        help="Output folder; outputs mirror the inputs' relative paths. Default: runs/predict, or the next free "
        "runs/predict2, 3... (with --resume: the latest). A folder that holds files needs --resume or --overwrite.",
        show_default=False,
    ),
    save: str = typer.Option(
        DEFAULT_SAVE,
        "--save",
        metavar="KINDS",
        help="Outputs, comma-separated: json (predictions.json), masks (0/255 PNG per instance), semantic (union "
        "per image), cutouts (RGBA per character + whole image), overlays, txt (YOLO-seg labels), labelme (a "
        "LabelMe file per image or video frame, beside a copy of it: correct it in LabelMe, then build a dataset "
        "from the folder, see docs/data.md), video "
        "(annotated copy of each video; replaces per-frame overlays), layers (a layered PSD per image: the image, "
        "then one layer per character, occluders on top; with --alpha's cut-outs), frame-layers (the same PSD "
        "for every video frame), or all.",
    ),
    refine: options.Refine = None,
    refine_sam: options.RefineSam = False,
    sam_checkpoint: options.SamCheckpoint = None,
    sam_type: options.SamType = "auto",
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out: skip inputs whose outputs are complete from it."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the earlier run in --out: its outputs and records are removed first (other files stay).",
    ),
    engine: options.EngineOpt = options.EngineName.local,
    ray_address: options.RayAddress = None,
    workers: options.Workers = None,
    gpus_per_worker: options.GpusPerWorker = 0.0,
    track: Track = False,
    tracker: Tracker = "bytetrack",
    stabilize: Stabilize = True,
    alpha: Alpha = "binary",
    labelme_image_data: LabelmeImageData = False,
    runtime: options.Runtime = "auto",
) -> None:
    """Segment anime characters: YOLOv8-seg instances at full resolution, masks redrawn by the learned refiner.

    The learned refiner is the packaged model's default: --refine none turns it off, grabcut or sam replace it.

    Exit code 0 when every input succeeded, 1 when some failed (one line each), 2 on a usage error.
    """
    from animeseg.cli.console import error, warn
    from animeseg.device import resolve_device
    from animeseg.media import expand_sources
    from animeseg.runs import clear_run, output_folder
    from animeseg.settings import model_defaults
    from animeseg.writers import parse_save

    try:
        kinds = parse_save(save)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--save") from None
    if not kinds:
        raise typer.BadParameter("name at least one output", param_hint="--save")
    class_ids = options.parse_class_ids(classes)

    # everything that can be wrong with the set-up fails here, in one line, before any image is read
    out = output_folder(out, resume=resume, overwrite=overwrite)
    run_on = options.engine(engine, ray_address, workers, gpus_per_worker)
    model_file = options.model_file(model)
    method = options.refine_method(refine, refine_sam, model_defaults(model_file).refine)
    options.check_alpha(alpha, method)  # before any image, not once per image
    settings = options.detect_settings(
        model_file, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, device=device, classes=class_ids
    )
    from animeseg.runtime.session import parse_runtime

    parse_runtime(runtime)
    settings = settings.override(runtime=runtime)
    torch_device = resolve_device(device)
    refine_with = options.refine_options(method, sam_checkpoint, sam_type, torch_device)

    items = expand_sources(sources, exclude=out)
    if not items:
        error(f"no images or videos found in {', '.join(sources)}")
        raise typer.Exit(1)
    if track:
        if not run_on.in_process:
            raise typer.BadParameter("--track needs the local engine (a sequence is tracked in order in one process)")
        _check_frames(items, tracker)
    else:
        if tracker != "bytetrack":
            warn("--tracker is only used with --track; ignored")
        if not stabilize:
            warn("--no-stabilize is only used with --track; ignored")
    if alpha == "matte" and "cutouts" not in kinds:
        warn("--alpha matte only changes cut-outs; add cutouts to --save (ignored)")
    if labelme_image_data and "labelme" not in kinds:
        warn("--labelme-image-data only changes LabelMe files; add labelme to --save (ignored)")

    from animeseg.predict import LazySegmenter, SegmenterSpec, check_classes

    spec = SegmenterSpec(model_file, method, refine_with, settings)
    # here: loaded now, so a broken model fails before any input; elsewhere: loaded once in each worker (its
    # classes checked here, on the names the runner reads anyway)
    if run_on.in_process:
        segmenter = spec.build()
    else:
        segmenter = LazySegmenter(spec)
        check_classes(settings.classes, segmenter.names, model_file)
    sam_path = refine_with.sam_checkpoint
    if track:
        from animeseg.track import TrackingSegmenter

        segmenter = TrackingSegmenter(segmenter, tracker, stabilize=stabilize)
    signature = {
        "model": _file_stamp(model_file) if model_file.exists() else str(model_file),
        **{k: v for k, v in settings.as_dict().items() if k != "device"},
        "refine": method,
        "sam": _file_stamp(sam_path) if sam_path is not None else None,
        "sam_type": refine_with.sam_type if sam_path is not None else None,
        "track": _tracker_stamp(tracker) if track else None,
        "alpha": alpha,
    }
    if labelme_image_data:  # only runs that embed images have it: earlier records stay valid
        signature["labelme_image_data"] = True
    if track:
        signature["stabilize"] = stabilize  # only tracked runs have it: untracked records stay valid

    from animeseg.cli.render import ProgressBars, print_run_summary
    from animeseg.runner import run

    if overwrite:
        clear_run(out)
    with ProgressBars() as bars:
        summary = run(
            items,
            segmenter,
            out,
            kinds,
            resume=resume,
            signature=signature,
            on_progress=bars,
            engine=run_on,
            alpha=alpha,
            labelme_image_data=labelme_image_data,
        )
    print_run_summary(summary)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
