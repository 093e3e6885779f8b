"""The model behind the page: the detector is loaded once per server, refiners once each, on first use.

The page lets each request choose refinement, confidence and image size; :meth:`Engine.segmenter` gives a
:class:`~animeseg.predict.Segmenter` with those settings that shares the one loaded model. (This engine holds a
model; :class:`animeseg.engine.Engine` is where a batch's inputs run, and the page's batches use its default.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animeseg.detector import load_detector
from animeseg.device import resolve_device
from animeseg.errors import AnimesegError
from animeseg.predict import Segmenter
from animeseg.refine import RefineOptions, build_refiner, check_refiner, refiner_names
from animeseg.refine.base import Refiner


@dataclass(frozen=True)
class Settings:
    """What one request asks for: a refiner name (``none`` or a registered one), confidence, image size, and the
    cut-outs' alpha (``binary`` or ``matte``, see :func:`animeseg.writers.cutout`; applied by the batch)."""

    refine: str = "none"
    conf: float = 0.25
    imgsz: int = 640
    alpha: str = "binary"


class Engine:
    """One detector for the server's lifetime.

    Args:
        model: YOLOv8-seg weights (``.pt``, ``.onnx`` or an exported folder), already resolved to a path.
        refine: the refiners' settings (SAM checkpoint, type, device); a refiner whose check fails with them (SAM
            without a checkpoint) is not offered.
        device: the detector's device (``cpu``, ``0``, ``cuda:0``...; None: automatic).
    """

    def __init__(self, model: str | Path, *, refine: RefineOptions | None = None, device: str | None = None) -> None:
        self._detector = load_detector(model, device=resolve_device(device))
        self._options: dict[str, RefineOptions] = {}
        for name in refiner_names()[1:]:
            try:
                self._options[name] = check_refiner(name, refine)
            except AnimesegError:
                continue
        self._refiners: dict[str, Refiner | None] = {"none": None}

    @property
    def refine_methods(self) -> list[str]:
        """The refiners this server can run: ``none`` and every registered refiner its settings allow."""
        return ["none", *self._options]

    def warm_up(self, imgsz: int) -> None:
        """Run the detector once on a blank image, so a broken model fails at start and not on the first upload."""
        self.segmenter(Settings(imgsz=imgsz)).detect(np.zeros((imgsz, imgsz, 3), np.uint8))

    def segmenter(self, settings: Settings) -> Segmenter:
        """A Segmenter with ``settings`` that shares this engine's loaded model (and Ultralytics' predictor).

        Not safe to call concurrently: the page runs one request at a time.
        """
        if settings.refine not in self.refine_methods:
            raise ValueError(f"refinement {settings.refine!r} is not available; choose {self.refine_methods}")
        if settings.refine not in self._refiners:
            self._refiners[settings.refine] = build_refiner(settings.refine, options=self._options[settings.refine])
        detector = copy.copy(self._detector)
        if hasattr(detector, "settings"):  # the native ONNX runtime's detector (animeseg.settings.DetectSettings)
            detector.settings = detector.settings.override(imgsz=int(settings.imgsz), conf=float(settings.conf))
        else:
            detector.args = {**self._detector.args, "imgsz": int(settings.imgsz), "conf": float(settings.conf)}
        return Segmenter(None, self._refiners[settings.refine], detector=detector)
