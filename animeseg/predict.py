"""The prediction library API: detector instances at full resolution, optionally refined and fused.

    >>> from animeseg.predict import Segmenter
    >>> from animeseg.refine import build_refiner
    >>> seg = Segmenter("weights/best.pt", refiner=build_refiner("grabcut"))
    >>> instances = seg(image)          # image: (H, W, 3) RGB uint8 -> Instances

The model is loaded once, in the constructor (through :func:`animeseg.detector.load_detector`); every call
reuses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animeseg.detector import Detector, load_detector, unrefined_record
from animeseg.instances import Instances
from animeseg.refine.base import Refiner

__all__ = ["Segmenter", "unrefined_record"]


class Segmenter:
    """Detection (YOLO-seg ``.pt`` or ``.onnx`` today) plus optional mask refinement.

    Args:
        model: weights file (``.pt``/``.onnx``, or an exported folder holding ``model.onnx``) or a model config.
        refiner: a :class:`~animeseg.refine.base.Refiner` whose candidates are fused into the detector's masks;
            None keeps them (``refine`` is then the identity).
        imgsz, conf, iou, max_det, device, classes: the detector's settings; ``classes`` keeps only those class
            ids. ``device`` (``cpu``, ``0``, ``cuda:0``...) is normalised by :func:`animeseg.device.resolve_device`;
            None lets the detector choose (CPU for ONNX models).
        detector: an already built :class:`~animeseg.detector.Detector` to use instead of loading ``model``.
    """

    def __init__(
        self,
        model: str | Path | None,
        refiner: Refiner | None = None,
        *,
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        device: str | None = None,
        classes: list[int] | None = None,
        detector: Detector | None = None,
    ) -> None:
        from animeseg.device import resolve_device

        self.model_path = model
        if detector is None:
            if model is None:
                raise ValueError("Segmenter needs a model or a detector")
            settings = {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "classes": classes}
            detector = load_detector(model, device=resolve_device(device), **settings)
        self.detector = detector
        self.refiner = refiner

    @property
    def names(self) -> dict[int, str]:
        """Class id -> name, as the detector knows them."""
        return self.detector.names

    @property
    def model(self) -> Any:
        """The detector's underlying model (an ``ultralytics.YOLO`` for YOLO-seg)."""
        return getattr(self.detector, "model", None)

    def detect(self, image: np.ndarray) -> Instances:
        """Raw detector instances of an RGB (H, W, 3) uint8 image; masks (N, H, W) bool at full resolution.

        Instances come in descending score order. No instance: ``Instances.empty``.
        """
        return self.detector.detect(image)

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
