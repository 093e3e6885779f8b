"""Mask refiners: each turns YOLO's boxes (and masks) into candidate masks; fusion decides what to keep.

Refiners are chosen by name with :func:`build_refiner`; adding one is one class with a ``name`` and a
``candidates(image, boxes, masks) -> Candidates`` method (see ``docs/refinement.md``).
"""

from __future__ import annotations

from pathlib import Path

from animeseg.errors import AnimesegError
from animeseg.refine.base import Candidates, Refiner

#: Names accepted by build_refiner (and ``animeseg predict --refine``).
REFINERS = ("none", "grabcut", "sam")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_refiner(
    name: str,
    sam_checkpoint: Path | None = None,
    sam_type: str = "auto",
    device: str | None = None,
) -> Refiner | None:
    """The refiner called ``name``: ``none`` -> None, ``grabcut``, or ``sam``.

    ``sam`` needs ``sam_checkpoint``: a SAM checkpoint file (loaded with :func:`animeseg.sam.load_sam`, the
    architecture inferred when ``sam_type`` is ``auto``; ViT SAMs run on segment-anything, MobileSAM and SAM 2 /
    2.1 on Ultralytics' models), or a folder written by ``animeseg export onnx``
    (holding ``sam.json``), which runs with ONNX Runtime. Missing files raise before anything heavy is loaded.
    """
    key = str(name).strip().lower()
    if key == "none":
        return None
    if key == "grabcut":
        from animeseg.refine.grabcut import GrabCutRefiner

        return GrabCutRefiner()
    if key == "sam":
        from animeseg.sam import SAM_HINT

        if sam_checkpoint is None:
            raise AnimesegError(f"--refine sam needs a SAM checkpoint: {SAM_HINT}")
        path = Path(sam_checkpoint).expanduser()
        if path.is_dir() and (path / "sam.json").is_file():
            from animeseg.refine.sam_onnx import OnnxSamRefiner

            return OnnxSamRefiner(path)
        if path.is_dir():
            raise AnimesegError(f"{path}: folder has no sam.json (not an exported SAM); pass a .pth or an export")
        from animeseg.refine.sam import SamRefiner
        from animeseg.sam import LIGHT, load_sam

        model = load_sam(path, model_type=sam_type, device=device or _default_device())
        if model.sam_type in LIGHT:  # MobileSAM, SAM 2 / 2.1
            from animeseg.refine.sam_light import LightSamRefiner

            return LightSamRefiner(model)
        return SamRefiner(model)
    raise AnimesegError(f"unknown refiner {name!r}; choose one of {', '.join(REFINERS)}")


__all__ = ["REFINERS", "Candidates", "Refiner", "build_refiner"]
