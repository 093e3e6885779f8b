"""Detectors: an image in, :class:`~animeseg.instances.Instances` with full-resolution masks out.

:class:`~animeseg.predict.Segmenter` uses a detector through the small :class:`Detector` protocol, so another
model family is one class plus a branch in :func:`load_detector`. Two families today: YOLO-seg (``.pt`` checkpoints
on Ultralytics, :class:`YoloDetector`; ONNX exports on animeseg's own runtime without torch,
:class:`animeseg.runtime.yolo.YoloOnnxDetector`, which gives the same instances) and torchvision's Mask R-CNN
(:mod:`animeseg.maskrcnn`: its checkpoints and ONNX exports), the architecture read from the file.

Letterbox: the detector always sees the image letterboxed to a square ``imgsz`` x ``imgsz`` input, whatever the
backend. Ultralytics would give a ``.pt`` model the smallest stride-aligned rectangle instead and a static ONNX
export the square, so a checkpoint and its export would disagree on every non-square image (per-instance mask
IoU down to 0.98 on real weights); with one letterbox they agree to rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from animeseg.instances import Instances


def unrefined_record(reason: str = "no refiner") -> dict[str, Any]:
    """The refinement record of an instance that kept the detector's mask without any refiner being asked."""
    return {
        "method": "none",
        "refined": False,
        "candidate": None,
        "candidate_score": None,
        "agreement": None,
        "reason": reason,
    }


@runtime_checkable
class Detector(Protocol):
    """What the Segmenter needs from a detector: class names and ``detect``.

    ``detect`` takes an RGB (H, W, 3) uint8 image and returns :class:`Instances` with (N, H, W) bool masks at the
    image's own resolution, in descending score order, each with an :func:`unrefined_record`.
    """

    names: dict[int, str]

    def detect(self, image: np.ndarray) -> Instances: ...


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as an array, or a ValueError when it is not RGB (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    return image


class YoloDetector:
    """Ultralytics YOLO-seg (``.pt``, ``.onnx`` or an exported folder), loaded once, never downloaded.

    Args:
        model: weights file or a model config (see :func:`animeseg.yolo.load_yolo`).
        imgsz, conf, iou, max_det, classes: as in Ultralytics' ``predict``; ``classes`` keeps only those ids.
        device: a torch device (``cpu``, ``cuda:0``); None lets Ultralytics choose (CPU for ONNX models).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        device: str | None = None,
        classes: list[int] | None = None,
    ) -> None:
        from animeseg.yolo import load_yolo

        self.model = load_yolo(model, task="segment")
        self.args: dict[str, Any] = {
            "imgsz": imgsz,
            "conf": conf,
            "iou": iou,
            "max_det": max_det,
            "classes": list(classes) if classes is not None else None,
            "rect": False,  # one square letterbox for every backend (see the module doc)
            # masks straight at the original image size, from the prototypes (not a resize of letterbox masks)
            "retina_masks": True,
            "verbose": False,
            "save": False,
        }
        if device is not None:
            self.args["device"] = device
        self.names: dict[int, str] = {int(k): str(v) for k, v in dict(self.model.names or {}).items()}

    def detect(self, image: np.ndarray) -> Instances:
        """Raw YOLO instances of an RGB (H, W, 3) uint8 image; masks (N, H, W) bool at full resolution.

        Instances come in Ultralytics' order (descending score). No instance: ``Instances.empty``.
        """
        image = check_image(image)
        h, w = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])  # Ultralytics treats numpy input as OpenCV BGR
        result = self.model.predict(bgr, **self.args)[0]
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


def load_detector(model: str | Path, runtime: str = "auto", **settings: Any) -> Detector:
    """The detector for a model file, by the architecture the file records
    (:func:`animeseg.maskrcnn.model.architecture`): Mask R-CNN for animeseg Mask R-CNN checkpoints and their ONNX
    exports, YOLO-seg for the rest: ``.onnx`` files and exported folders on animeseg's own runtime
    (:class:`animeseg.runtime.yolo.YoloOnnxDetector`, no torch), ``.pt`` checkpoints and model configs on
    Ultralytics (:class:`YoloDetector`). A checkpoint of an unknown architecture is a one-line error.

    ``settings`` are the detector's keyword arguments (imgsz, conf, iou, max_det, device, classes); ``runtime``
    picks the backend and precision of ONNX YOLO-seg models (:data:`animeseg.runtime.session.RUNTIMES`).
    """
    from animeseg.maskrcnn.model import architecture

    if architecture(model) == "maskrcnn":
        if Path(model).suffix == ".onnx":
            from animeseg.maskrcnn.export import MaskRCNNOnnxDetector

            return MaskRCNNOnnxDetector(model, **settings)
        from animeseg.maskrcnn.detector import MaskRCNNDetector

        return MaskRCNNDetector(model, **settings)
    if runs_natively(model):
        from animeseg.runtime.yolo import YoloOnnxDetector

        return YoloOnnxDetector(model, runtime=runtime, **settings)
    return YoloDetector(model, **settings)


def runs_natively(model: str | Path) -> bool:
    """True for an ``.onnx`` file, an exported folder holding ``model.onnx`` or an OpenVINO IR ``.xml``: these run
    on animeseg's own runtime (:mod:`animeseg.runtime`), without torch or Ultralytics."""
    path = Path(model).expanduser()
    return path.suffix.lower() in (".onnx", ".xml") or (path.is_dir() and (path / "model.onnx").is_file())
