"""Linking instances across the frames of a video or an image sequence: one ``track_id`` per character.

The association is Ultralytics' own ByteTrack or BoT-SORT (``ultralytics.trackers``), fed with the detector's
boxes and scores, so it works the same for ``.pt`` and ``.onnx`` models. Tracking runs on the *detections*;
refinement comes after it and keeps each detection's track, so a refined mask never changes identity.

    >>> from animeseg.predict import Segmenter
    >>> from animeseg.track import TrackingSegmenter
    >>> seg = TrackingSegmenter(Segmenter(), tracker="bytetrack")
    >>> seg.start("clip")                 # a new sequence: tracks and ids start again at 1
    >>> for frame in frames:              # RGB (H, W, 3) uint8
    ...     instances = seg(frame)        # Instances with track_ids (N,)

With ``stabilize`` (the default), each track's mask is then made consistent with its previous frames by
:class:`animeseg.stabilize.MaskStabilizer` (motion-compensated blending), so cut-out videos do not shimmer.

Only confirmed tracks are returned (as Ultralytics' ``track`` mode does): a character appearing after the first
frame of a sequence is reported from its second consecutive detection on. ``--conf`` is what a detection needs to
start a track; once a character is tracked, weaker detections (down to the tracker's ``track_low_thresh``) keep it
through partial occlusions, which is ByteTrack's point.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from animeseg.errors import AnimesegError
from animeseg.instances import Instances
from animeseg.settings import DetectSettings
from animeseg.stabilize import MaskStabilizer

if TYPE_CHECKING:
    from animeseg.media import MediaItem

#: Trackers that need nothing but boxes (no ReID model), by name; a YAML file in the same format also works.
TRACKERS = ("bytetrack", "botsort")


def tracker_config(tracker: str | Path = "bytetrack") -> dict[str, Any]:
    """The settings of ``tracker``: a name from :data:`TRACKERS` (Ultralytics' bundled defaults) or a YAML file
    in Ultralytics' tracker format. Raises :class:`AnimesegError` (one line) for anything else."""
    import yaml

    from animeseg._offline import import_ultralytics

    name = str(tracker)
    if name in TRACKERS:
        path = Path(import_ultralytics().__file__).parent / "cfg" / "trackers" / f"{name}.yaml"
    else:
        path = Path(name).expanduser()
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise AnimesegError(f"--tracker {name}: choose {' or '.join(TRACKERS)}, or give a tracker YAML file")
        if not path.is_file():
            raise AnimesegError(f"{path}: tracker file not found")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise AnimesegError(f"{path}: cannot read tracker settings ({type(e).__name__})") from None
    if not isinstance(cfg, dict) or cfg.get("tracker_type") not in TRACKERS:
        raise AnimesegError(f"{path}: tracker_type must be {' or '.join(TRACKERS)}")
    if cfg.get("with_reid"):
        raise AnimesegError(f"{path}: with_reid is not supported (animeseg tracks by boxes only)")
    return cfg


class Tracker:
    """One sequence's tracker: detections in, a track id per detection out.

    Args:
        tracker: a name from :data:`TRACKERS` or a tracker YAML (see :func:`tracker_config`).
        conf: the score a detection needs to start a track (raises the tracker's ``track_high_thresh`` and
            ``new_track_thresh`` to it when they are lower).
    """

    def __init__(self, tracker: str | Path, conf: float) -> None:
        cfg = tracker_config(tracker)
        for key in ("track_high_thresh", "new_track_thresh"):
            cfg[key] = max(float(cfg.get(key, 0.25)), float(conf))
        cfg["track_low_thresh"] = min(float(cfg.get("track_low_thresh", 0.1)), cfg["track_high_thresh"])
        self.config = cfg
        from animeseg._offline import import_ultralytics

        import_ultralytics()
        from ultralytics.trackers.track import TRACKER_MAP

        self._tracker = TRACKER_MAP[cfg["tracker_type"]](args=SimpleNamespace(**cfg))

    @property
    def low_thresh(self) -> float:
        """The lowest score the tracker still uses (to keep an existing track alive)."""
        return float(self.config["track_low_thresh"])

    def update(self, instances: Instances, image: np.ndarray) -> np.ndarray:
        """Track ids (N,) int64 of this frame's ``instances`` (one frame of an RGB ``image``); -1 for a detection
        that belongs to no confirmed track (too weak, or a track seen for the first time)."""
        from ultralytics.engine.results import Boxes

        n = len(instances)
        data = np.concatenate(
            [instances.boxes, instances.scores[:, None], instances.classes[:, None].astype(np.float32)], axis=1
        ).reshape(n, 6)
        bgr = np.ascontiguousarray(np.asarray(image)[..., 2::-1])  # BoT-SORT's motion compensation reads BGR
        rows = self._tracker.update(Boxes(data, instances.image_size), bgr)
        ids = np.full(n, -1, np.int64)
        for row in np.asarray(rows).reshape(-1, 8):
            ids[int(row[7])] = int(row[4])
        return ids


class TrackingSegmenter:
    """A :class:`~animeseg.predict.Segmenter` whose results carry ``track_ids`` within a sequence.

    Name the sequence with :meth:`start` before its first frame (a video, a folder of frames); then call it on
    the frames in order. Several sequences may be interleaved: each keeps its own tracks. Only tracked instances
    are returned; the refiner, if any, runs on them after tracking, and ``stabilize`` smooths each track's mask
    over time after that (:class:`~animeseg.stabilize.MaskStabilizer`).
    """

    def __init__(self, segmenter: Any, tracker: str | Path = "bytetrack", stabilize: bool = True) -> None:
        self.segmenter = segmenter
        self.tracker_name = tracker
        self.stabilize = bool(stabilize)
        # the segmenter's settings: lowered per frame so weak detections can extend tracks; a segmenter without
        # them is tracked on what it returns
        self.settings: DetectSettings | None = getattr(segmenter, "settings", None)
        self.conf = float(self.settings.conf if self.settings is not None else DetectSettings().conf)
        tracker_config(tracker)  # a bad tracker fails here, before any frame is read
        self._trackers: dict[str, Tracker] = {}
        self._tracker: Tracker | None = None
        self._stabilizers: dict[str, MaskStabilizer] = {}
        self.sequence: str | None = None

    @property
    def names(self) -> dict[int, str]:
        return self.segmenter.names

    def start(self, sequence: str, restart: bool = False) -> None:
        """Make ``sequence`` the current one: a new sequence (or any with ``restart``) starts with no track and
        ids from 1; a sequence seen before continues where it stopped."""
        if restart or sequence not in self._trackers:
            self._trackers[sequence] = Tracker(self.tracker_name, conf=self.conf)
            self._stabilizers[sequence] = MaskStabilizer()
        self._tracker = self._trackers[sequence]
        self.sequence = sequence

    def __call__(self, image: np.ndarray) -> Instances:
        """The tracked instances of the next frame of the current sequence (RGB (H, W, 3) uint8)."""
        if self._tracker is None:
            raise RuntimeError("TrackingSegmenter: call start(sequence) before the first frame")
        if self.settings is None:
            detected = self.segmenter.detect(image)
        else:  # weak detections may extend existing tracks
            low = replace(self.settings, conf=min(self.conf, self._tracker.low_thresh))
            detected = self.segmenter.detect(image, low)
        ids = self._tracker.update(detected, image)
        keep = ids >= 0
        detected = detected[keep]
        refined = self.segmenter.refine(image, detected)
        refined.track_ids = ids[keep]  # refinement keeps N and order: the refined mask keeps its detection's track
        if self.stabilize:
            refined = self._stabilizers[self.sequence].update(image, refined)
        return refined


# ------------------------------------------------------------------------------------------------ sequences
def sequence_of(item: MediaItem) -> str:
    """The sequence an input belongs to when tracking, named as the start of its tracks' cut-out folders (see
    :func:`animeseg.writers.track_cutout_path`): a video is a sequence of its own (``clip#``); images form one
    sequence with the other images of their output folder, in input order (``sub/``; ``""`` for the root)."""
    if item.kind == "video":
        return f"{item.key}#"
    folder = posixpath.dirname(item.key)
    return f"{folder}/" if folder else ""


def frame_label(item: MediaItem, index: int | None = None) -> str:
    """File name (without extension) of a frame in its track's folder: the video frame number, 6 digits, or
    the image's own name."""
    return f"{index:06d}" if item.kind == "video" else posixpath.basename(item.key)


def lone_images(items: Sequence[MediaItem]) -> list[MediaItem]:
    """The images that are the only image of their sequence: there is nothing to track them through."""
    counts = Counter(sequence_of(it) for it in items if it.kind == "image")
    return [it for it in items if it.kind == "image" and counts[sequence_of(it)] == 1]
