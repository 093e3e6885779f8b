"""Detection settings and each model's defaults: the one home of ``imgsz``, ``conf``, ``iou``, ``max_det``,
``classes``, ``device`` and the default refiner.

Every entry point (``predict``, ``eval``, ``serve`` and its page, :class:`~animeseg.predict.Segmenter`,
tracking, the Ray engine) starts from :func:`model_defaults` and lays the user's explicit choices over it with
:meth:`DetectSettings.override`, so one model gives the same instances whichever way it is called.

A model's own defaults come from its sidecar (``NAME.json`` beside ``NAME.onnx``/``NAME.pt``, key ``defaults``):
the packaged model's were chosen by measurement on held-out art (docs/model.md). Any other model starts from
:data:`GENERIC`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AP_SETTINGS", "GENERIC", "DetectSettings", "ModelDefaults", "describe_defaults", "model_defaults"]


@dataclass(frozen=True)
class DetectSettings:
    """What a detector needs to turn an image into instances.

    Attributes:
        imgsz: the letterbox's side, in pixels: the image is scaled so its long side fits ``imgsz``.
        rect: letterbox to the smallest rectangle of stride multiples that holds the scaled image (Ultralytics'
            own inference for checkpoints: a 1280x720 frame becomes 640x384, 40% less work than the 640x640
            square at the same scale), for models that take any input size (``.pt`` checkpoints, dynamic ONNX
            exports); False: the ``imgsz`` square. A static ONNX export always sees its fixed size.
        conf: lowest detection score kept, in [0, 1].
        iou: IoU above which non-maximum suppression merges boxes.
        max_det: most instances kept per image.
        classes: class ids kept (None: all).
        device: ``cpu``, ``0``, ``cuda:0``...; None lets the detector choose.
        contained: an instance whose mask lies inside a more confident one's by more than this share of its own
            area is dropped as a duplicate part (:func:`animeseg.suppress.suppress_contained`); 1 keeps all.
        merge: a less confident instance whose box lies inside a more confident one's by at least this share of
            its own box, with a mask at least half as large that overlaps the other's, is merged into it as a
            part of the same character (:func:`animeseg.suppress.merge_parts`); 1 or more: never (the generic
            default; the packaged model's sidecar sets 0.6, measured on held-out art: docs/model.md).
        runtime: how ONNX models run (:data:`animeseg.runtime.session.RUNTIMES`: ``auto``, ``onnxruntime``,
            ``openvino-bf16``...); like ``device``, chosen when the model is loaded.
        zoom_out: when the detector finds nothing, look again at the image shrunk this many times in the middle of
            a flat border (:func:`animeseg.zoom.zoomed_out`: frame-filling characters, portraits); 1: never (the
            generic default; the packaged model's sidecar sets it, measured on real pictures: docs/model.md).
    """

    imgsz: int = 640
    rect: bool = True
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    device: str | None = None
    contained: float = 0.8
    merge: float = 1.0
    runtime: str = "auto"
    zoom_out: float = 1.0

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))

    def override(self, **explicit: Any) -> DetectSettings:
        """These settings with every explicit (not None) value laid over them; unknown names raise TypeError."""
        unknown = set(explicit) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown detection setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in explicit.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """Plain values (``classes`` as a list), for JSON records and resume signatures."""
        out = dataclasses.asdict(self)
        out["classes"] = list(self.classes) if self.classes is not None else None
        return out


@dataclass(frozen=True)
class ModelDefaults:
    """A model's defaults: its detection settings and the refiner ``predict`` uses without ``--refine``."""

    detect: DetectSettings = field(default_factory=DetectSettings)
    refine: str = "none"


#: What evaluation (``animeseg eval``) lays over a model's settings: COCO AP reads each image's 100 best
#: detections, with scores down to 0.001 (its precision-recall curve needs the low-score ones too).
AP_SETTINGS: dict[str, Any] = {"conf": 0.001, "max_det": 100}

#: Defaults of a model that records none (Ultralytics' own detection defaults, no refinement).
GENERIC = ModelDefaults()


def sidecar_path(model: str | Path) -> Path:
    """Where ``model``'s sidecar lives: ``NAME.json`` beside the file (``model.json`` inside an exported folder)."""
    path = Path(model).expanduser()
    return path / "model.json" if path.is_dir() else path.with_suffix(".json")


def model_defaults(model: str | Path | None) -> ModelDefaults:
    """The defaults ``model`` records in its sidecar's ``defaults`` key, else :data:`GENERIC`.

    The key holds detection settings and ``refine``: ``{"imgsz": 640, "conf": 0.5, "refine": "learned"}``.
    Unknown keys are ignored (a newer sidecar on an older animeseg); a sidecar that is not JSON counts as none.
    """
    if model is None:
        return GENERIC
    path = sidecar_path(model)
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("defaults") or {}
    except (OSError, ValueError, AttributeError):
        return GENERIC
    if not isinstance(recorded, dict):
        return GENERIC
    names = {f.name for f in dataclasses.fields(DetectSettings)} - {"device", "runtime"}  # this machine's choices
    detect = GENERIC.detect.override(**{k: v for k, v in recorded.items() if k in names})
    return ModelDefaults(detect=detect, refine=str(recorded.get("refine", GENERIC.refine)))


def carry_defaults(source: str | Path, target: str | Path, about: str, **changes: Any) -> Path | None:
    """Give ``target`` (a model made from ``source``: an export) the defaults ``source``'s sidecar records, with
    ``changes`` (``imgsz=800``...) applied; returns the sidecar written, or None when ``source`` records none.

    An exported packaged model thereby predicts as the packaged model does (its conf, NMS IoU and refiner), not
    with the generic defaults.
    """
    from animeseg.io import write_json

    try:
        recorded = json.loads(sidecar_path(source).read_text(encoding="utf-8")).get("defaults")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(recorded, dict) or not recorded:
        return None
    sidecar = {"name": Path(target).stem, "about": about, "defaults": {**recorded, **changes}}
    return write_json(sidecar_path(target), sidecar, indent=2)


def describe_defaults(defaults: ModelDefaults) -> str:
    """One line for people: ``imgsz 640, conf 0.5, iou 0.7, max_det 300, refine none``."""
    d = defaults.detect
    classes = f", classes {','.join(map(str, d.classes))}" if d.classes is not None else ""
    return f"imgsz {d.imgsz}, conf {d.conf:g}, iou {d.iou:g}, max_det {d.max_det}{classes}, refine {defaults.refine}"
