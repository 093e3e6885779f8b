"""The prediction library API: detector instances at full resolution, optionally refined and fused.

    >>> import animeseg
    >>> instances = animeseg.segment(image)   # the packaged model with its defaults; image: (H, W, 3) RGB uint8

    >>> from animeseg.predict import Segmenter
    >>> seg = Segmenter()                     # the same, loaded once and reused
    >>> seg = Segmenter("weights/best.pt", refine="grabcut", conf=0.4)
    >>> instances = seg(image)                # Instances

The model is loaded once, in the constructor (through :func:`animeseg.detector.load_detector`); every call
reuses it. Settings start from the model's own defaults (:func:`animeseg.settings.model_defaults`) and the
options given explicitly win.

The library speaks the command line's words: ``refine=`` is ``--refine`` (a refiner name, ``"none"``, None or a
refiner object), ``conf=`` is ``--conf``, and so on; ``refiner=`` is still accepted as another name for
``refine=``. An unknown keyword is a :class:`TypeError` listing the accepted ones.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.detector import Detector, load_detector
from animeseg.errors import AnimesegError
from animeseg.instances import Instances, unrefined_record
from animeseg.refine.base import Refiner
from animeseg.settings import DetectSettings, model_defaults

__all__ = [
    "MODEL_DEFAULT",
    "LazySegmenter",
    "Segmenter",
    "SegmenterSpec",
    "check_classes",
    "check_keywords",
    "segment",
    "unrefined_record",
]


class _ModelDefault:
    """The type of :data:`MODEL_DEFAULT`."""

    def __repr__(self) -> str:
        return "MODEL_DEFAULT"


#: ``refine=MODEL_DEFAULT``: the refiner the model's defaults name (``model_defaults(model).refine``).
MODEL_DEFAULT: Any = _ModelDefault()
#: The earlier name of ``refine=``, still accepted.
REFINE_ALIAS = "refiner"


def keywords_of(function: Any) -> list[str]:
    """The named parameters of ``function`` (a class: its constructor's), in order."""
    target = function.__init__ if inspect.isclass(function) else function
    kinds = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return [p.name for p in inspect.signature(target).parameters.values() if p.kind not in kinds and p.name != "self"]


def check_keywords(where: str, given: dict[str, Any], accepted: list[str]) -> None:
    """Raise one :class:`TypeError` naming the first of ``given`` not in ``accepted``, and listing those."""
    unknown = [k for k in given if k not in accepted]
    if unknown:
        raise TypeError(
            f"{where}() got an unexpected keyword argument {unknown[0]!r}; it accepts {', '.join(accepted)}"
        )


def refine_keyword(refine: Any, extra: dict[str, Any], where: str) -> Any:
    """``refine``, or the value given under its earlier name ``refiner=`` (taken out of ``extra``); both given
    is a :class:`TypeError`."""
    if REFINE_ALIAS not in extra:
        return refine
    alias = extra.pop(REFINE_ALIAS)
    if refine is not MODEL_DEFAULT:
        raise TypeError(f"{where}() got refine= and its other name refiner=: give one of them")
    return alias


def check_classes(classes: tuple[int, ...] | None, names: dict[int, str], model: object) -> None:
    """Raise a one-line :class:`AnimesegError` (misuse) when ``classes`` holds ids ``model`` does not have."""
    if classes is None or not names:
        return
    unknown = [c for c in classes if c not in names]
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in sorted(names.items())[:8]) + (" ..." if len(names) > 8 else "")
        label = Path(str(model)).name if model is not None else "the model"
        ids = ",".join(map(str, unknown))
        raise AnimesegError(f"--classes {ids}: {label} has no such class; its classes are {known}")


def _refiner(refiner: Any, default: str) -> Refiner | None:
    """A refiner object from what a caller gave: MODEL_DEFAULT (the model's), a name, None or a refiner."""
    if refiner is MODEL_DEFAULT:
        refiner = default
    if refiner is None or isinstance(refiner, str):
        from animeseg.refine import build_refiner

        return build_refiner(refiner or "none")
    return refiner


