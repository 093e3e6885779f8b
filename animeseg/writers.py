"""Prediction outputs (``animeseg predict --save``), each written atomically through :mod:`animeseg.io`.

Layout under the output folder, for an input whose key is ``sub/a`` (see :class:`animeseg.media.MediaItem`):

=============  ==================================================================================
``json``       ``predictions.json``: images (with status), COCO result annotations, categories
``masks``      ``masks/sub/a_<i>.png``: one 0/255 mask per instance, full image size
``semantic``   ``semantic/sub/a.png``: the union of all instances, 0/255
``cutouts``    ``cutouts/sub/a_<i>.png``: RGBA crop of instance i to its box (alpha = mask, or a soft matte
               with ``alpha="matte"``), and ``cutouts/sub/a.png``: the whole image, transparent outside every
               instance; tracked instances go to one folder per track instead (:func:`track_cutout_path`)
``overlays``   ``overlays/sub/a.jpg``: the image with coloured masks, boxes, labels and scores
``txt``        ``labels/sub/a.txt``: YOLO-seg labels (``class x1 y1 x2 y2 ...``, normalised)
``labelme``    ``labelme/sub/a.json``: a LabelMe 5.x file (:func:`animeseg.labelme.document`) beside a copy of
               the image (``labelme/sub/a.jpg``), to correct in LabelMe and build a dataset from; a video's
               frames go to a folder per video: ``labelme/<video key>/<frame, 6 digits>.json`` (and ``.jpg``)
``video``      ``videos/<key>.mp4``: an annotated copy of each input video
``layers``     ``layers/sub/a.psd``: a layered Photoshop file per image (:func:`layered_image`): the image at
               the bottom, one layer per character above it, occluders above the occluded; images only
``frame-       ``layers/<video key>#<frame>.psd``: the same for every frame of every video (hundreds of files
layers``       per clip, hence a kind of its own)
=============  ==================================================================================

``<i>`` is the instance's position in the image, the same order as its annotations in predictions.json.
Video frames use the key ``<video key>#<frame, 6 digits>``. Tracked instances (``Instances.track_ids``) are
coloured and labelled by track in overlays and carry ``track_id`` in predictions.json.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from animeseg import cocojson
from animeseg._lazy import cv2
from animeseg.cocojson import plain
from animeseg.instances import Instances
from animeseg.io import atomic_path, encode_image, write_bytes, write_image, write_json, write_text
from animeseg.labelme import document
from animeseg.masks import mask_to_box, mask_to_polygon, occlusion_order
from animeseg.matte import ALPHA_MODES, matte
from animeseg.overlay import render_overlay
from animeseg.psd import Layer, composite, encode_psd
from animeseg.yolo_labels import format_line, is_writable

SAVE_KINDS = (
    "json",
    "masks",
    "cutouts",
    "overlays",
    "semantic",
    "txt",
    "labelme",
    "video",
    "layers",
    "frame-layers",
)
#: Per-image outputs (everything but the run-level json and the per-video video).
IMAGE_KINDS = ("masks", "cutouts", "overlays", "semantic", "txt", "labelme", "layers", "frame-layers")
#: The layered file: ``layers`` writes it for images, ``frame-layers`` for video frames (see the runner).
LAYER_KINDS = ("layers", "frame-layers")
PREDICTIONS = "predictions.json"
#: Top folder of each kind's files under the output folder.
KIND_FOLDERS = {
    "masks": "masks",
    "semantic": "semantic",
    "cutouts": "cutouts",
    "overlays": "overlays",
    "txt": "labels",
    "labelme": "labelme",
    "video": "videos",
    "layers": "layers",
    "frame-layers": "layers",
}


def parse_save(text: str | Iterable[str]) -> list[str]:
    """``"json,masks"`` (or a list) -> the kinds in canonical order; ``all`` means every kind.

    Raises ValueError naming the unknown kind.
    """
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
    kinds = {p.strip().lower() for p in parts if p.strip()}
    if "all" in kinds:
        kinds = set(SAVE_KINDS)
    unknown = sorted(kinds - set(SAVE_KINDS))
    if unknown:
        raise ValueError(f"unknown output kind {unknown[0]!r}; choose from {', '.join(SAVE_KINDS)} or all")
    return [k for k in SAVE_KINDS if k in kinds]


# ------------------------------------------------------------------------------------------------ paths
def mask_path(key: str, i: int) -> str:
    return f"{KIND_FOLDERS['masks']}/{key}_{i}.png"


def semantic_path(key: str) -> str:
    return f"{KIND_FOLDERS['semantic']}/{key}.png"


def cutout_path(key: str, i: int | None = None) -> str:
    folder = KIND_FOLDERS["cutouts"]
    return f"{folder}/{key}.png" if i is None else f"{folder}/{key}_{i}.png"


def track_cutout_path(folder: str, track_id: int, frame: str) -> str:
    """Cut-out of track ``track_id`` in one frame: ``cutouts/<folder>track_<id, 3 digits>/<frame>.png``.

    ``folder`` ends the sequence's own part of the path: ``clip#`` for a video (next to its frames' files
    ``clip#000012.png``), ``sub/`` for the images of folder ``sub`` (empty for the source root).
    """
    return f"{KIND_FOLDERS['cutouts']}/{folder}track_{int(track_id):03d}/{frame}.png"


def overlay_path(key: str) -> str:
    return f"{KIND_FOLDERS['overlays']}/{key}.jpg"


def label_path(key: str) -> str:
    return f"{KIND_FOLDERS['txt']}/{key}.txt"


def labelme_path(key: str, suffix: str = ".json") -> str:
    """The LabelMe file of an image (``suffix`` another: the copy of its image beside it); a video frame's key
    ``clip#000012`` gives ``labelme/clip/000012.json``, a folder per video, as LabelMe opens folders."""
    return f"{KIND_FOLDERS['labelme']}/{key.replace('#', '/')}{suffix}"


