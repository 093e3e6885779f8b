"""Mask refiners: each turns YOLO's boxes (and masks) into candidate masks; fusion decides what to keep.

Refiners are registered by class (:func:`register`) and chosen by name with :func:`build_refiner`; every command
offers every registered name (``--refine NAME``). Adding one is one class with a ``name`` and a
``candidates(image, boxes, masks) -> Candidates`` method, registered with ``@register`` (see
``docs/refinement.md`` and ``docs/architecture.md``). A class may also declare:

* ``uses``: the :class:`RefineOptions` fields it reads (``("sam_checkpoint", "sam_type", "device")``); the others
  are dropped, so settings that do not apply never reach it (nor a resume signature);
* ``check(options) -> RefineOptions`` (classmethod): cheap validation before any work (files exist...);
* ``from_options(options) -> Refiner`` (classmethod): how to build it; ``cls()`` when absent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animeseg.errors import AnimesegError
from animeseg.refine.base import Candidates, Refiner

#: Registered refiner classes by name, in registration order (``none`` is not a refiner: it means no refiner).
REFINERS: dict[str, type] = {}


@dataclass(frozen=True)
class RefineOptions:
    """Settings a refiner may need; each refiner reads the fields named in its ``uses``.

    Attributes:
        sam_checkpoint: a SAM ``.pth`` file or a folder exported by ``animeseg export onnx`` (holding ``sam.json``).
        sam_type: ``auto`` (read from the checkpoint) or an architecture name (``vit_b``...).
        device: a torch device (``cpu``, ``cuda:0``); None picks the first GPU if there is one.
    """

    sam_checkpoint: Path | None = None
    sam_type: str = "auto"
    device: str | None = None


def register(cls: type) -> type:
    """Make a refiner class available by its ``name`` to :func:`build_refiner` and to every command."""
    name = str(getattr(cls, "name", "")).strip().lower()
    if not name or name == "none":
        raise ValueError(f"{cls.__name__}: a refiner needs a name other than 'none'")
    REFINERS[name] = cls
    return cls


def refiner_names() -> tuple[str, ...]:
    """``none`` and every registered refiner name, in registration order."""
    return ("none", *REFINERS)


def refiner_class(name: str) -> type | None:
    """The class registered as ``name``; None for ``none``; an :class:`AnimesegError` for an unknown name."""
    key = str(name).strip().lower()
    if key == "none":
        return None
    if key not in REFINERS:
        raise AnimesegError(f"unknown refiner {name!r}; choose one of {', '.join(refiner_names())}")
    return REFINERS[key]


def check_refiner(name: str, options: RefineOptions | None = None) -> RefineOptions:
    """The options refiner ``name`` will be built with, checked before any heavy work.

    Fields the refiner does not use are reset to their defaults; its ``check`` classmethod (if any) validates the
    rest (a missing checkpoint raises here, in one line). ``none`` uses nothing.
    """
    options = options or RefineOptions()
    cls = refiner_class(name)
    if cls is None:
        return RefineOptions()
    uses = set(getattr(cls, "uses", ()))
    defaults = RefineOptions()
    kept = {f.name: getattr(options if f.name in uses else defaults, f.name) for f in dataclasses.fields(options)}
    options = RefineOptions(**kept)
    check = getattr(cls, "check", None)
    return check(options) if check is not None else options


def build_refiner(
    name: str,
    sam_checkpoint: str | Path | None = None,
    sam_type: str = "auto",
    device: str | None = None,
    *,
    options: RefineOptions | None = None,
) -> Refiner | None:
    """The refiner called ``name`` (``none`` -> None), built from ``options`` (or the keyword settings).

    ``sam`` needs ``sam_checkpoint``: a SAM checkpoint file (loaded with :func:`animeseg.sam.load_sam`, the
    architecture inferred when ``sam_type`` is ``auto``; ViT SAMs run on segment-anything, MobileSAM and SAM 2 /
    2.1 on Ultralytics' models), or a folder written by ``animeseg export onnx``
    (holding ``sam.json``), which runs with ONNX Runtime. Missing files raise before anything heavy is loaded.
    """
    if options is None:
        path = Path(sam_checkpoint).expanduser() if sam_checkpoint is not None else None
        options = RefineOptions(path, sam_type, device)
    cls = refiner_class(name)
    if cls is None:
        return None
    options = check_refiner(name, options)
    from_options: Any = getattr(cls, "from_options", None)
    return from_options(options) if from_options is not None else cls()


# The refiners that ship with animeseg. Their modules import nothing heavy at import time.
from animeseg.refine.grabcut import GrabCutRefiner  # noqa: E402
from animeseg.refine.learned import LearnedRefiner  # noqa: E402
from animeseg.refine.sam import SamRefiner  # noqa: E402

register(LearnedRefiner)
register(GrabCutRefiner)
register(SamRefiner)

__all__ = [
    "REFINERS",
    "Candidates",
    "RefineOptions",
    "Refiner",
    "build_refiner",
    "check_refiner",
    "refiner_class",
    "refiner_names",
    "register",
]