class Segmenter:
    """Detection (YOLO-seg or Mask R-CNN, ``.pt`` or ``.onnx``) plus optional mask refinement.

    Args:
        model: weights file (``.pt``/``.onnx``, or an exported folder holding ``model.onnx``) or a model config;
            None: :func:`animeseg.weights.default_model` (the packaged anime model unless you trained one).
        refine: a refiner name (``learned``, ``grabcut``... as ``--refine`` names them) or a
            :class:`~animeseg.refine.base.Refiner` whose candidates are fused into the detector's masks; None or
            ``"none"`` keeps the detector's masks. Default: the refiner the model's defaults name. (``refiner=``
            is accepted as another name for it.)
        settings: detection settings to start from (default: the model's own, or a given detector's).
        imgsz, conf, iou, max_det, device, classes, contained, merge, zoom_out: explicit settings
            (:class:`DetectSettings`), laid
            over ``settings``; ``classes`` keeps
            only those class ids (ids the model does not have are an error). ``device`` (``cpu``, ``0``,
            ``cuda:0``...) is normalised by :func:`animeseg.device.resolve_device`; None lets the detector
            choose (CPU for ONNX models).
        detector: an already built :class:`~animeseg.detector.Detector` to use instead of loading ``model``
            (several segmenters with different settings may share one).
        runtime: how ONNX models run (``auto``, ``onnxruntime``, ``openvino-bf16``...:
            :data:`animeseg.runtime.session.RUNTIMES`), an explicit setting like the others.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        refine: Refiner | str | None = MODEL_DEFAULT,
        settings: DetectSettings | None = None,
        *,
        imgsz: int | None = None,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        device: str | None = None,
        classes: list[int] | tuple[int, ...] | None = None,
        contained: float | None = None,
        merge: float | None = None,
        zoom_out: float | None = None,
        detector: Detector | None = None,
        runtime: str | None = None,
        **unexpected: Any,
    ) -> None:
        from animeseg.device import resolve_device

        refine = refine_keyword(refine, unexpected, "Segmenter")
        check_keywords("Segmenter", unexpected, keywords_of(Segmenter))

        if model is None and detector is None:
            from animeseg.weights import default_model

            model = default_model()
        defaults = model_defaults(model)
        if settings is None:
            settings = detector.settings if detector is not None else defaults.detect
        explicit = {
            "imgsz": imgsz,
            "conf": conf,
            "iou": iou,
            "max_det": max_det,
            "classes": classes,
            "contained": contained,
            "merge": merge,
            "zoom_out": zoom_out,
            "runtime": runtime,
        }
        settings = settings.override(**explicit, device=device)
        settings = replace(settings, device=resolve_device(settings.device))
        if detector is None:
            detector = load_detector(model, settings)
        check_classes(settings.classes, detector.names, model)
        self.model_path = model
        self.detector = detector
        self.settings = settings
        self.refiner = _refiner(refine, defaults.refine)

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

    def detect(self, image: np.ndarray, settings: DetectSettings | None = None) -> Instances:
        """Raw detector instances of an RGB (H, W, 3) uint8 image; masks (N, H, W) bool at full resolution.

        ``settings``: this call's (default :attr:`settings`). Instances come in descending score order; one whose
        mask lies mostly inside a more confident one's is dropped (:func:`animeseg.suppress.suppress_contained`),
        and a part of a character found as its own instance is merged into it (:func:`animeseg.suppress.merge_parts`).
        Where nothing is found and ``settings.zoom_out`` > 1, a second look at the image zoomed out
        (:func:`animeseg.zoom.zoomed_out`). No instance: ``Instances.empty``.
        """
        from animeseg.suppress import merge_parts, suppress_contained

        settings = settings or self.settings
        found = suppress_contained(self.detector.detect(image, settings), settings.contained)
        if len(found) == 0 and settings.zoom_out > 1:
            from animeseg.zoom import zoomed_out

            found = suppress_contained(
                zoomed_out(self.detector.detect, image, settings, settings.zoom_out), settings.contained
            )
        return merge_parts(found, settings.merge)

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


_CACHED: tuple[Any, Segmenter] | None = None  # (key, segmenter) of segment()'s last call
_CACHE_LOCK = threading.Lock()


def segment(
    image: np.ndarray | str | Path,
    model: str | Path | None = None,
    *,
    refine: Refiner | str | None = MODEL_DEFAULT,
    **explicit: Any,
) -> Instances:
    """The instances of one image: ``Segmenter(model, refine, **explicit)(image)``, the segmenter built on the
    first call and kept while the next calls ask for the same one (no argument: the default model with its
    defaults).

    ``image``: RGB (H, W, 3) uint8, or an image file (read with :func:`animeseg.io.read_image`); ``refine``: as
    ``--refine`` (``"none"``, ``"learned"``...; see :class:`Segmenter`); ``explicit``: ``imgsz``, ``conf``,
    ``iou``, ``max_det``, ``device``, ``classes``... as in :class:`Segmenter`. Returns :class:`Instances`: boxes
    (N, 4), scores (N,), classes (N,), masks (N, H, W) bool at the image's own size.
    """
    global _CACHED
    refine = refine_keyword(refine, explicit, "segment")
    check_keywords("segment", explicit, segment_keywords())
    if isinstance(image, (str, Path)):
        from animeseg.io import read_image

        image = read_image(image)
    hashable = {k: tuple(v) if isinstance(v, list) else v for k, v in explicit.items()}
    key = (str(model), refine if isinstance(refine, (str, type(None))) else id(refine), sorted(hashable.items()))
    with _CACHE_LOCK:
        if _CACHED is None or _CACHED[0] != key:
            _CACHED = (key, Segmenter(model, refine, **explicit))
        seg = _CACHED[1]
    return seg(image)


def segment_keywords() -> list[str]:
    """The keywords :func:`segment` accepts (``image`` aside): those of :class:`Segmenter`."""
    return keywords_of(Segmenter)


@dataclass(frozen=True)
class SegmenterSpec:
    """A :class:`Segmenter` described by its settings, so another process (a Ray worker) can build its own.

    ``refine`` is a refiner name and ``refine_options`` its checked options; ``settings`` the detection settings
    (default: the model's own), whose ``device`` is the user's string, resolved where the segmenter is built (a
    worker's GPU, not the head node's).
    """

    model: Path
    refine: str = "none"
    refine_options: Any = None  # animeseg.refine.RefineOptions
    settings: DetectSettings | None = field(default=None)

    @classmethod
    def of(
        cls,
        model: str | Path,
        refine: str | None = None,
        refine_options: Any = None,
        settings: DetectSettings | None = None,
        **explicit: Any,
    ) -> SegmenterSpec:
        """The spec of ``Segmenter(model, refine, settings, **explicit)``: the model's own defaults (settings and
        refiner) under what is given, resolved now: ``SegmenterSpec.of("best.onnx", imgsz=640, classes=[0])``."""
        defaults = model_defaults(model)
        settings = (settings if settings is not None else defaults.detect).override(**explicit)
        refine = refine if refine is not None else defaults.refine
        return cls(Path(model), refine, refine_options, settings)

    def build(self, with_refiner: bool = True) -> Segmenter:
        """Load the model (and the refiner unless ``with_refiner`` is False) in this process."""
        from animeseg.device import resolve_device
        from animeseg.refine import RefineOptions, build_refiner

        settings = self.settings if self.settings is not None else model_defaults(self.model).detect
        device = resolve_device(settings.device)
        refiner = None
        if with_refiner:
            options = replace(self.refine_options or RefineOptions(), device=device)
            refiner = build_refiner(self.refine, options=options)
        return Segmenter(self.model, refiner, settings, device=device)


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
