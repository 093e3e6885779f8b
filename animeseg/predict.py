"""The prediction library API: detector instances at full resolution, optionally refined and fused.

    >>> from animeseg.predict import Segmenter
    >>> from animeseg.refine import build_refiner
    >>> seg = Segmenter("weights/best.pt", refiner=build_refiner("grabcut"))
    >>> instances = seg(image)          # image: (H, W, 3) RGB uint8 -> Instances

The model is loaded once, in the constructor (through :func:`animeseg.detector.load_detector`); every call
reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.detector import Detector, load_detector, unrefined_record
from animeseg.instances import Instances
from animeseg.refine.base import Refiner

__all__ = ["LazySegmenter", "Segmenter", "SegmenterSpec", "unrefined_record"]


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
        runtime: backend and precision of ONNX models (``auto``, ``onnxruntime``, ``openvino-bf16``...: see
            :data:`animeseg.runtime.session.RUNTIMES`).
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
        runtime: str = "auto",
    ) -> None:
        from animeseg.device import resolve_device

        self.model_path = model
        if detector is None:
            if model is None:
                raise ValueError("Segmenter needs a model or a detector")
            settings = {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "classes": classes}
            detector = load_detector(model, runtime, device=resolve_device(device), **settings)
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

    @property
    def concurrency(self) -> int:
        """How many :meth:`detect` calls may run side by side from different threads (1: one at a time)."""
        return int(getattr(self.detector, "concurrency", 1))

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


@dataclass(frozen=True)
class SegmenterSpec:
    """A :class:`Segmenter` described by its settings, so another process (a Ray worker) can build its own.

    ``refine`` is a refiner name and ``refine_options`` its checked options; ``device`` is the user's device
    string, resolved where the segmenter is built (a worker's GPU, not the head node's).
    """

    model: Path
    refine: str = "none"
    refine_options: Any = None  # animeseg.refine.RefineOptions
    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    device: str | None = None
    classes: list[int] | None = None
    runtime: str = "auto"

    def build(self, with_refiner: bool = True) -> Segmenter:
        """Load the model (and the refiner unless ``with_refiner`` is False) in this process."""
        from animeseg.device import resolve_device
        from animeseg.refine import RefineOptions, build_refiner

        device = resolve_device(self.device)
        refiner = None
        if with_refiner:
            options = replace(self.refine_options or RefineOptions(), device=device)
            refiner = build_refiner(self.refine, options=options)
        settings = {"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou, "max_det": self.max_det}
        return Segmenter(self.model, refiner, device=device, classes=self.classes, runtime=self.runtime, **settings)


class LazySegmenter:
    """A :class:`Segmenter` built from its :class:`SegmenterSpec` on first use, in whichever process uses it.

    It pickles as its spec alone, so each worker that receives it loads the model and refiner once. ``names``
    loads only the detector when nothing was built here yet.
    """

    def __init__(self, spec: SegmenterSpec):
        self.spec = spec
        self._segmenter: Segmenter | None = None
        self._names: dict[int, str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"])

    @property
    def segmenter(self) -> Segmenter:
        if self._segmenter is None:
            self._segmenter = self.spec.build()
        return self._segmenter

    @property
    def names(self) -> dict[int, str]:
        """Class id -> name, as the detector knows them."""
        if self._segmenter is not None:
            return self._segmenter.names
        if self._names is None:
            self._names = dict(self.spec.build(with_refiner=False).names)
        return self._names

    def __call__(self, image: np.ndarray) -> Instances:
        return self.segmenter(image)
