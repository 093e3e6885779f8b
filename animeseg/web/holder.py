"""The model behind the page: the detector is loaded once per server, refiners once each, on first use.

The page lets each request choose refinement, confidence and image size; :meth:`ModelHolder.segmenter` gives a
:class:`~animeseg.predict.Segmenter` with those settings that shares the one loaded model. Whatever a request
leaves unset is the server's: the model's own defaults (:func:`animeseg.settings.model_defaults`) with
``serve``'s explicit options over them, the same settings ``animeseg predict`` uses. (Where a batch's inputs run
is :mod:`animeseg.engine`'s business; the page's batches run in this process.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animeseg.detector import load_detector
from animeseg.device import resolve_device
from animeseg.errors import AnimesegError
from animeseg.predict import Segmenter
from animeseg.refine import RefineOptions, build_refiner, check_refiner, refiner_names
from animeseg.refine.base import Refiner
from animeseg.settings import DetectSettings, model_defaults


@dataclass(frozen=True)
class PageSettings:
    """What one request asks for: a refiner name (``none`` or a registered one), confidence, image size, and the
    cut-outs' alpha (``binary`` or ``matte``, see :func:`animeseg.writers.cutout`; applied by the batch). None:
    the server's (the model's defaults, or ``serve``'s options)."""

    refine: str | None = None
    conf: float | None = None
    imgsz: int | None = None
    alpha: str = "binary"


class ModelHolder:
    """One detector for the server's lifetime.

    Args:
        model: YOLOv8-seg or Mask R-CNN weights (``.pt``, ``.onnx`` or an exported folder), already resolved.
        refine: the refiners' settings (SAM checkpoint, type, device); a refiner whose check fails with them (SAM
            without a checkpoint) is not offered.
        device: the detector's device (``cpu``, ``0``, ``cuda:0``...; None: automatic).
        settings: the server's detection settings (default: the model's own); a request's choices go over them.
        refine_default: the refinement a request gets when it names none (default: the model's, when offered;
            else ``none``, and :attr:`refine_note` says why).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        refine: RefineOptions | None = None,
        device: str | None = None,
        settings: DetectSettings | None = None,
        refine_default: str | None = None,
    ) -> None:
        defaults = model_defaults(model)
        base = settings if settings is not None else defaults.detect
        self.settings = base.override(device=resolve_device(device if device is not None else base.device))
        self._detector = load_detector(model, self.settings)
        self._options: dict[str, RefineOptions] = {}
        unavailable: dict[str, str] = {}
        for name in refiner_names()[1:]:
            try:
                self._options[name] = check_refiner(name, refine)
            except AnimesegError as e:
                unavailable[name] = str(e)
        self._refiners: dict[str, Refiner | None] = {"none": None}
        wanted = refine_default if refine_default is not None else defaults.refine
        self.refine_default = wanted if wanted in self.refine_methods else "none"
        #: One line saying why the page starts without the refinement the model asks for (None when it does not).
        self.refine_note: str | None = None
        if self.refine_default != wanted:
            why = unavailable.get(wanted, "not a registered refiner")
            whose = "The model's refinement" if refine_default is None else "Refinement"
            self.refine_note = f"{whose} {wanted!r} cannot start here ({why}); the page starts on none."

    @property
    def names(self) -> dict[int, str]:
        """Class id -> name, as the detector knows them."""
        return self._detector.names

    @property
    def refine_methods(self) -> list[str]:
        """The refiners this server can run: ``none`` and every registered refiner its settings allow."""
        return ["none", *self._options]

    def page_defaults(self) -> PageSettings:
        """What the page shows before anyone touches it: the server's settings and default refinement, so an
        untouched page segments exactly as ``animeseg predict`` with the same options does."""
        return PageSettings(refine=self.refine_default, conf=self.settings.conf, imgsz=self.settings.imgsz)

    def warm_up(self) -> None:
        """Run the detector once on a blank image, so a broken model fails at start and not on the first upload."""
        size = self.settings.imgsz
        self.segmenter(PageSettings(refine="none")).detect(np.zeros((size, size, 3), np.uint8))

    def segmenter(self, settings: PageSettings) -> Segmenter:
        """A Segmenter with ``settings`` (over the server's) that shares this holder's loaded model (and
        Ultralytics' predictor).

        Not safe to call concurrently: the page runs one request at a time.
        """
        refine = settings.refine if settings.refine is not None else self.refine_default
        if refine not in self.refine_methods:
            raise ValueError(f"refinement {refine!r} is not available; choose {self.refine_methods}")
        if refine not in self._refiners:
            self._refiners[refine] = build_refiner(refine, options=self._options[refine])
        detect = self.settings.override(imgsz=settings.imgsz, conf=settings.conf)
        return Segmenter(None, self._refiners[refine], detect, detector=self._detector)
