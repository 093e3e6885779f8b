"""The model behind the page: the detector is loaded once per server, refiners once each, on first use.

The page lets each request choose refinement, confidence and image size; :meth:`Engine.segmenter` gives a
:class:`~animeseg.predict.Segmenter` with those settings that shares the one loaded model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animeseg.predict import Segmenter
from animeseg.refine import build_refiner
from animeseg.refine.base import Refiner


@dataclass(frozen=True)
class Settings:
    """What one request asks for: a refiner name (``none``, ``grabcut``, ``sam``), confidence, image size."""

    refine: str = "none"
    conf: float = 0.25
    imgsz: int = 640


class Engine:
    """One detector for the server's lifetime.

    Args:
        model: YOLOv8-seg weights (``.pt``, ``.onnx`` or an exported folder), already resolved to a path.
        sam_checkpoint: SAM ``.pth`` or exported SAM folder; None means the page offers no SAM refinement.
        sam_type: SAM architecture (``auto`` reads it from the checkpoint).
        device: Ultralytics' device string for the detector (None: automatic).
        torch_device: the same device as torch spells it, for SAM (None: automatic).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        sam_checkpoint: Path | None = None,
        sam_type: str = "auto",
        device: str | None = None,
        torch_device: str | None = None,
    ) -> None:
        self.sam_checkpoint = sam_checkpoint
        self.sam_type = sam_type
        self.torch_device = torch_device
        self._base = Segmenter(model, None, device=device)
        self._refiners: dict[str, Refiner | None] = {"none": None}

    @property
    def refine_methods(self) -> list[str]:
        """The refiners this server can run: SAM only when a checkpoint is configured."""
        return ["none", "grabcut"] + (["sam"] if self.sam_checkpoint is not None else [])

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
            self._refiners[settings.refine] = build_refiner(
                settings.refine, sam_checkpoint=self.sam_checkpoint, sam_type=self.sam_type, device=self.torch_device
            )
        view = copy.copy(self._base)
        view.args = {**self._base.args, "imgsz": int(settings.imgsz), "conf": float(settings.conf)}
        view.refiner = self._refiners[settings.refine]
        return view
