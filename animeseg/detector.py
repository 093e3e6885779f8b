"""Detectors: an image in, :class:`~animeseg.instances.Instances` with full-resolution masks out.

:class:`~animeseg.predict.Segmenter` uses a detector through the small :class:`Detector` protocol, so another
model family is one class plus a branch in :func:`load_detector`. Two families today: YOLO-seg (``.pt`` checkpoints
on Ultralytics, :class:`YoloDetector`; ONNX exports on animeseg's own runtime without torch,
:class:`animeseg.runtime.yolo.YoloOnnxDetector`, which gives the same instances) and torchvision's Mask R-CNN
(:mod:`animeseg.maskrcnn`: its checkpoints and ONNX exports), the architecture read from the file.

Letterbox: the image is scaled so its long side is ``imgsz``, then padded to the smallest rectangle of stride
multiples (``rect``, the default: a 1280x720 frame becomes a 640x384 input, 40% less work than the 640 square
and the same instances, docs/model.md) where the model takes any input size (``.pt`` checkpoints, dynamic ONNX
exports, which ``animeseg export onnx`` writes by default), or to the ``imgsz`` square (``rect=False``, and
always for a static export, whose input size is fixed). Every backend follows the same rule, so a checkpoint and
its dynamic export agree to rounding on images of any shape; a static export agrees with its checkpoint run with
``rect=False``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from animeseg.instances import Instances, check_image, unrefined_record
from animeseg.settings import DetectSettings, model_defaults

__all__ = ["Detector", "YoloDetector", "check_image", "load_detector", "unrefined_record"]


@runtime_checkable
class Detector(Protocol):
    """What the Segmenter needs from a detector: class names, its default settings and ``detect``.

    ``detect`` takes an RGB (H, W, 3) uint8 image and returns :class:`Instances` with (N, H, W) bool masks at the
    image's own resolution, in descending score order, each with an :func:`unrefined_record`. ``settings`` are
    what it uses when a call passes none; a call's own ``settings`` apply to that call only (their ``device`` is
    ignored: the model stays where it was loaded).
    """

    names: dict[int, str]
    settings: DetectSettings

    def detect(self, image: np.ndarray, settings: DetectSettings | None = None) -> Instances: ...


class YoloDetector:
    """Ultralytics YOLO-seg (``.pt``, ``.onnx`` or an exported folder), loaded once, never downloaded.

    Args:
        model: weights file or a model config (see :func:`animeseg.yolo.load_yolo`).
        settings: what :meth:`detect` uses by default (None: the model's own, :func:`animeseg.settings.model_defaults`);
            ``device`` is a torch device (``cpu``, ``cuda:0``) or None to let Ultralytics choose (CPU for ONNX).
    """

    def __init__(self, model: str | Path, settings: DetectSettings | None = None) -> None:
        from animeseg.yolo import load_yolo

        self.model = load_yolo(model, task="segment")
        self.settings = settings if settings is not None else model_defaults(model).detect
        self.names: dict[int, str] = {int(k): str(v) for k, v in dict(self.model.names or {}).items()}

    def _args(self, settings: DetectSettings) -> dict[str, Any]:
        """Ultralytics' ``predict`` arguments for ``settings`` (the device is the one the model was loaded for)."""
        args: dict[str, Any] = {
            "imgsz": settings.imgsz,
            "conf": settings.conf,
            "iou": settings.iou,
            "max_det": settings.max_det,
            "classes": list(settings.classes) if settings.classes is not None else None,
            "rect": settings.rect,  # the letterbox rule of every backend (see the module doc)
            # masks straight at the original image size, from the prototypes (not a resize of letterbox masks)
            "retina_masks": True,
            "verbose": False,
            "save": False,
        }
        if self.settings.device is not None:
            args["device"] = self.settings.device
        return args

    def detect(self, image: np.ndarray, settings: DetectSettings | None = None) -> Instances:
        """Raw YOLO instances of an RGB (H, W, 3) uint8 image; masks (N, H, W) bool at full resolution.

        ``settings``: this call's (default :attr:`settings`). Instances come in Ultralytics' order (descending
        score). No instance: ``Instances.empty``.
        """
        image = check_image(image)
        h, w = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])  # Ultralytics treats numpy input as OpenCV BGR
        result = self.model.predict(bgr, **self._args(settings or self.settings))[0]
        if result.names:
            self.names = {int(k): str(v) for k, v in result.names.items()}
        if result.boxes is None or len(result.boxes) == 0 or result.masks is None:
            return Instances.empty(h, w, self.names)
        boxes = result.boxes
        masks = result.masks.data.cpu().numpy().astype(bool, copy=False)
        if masks.shape[1:] != (h, w):  # retina masks are native size; guard against a model that is not
            from animeseg._lazy import cv2

            masks = np.stack([cv2.resize(m.astype(np.float32), (w, h)) > 0.5 for m in masks])
        return Instances(
            boxes.xyxy.cpu().numpy(),
            boxes.conf.cpu().numpy(),
            boxes.cls.cpu().numpy().astype(np.int64),
            masks,
            dict(self.names),
            [unrefined_record() for _ in range(len(boxes))],
        )


def load_detector(model: str | Path, settings: DetectSettings | None = None) -> Detector:
    """The detector for a model file, by the architecture the file records
    (:func:`animeseg.maskrcnn.model.architecture`): Mask R-CNN for animeseg Mask R-CNN checkpoints and their ONNX
    exports, YOLO-seg for the rest: ``.onnx`` files, exported folders and OpenVINO IRs on animeseg's own runtime
    (:class:`animeseg.runtime.yolo.YoloOnnxDetector`, no torch), ``.pt`` checkpoints and model configs on
    Ultralytics (:class:`YoloDetector`). A checkpoint of an unknown architecture is a one-line error.

    ``settings``: the detector's default settings (None: the model's own, :func:`animeseg.settings.model_defaults`).
    """
    from animeseg.maskrcnn.model import architecture

    if settings is None:
        settings = model_defaults(model).detect
    if architecture(model) == "maskrcnn":
        if Path(model).suffix == ".onnx":
            from animeseg.maskrcnn.detector import MaskRCNNOnnxDetector

            return MaskRCNNOnnxDetector(model, settings)
        from animeseg.maskrcnn.detector import MaskRCNNDetector

        return MaskRCNNDetector(model, settings)
    if runs_natively(model):
        from animeseg.runtime.yolo import YoloOnnxDetector

        return YoloOnnxDetector(model, settings)
    return YoloDetector(model, settings)


def runs_natively(model: str | Path) -> bool:
    """True for an ``.onnx`` file, an exported folder holding ``model.onnx`` or an OpenVINO IR ``.xml``: these run
    on animeseg's own runtime (:mod:`animeseg.runtime`, settings' ``runtime``), without torch or Ultralytics."""
    path = Path(model).expanduser()
    return path.suffix.lower() in (".onnx", ".xml") or (path.is_dir() and (path / "model.onnx").is_file())