def layers_path(key: str) -> str:
    return f"{KIND_FOLDERS['layers']}/{key}.psd"


def video_path(key: str) -> str:
    return f"{KIND_FOLDERS['video']}/{key}.mp4"


# ------------------------------------------------------------------------------------------------ content
def semantic_mask(instances: Instances) -> np.ndarray:
    """(H, W) bool union of every instance mask."""
    return instances.masks.any(axis=0) if len(instances) else np.zeros(instances.image_size, bool)


def _crop_box(instances: Instances, i: int, visible: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """Integer pixel box ``x1, y1, x2, y2`` of instance i: the extent of ``visible`` (default: its mask), else its
    detection box; at least one pixel, inside the image."""
    h, w = instances.image_size
    mask = instances.masks[i] if visible is None else visible
    box = mask_to_box(mask) if mask.any() else [float(v) for v in instances.boxes[i]]
    x1 = int(np.clip(np.floor(box[0]), 0, w - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, h - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1 + 1, w))
    y2 = int(np.clip(np.ceil(box[3]), y1 + 1, h))
    return x1, y1, x2, y2


def cutout(
    image: np.ndarray,
    mask: np.ndarray,
    box: Sequence[int] | None = None,
    alpha: str = "binary",
    soft: np.ndarray | None = None,
) -> np.ndarray:
    """RGBA (h, w, 4) uint8 cut-out of ``mask`` from the RGB ``image``, cropped to ``box`` (``x1, y1, x2, y2``
    integer pixels; the whole image when None).

    ``alpha="binary"``: alpha 255 inside ``mask`` and 0 outside, the image's colours. ``alpha="matte"``: a soft
    alpha (it may reach a few pixels beyond the mask) and colours cleaned of the old background (straight, not
    premultiplied, as PNG stores them): the refiner's own alpha ``soft`` (H, W) uint8 when given
    (:func:`animeseg.matte.from_alpha`), else image matting (:func:`animeseg.matte.matte`).
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
    if alpha == "matte":
        if soft is not None:
            from animeseg.matte import from_alpha

            made = from_alpha(image, soft)
        else:
            made = matte(image, mask)
        a = np.clip(made.alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
        rgba = np.dstack([made.foreground, a])
    else:
        rgba = np.dstack([image[..., :3], np.where(mask, 255, 0).astype(np.uint8)])
    if box is not None:
        x1, y1, x2, y2 = box
        rgba = rgba[y1:y2, x1:x2]
    return np.ascontiguousarray(rgba)


def layer_name(instances: Instances, i: int) -> str:
    """Name of instance i's layer: ``<i>: <class> <score>`` (``<i>`` as in the cut-outs' file names), or
    ``track <id>: <class> <score>`` for a tracked instance."""
    who = f"track {int(instances.track_ids[i])}" if instances.track_ids is not None else str(i)
    return f"{who}: {instances.class_names()[i]} {float(instances.scores[i]):.2f}"


def layered_image(
    image: np.ndarray, instances: Instances, cutouts: Sequence[np.ndarray] | None = None, alpha: str = "binary"
) -> tuple[np.ndarray, list[Layer]]:
    """The layers of an image's PSD file, bottom first, and their composite (RGB (H, W, 3) uint8).

    The bottom layer, ``image``, is the RGB ``image`` itself, opaque. Above it, one layer per instance: its
    cut-out (:func:`cutout`, the same alpha and colours as the ``cutouts`` kind, ``cutouts`` given when already
    made: full-size RGBA per instance) cropped to its visible extent and named by :func:`layer_name`, stacked by
    :func:`animeseg.masks.occlusion_order` (occluders above the occluded). With binary alpha the layers hold
    the image's own pixels, so the composite is the image exactly; with a matte their colours are cleaned of
    the old background and the composite differs from the image only in the soft edges.
    """
    rgb = np.ascontiguousarray(image[..., :3])
    h, w = rgb.shape[:2]
    if cutouts is None:
        cutouts = [cutout(rgb, m, alpha=alpha) for m in instances.masks]
    layers = [Layer("image", np.dstack([rgb, np.full((h, w), 255, np.uint8)]))]
    for i in occlusion_order(instances.masks):
        full = cutouts[i]
        x1, y1, x2, y2 = _crop_box(instances, i, full[..., 3] > 0)
        layers.append(Layer(layer_name(instances, i), np.ascontiguousarray(full[y1:y2, x1:x2]), left=x1, top=y1))
    return composite(rgb, layers[1:]), layers


def yolo_seg_lines(instances: Instances, epsilon: float = 0.5) -> list[str]:
    """YOLO-seg label lines (:mod:`animeseg.yolo_labels`), one per instance whose mask yields a polygon of 3 or
    more distinct points; exactly what Ultralytics trains on."""
    h, w = instances.image_size
    lines = []
    for mask, cls in zip(instances.masks, instances.classes, strict=True):
        poly = mask_to_polygon(mask, epsilon=epsilon)
        if len(poly) < 3:
            continue
        norm = np.clip(poly / np.array([w, h], np.float32), 0.0, 1.0)
        if is_writable(norm):
            lines.append(format_line(int(cls), norm))
    return lines


# ------------------------------------------------------------------------------------------------ writing
@dataclass(frozen=True)
class WriteOptions:
    """How :func:`write_image_outputs` writes (its keyword arguments of the same names): the cut-outs'
    ``alpha``, and whether LabelMe files embed their image (``labelme_image_data``)."""

    alpha: str = "binary"
    labelme_image_data: bool = False


def write_image_outputs(
    out: str | Path,
    key: str,
    image: np.ndarray,
    instances: Instances,
    save: Iterable[str],
    *,
    alpha: str = "binary",
    track_path: Callable[[int], str] | None = None,
    source: Path | None = None,
    labelme_image_data: bool = False,
) -> list[str]:
    """Write every per-image output in ``save`` for one image (or video frame) and return their paths relative
    to ``out`` (POSIX), in writing order. ``json`` and ``video`` are not per-image and are ignored here.

    ``alpha`` is the cut-outs' alpha (``binary`` or ``matte``, see :func:`cutout`). ``track_path`` maps a track
    id to its cut-out's path (see :func:`track_cutout_path`): tracked instances are written there instead of
    ``cutouts/<key>_<i>.png``. ``layers`` and ``frame-layers`` both mean the layered file here; which inputs
    get it is the caller's choice (:func:`animeseg.runner.run`: images for one, video frames for the other).
    ``source`` is the file ``image`` was read from (None for a video frame), copied beside its LabelMe file;
    ``labelme_image_data`` also embeds the image in that file (``imageData``).
    """
    out = Path(out)
    save = set(save)
    written: list[str] = []

    def put(rel: str, array: np.ndarray) -> None:
        write_image(out / rel, array, quality=90)
        written.append(rel)

    if "masks" in save:
        for i, m in enumerate(instances.masks):
            put(mask_path(key, i), np.where(m, 255, 0).astype(np.uint8))
    if "semantic" in save:
        put(semantic_path(key), np.where(semantic_mask(instances), 255, 0).astype(np.uint8))
    layered = bool(save & set(LAYER_KINDS))
    # each cut-out (a matte costs about a second) is made once for the cut-out files and the layered file
    soft = instances.alphas
    fulls = (
        [cutout(image, m, alpha=alpha, soft=None if soft is None else soft[i]) for i, m in enumerate(instances.masks)]
        if layered or "cutouts" in save
        else []
    )
    if "cutouts" in save:
        tracks = instances.track_ids if track_path is not None else None
        for i, full in enumerate(fulls):
            x1, y1, x2, y2 = _crop_box(instances, i, full[..., 3] > 0)
            rel = cutout_path(key, i) if tracks is None else track_path(int(tracks[i]))
            put(rel, np.ascontiguousarray(full[y1:y2, x1:x2]))
        whole = None if soft is None or not len(instances) else soft.max(0)
        put(cutout_path(key), cutout(image, semantic_mask(instances), alpha=alpha, soft=whole))
    if "overlays" in save:
        put(overlay_path(key), render_overlay(image, instances))
    if "txt" in save:
        lines = yolo_seg_lines(instances)
        write_text(out / label_path(key), "".join(line + "\n" for line in lines))
        written.append(label_path(key))
    if "labelme" in save:
        written += write_labelme(out, key, image, instances, source, labelme_image_data)
    if layered:
        merged, layers = layered_image(image, instances, fulls, alpha=alpha)
        write_bytes(out / layers_path(key), encode_psd(merged, layers))
        written.append(layers_path(key))
    return written


#: Inputs copied as they are beside their LabelMe file (LabelMe and animeseg decode them alike); other images
#: are written as PNG, video frames as JPEG, from the pixels segmented.
LABELME_COPIED = (".jpg", ".jpeg", ".png", ".bmp")


def write_labelme(
    out: Path, key: str, image: np.ndarray, instances: Instances, source: Path | None = None, image_data: bool = False
) -> list[str]:
    """The ``labelme`` kind of one image: a copy of the image, then its LabelMe file naming it (``imagePath``),
    with the image embedded too when ``image_data``; returns both paths relative to ``out``."""
    if source is not None and source.suffix.lower() in LABELME_COPIED:
        suffix, data = source.suffix.lower(), source.read_bytes()
    else:
        suffix = ".png" if source is not None else ".jpg"
        data = encode_image(image, suffix, quality=95)
    picture, label_file = labelme_path(key, suffix), labelme_path(key)
    write_bytes(out / picture, data)
    doc = document(instances, Path(picture).name, data if image_data else None)
    write_json(out / label_file, doc, indent=2)  # indented as LabelMe writes it: people read and diff these
    return [picture, label_file]


class VideoOutput:
    """An annotated copy of a video, written to a temporary file and moved into place on :meth:`close`.

    Use as a context manager; an exception inside discards the partial file. Frames are RGB (H, W, 3) uint8 of
    the size of the first frame. MPEG-4 Part 2 (``mp4v``) is used because every OpenCV build can write it.
    """

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = float(fps)
        self._ctx = atomic_path(self.path)
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def __enter__(self) -> VideoOutput:
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write MPEG-4 video here")
        if (w, h) != self._size:  # a stream that changes size mid-way: keep the first size
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._writer is not None:
            self._writer.release()
        if exc_type is None and self.frames == 0:
            exc = OSError(f"{self.path}: no frames to write")
            self._ctx.__exit__(type(exc), exc, None)
            raise exc
        return bool(self._ctx.__exit__(exc_type, exc, tb))


# ------------------------------------------------------------------------------------------------ predictions.json
def error_image(image_id: int, file_name: str, message: str, height: int = 0, width: int = 0) -> dict[str, Any]:
    """The ``images`` entry of an input that failed (size 0 when unknown)."""
    return cocojson.image_record(image_id, file_name, height, width, status="error", error=message)


def ok_image(image_id: int, file_name: str, height: int, width: int) -> dict[str, Any]:
    return cocojson.image_record(image_id, file_name, height, width, status="ok", error=None)


class PredictionsBuilder:
    """The one writer of ``predictions.json`` (``predict`` and ``eval`` alike): images in input order, each with
    its status, and their annotations, numbered from 1.

    Image ids are numbered from 1 too unless the caller gives them (``eval`` keeps the ground truth's ids).
    ``categories`` replaces the list made from ``names`` (``eval`` writes the ground truth's own categories).
    """

    def __init__(self, names: dict[int, str], categories: list[dict[str, Any]] | None = None):
        self.names = dict(names)
        self.categories = categories
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add_error(
        self, file_name: str, message: str, image_id: int | None = None, height: int = 0, width: int = 0
    ) -> int:
        image_id = len(self.images) + 1 if image_id is None else int(image_id)
        self.images.append(error_image(image_id, file_name, message, height, width))
        return image_id

    def add_ok(
        self,
        file_name: str,
        height: int,
        width: int,
        annotations: Iterable[dict[str, Any]],
        image_id: int | None = None,
    ) -> int:
        """Add an image and its annotations (annotation ids and their image_id are set here)."""
        image_id = len(self.images) + 1 if image_id is None else int(image_id)
        self.images.append(ok_image(image_id, file_name, height, width))
        for ann in annotations:
            self.annotations.append({**ann, "id": len(self.annotations) + 1, "image_id": image_id})
        return image_id

    def document(self) -> dict[str, Any]:
        categories = self.categories if self.categories is not None else cocojson.categories(self.names)
        return {"images": self.images, "annotations": self.annotations, "categories": categories}

    def write(self, path: str | Path) -> Path:
        return write_json(path, self.document())


def image_annotations(instances: Instances) -> list[dict[str, Any]]:
    """COCO result annotations of one image (ids provisional: :class:`PredictionsBuilder` renumbers them)."""
    anns = cocojson.instance_annotations(instances, image_id=0, first_id=0, with_scores=True)
    for i, ann in enumerate(anns):
        ann["refine"] = plain(ann.get("refine", {}))
        if instances.track_ids is not None:
            ann["track_id"] = int(instances.track_ids[i])
    return anns
