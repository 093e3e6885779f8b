"""The prediction library API: YOLO instances at full resolution, optionally refined and fused.

    >>> from animeseg.predict import Segmenter
    >>> from animeseg.refine import build_refiner
    >>> seg = Segmenter("weights/best.pt", refiner=build_refiner("grabcut"))
    >>> instances = seg(image)          # image: (H, W, 3) RGB uint8 -> Instances

The YOLO model is loaded once, in the constructor; every call reuses it (and Ultralytics' predictor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animeseg.instances import Instances
from animeseg.refine.base import Refiner
from animeseg.yolo import load_yolo


def unrefined_record(reason: str = "no refiner") -> dict[str, Any]:
    """The refinement record of an instance that kept YOLO's mask without any refiner being asked."""
    return {
        "method": "none",
        "refined": False,
        "candidate": None,
        "candidate_score": None,
        "agreement": None,
        "reason": reason,
    }


class Segmenter:
    """YOLO-seg detection (``.pt`` or ``.onnx``) plus optional mask refinement.

    Args:
        model: weights file (``.pt``/``.onnx``, or an exported folder holding ``model.onnx``) or a model config.
        refiner: a :class:`~animeseg.refine.base.Refiner` whose candidates are fused into YOLO's masks; None
            keeps YOLO's masks (``refine`` is then the identity).
        imgsz, conf, iou, max_det, device, classes: as in Ultralytics' ``predict``; ``classes`` keeps only those
            class ids. ``device`` None lets Ultralytics choose (CPU for ONNX models).
    """

    def __init__(
        self,
        model: str | Path,
        refiner: Refiner | None = None,
        *,
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        device: str | None = None,
        classes: list[int] | None = None,
    ) -> None:
        self.model_path = model
        self.model = load_yolo(model, task="segment")
        self.refiner = refiner
        self.args: dict[str, Any] = {
            "imgsz": imgsz,
            "conf": conf,
            "iou": iou,
            "max_det": max_det,
            "classes": list(classes) if classes is not None else None,
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
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
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
            import cv2

            masks = np.stack([cv2.resize(m.astype(np.float32), (w, h)) > 0.5 for m in masks])
        return Instances(
            boxes.xyxy.cpu().numpy(),
            boxes.conf.cpu().numpy(),
            boxes.cls.cpu().numpy().astype(np.int64),
            masks,
            dict(self.names),
            [unrefined_record() for _ in range(len(boxes))],
        )

    def refine(self, image: np.ndarray, instances: Instances) -> Instances:
        """Fuse the refiner's candidate masks into ``instances`` (see :func:`animeseg.fusion.fuse`).

        Without a refiner, or with no instances, ``instances`` is returned unchanged.
        """
        if self.refiner is None or len(instances) == 0:
            return instances
        from animeseg.fusion import fuse

        candidates = self.refiner.candidates(image, instances.boxes, instances.masks)
        return fuse(instances, candidates, method=self.refiner.name)

    def __call__(self, image: np.ndarray) -> Instances:
        """``refine(image, detect(image))``."""
        return self.refine(image, self.detect(image))
