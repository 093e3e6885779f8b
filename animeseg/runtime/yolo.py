"""Ultralytics YOLO-seg ONNX exports, run natively: letterbox, inference, box decoding, NMS and full-resolution
masks in numpy/OpenCV on a :mod:`animeseg.runtime.session` backend, without torch or Ultralytics.

Each step reproduces Ultralytics' predictor (``retina_masks=True``, the letterbox of :mod:`animeseg.detector`),
so the same ONNX file gives the same instances either way (``tests/test_runtime.py``: boxes within 1 px, scores
within 1e-3, mask IoU >= 0.99 per instance):

* letterbox: resize with OpenCV's bilinear filter to fit ``imgsz`` x ``imgsz``, pad with grey 114, centred, to
  that square or (``rect``, dynamic exports) only to the next multiple of the stride on each side;
* decoding: the best class of each anchor, kept above ``conf``; class-aware greedy NMS (boxes offset by class,
  as Ultralytics does), at most ``max_det`` instances, in descending score order;
* boxes: mapped back through the letterbox and clipped to the image;
* masks: a mask's logits are the coefficients times the prototypes, resampled to the image the way Ultralytics
  resamples them (a bilinear upsampling that makes the letterbox padding whole pixels, the crop of that padding,
  a bilinear resize to the image) and thresholded at 0 (probability 0.5), inside the box only. Resampling is
  separable, so one (H, h) and one (W, w) matrix per image size hold both stages, and each instance costs two
  small matrix products over its box: no full-image float mask is ever made. Instances whose mask is empty are
  dropped, as Ultralytics drops them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from animeseg._lazy import cv2
from animeseg.errors import AnimesegError
from animeseg.instances import Instances, check_image, unrefined_record
from animeseg.runtime.metadata import class_names, model_metadata
from animeseg.runtime.session import Session, create_session, default_threads, parse_runtime
from animeseg.settings import DetectSettings, model_defaults

__all__ = ["Letterbox", "YoloOnnxDetector", "decode", "letterbox", "masks_in_boxes", "nms"]

PAD_VALUE = 114  # Ultralytics' letterbox grey
MAX_WH = 7680  # Ultralytics' per-class box offset for class-aware NMS
MAX_NMS = 30000  # most candidates NMS looks at (highest scores first)


@dataclass(frozen=True)
class Letterbox:
    """How an (h, w) image sits in the (H, W) network input: resized to (new_h, new_w) at (top, left)."""

    image: tuple[int, int]
    size: tuple[int, int]
    new: tuple[int, int]
    top: int
    left: int

    @classmethod
    def fit(cls, image: tuple[int, int], size: tuple[int, int], stride: int = 0) -> Letterbox:
        """Ultralytics' ``LetterBox(center=True, scaleup=True)`` geometry of an (h, w) image in ``size`` (H, W):
        ``stride`` 0 pads to ``size`` itself (``auto=False``); a stride pads only to the next multiple of it
        (``auto=True``, the smallest rectangle: the scale is still the one that fits ``size``)."""
        (h, w), (sh, sw) = image, size
        r = min(sh / h, sw / w)
        new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
        if stride:
            sh, sw = new_h + (sh - new_h) % stride, new_w + (sw - new_w) % stride
        return cls((h, w), (sh, sw), (new_h, new_w), round((sh - new_h) / 2 - 0.1), round((sw - new_w) / 2 - 0.1))


def letterbox(image: np.ndarray, size: tuple[int, int], stride: int = 0) -> tuple[np.ndarray, Letterbox]:
    """``image`` (h, w, 3) uint8 resized and padded into (H, W, 3) uint8, and the geometry used
    (:meth:`Letterbox.fit`: ``size`` itself, or with a ``stride`` the smallest rectangle of its multiples)."""
    box = Letterbox.fit(image.shape[:2], size, stride)
    (new_h, new_w), (sh, sw) = box.new, box.size
    if (new_h, new_w) != image.shape[:2]:
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.full((sh, sw, 3), PAD_VALUE, np.uint8)
    out[box.top : box.top + new_h, box.left : box.left + new_w] = image
    return out, box


def to_input(padded: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1], the network's input."""
    x = np.empty((3, *padded.shape[:2]), np.float32)
    np.divide(padded.transpose(2, 0, 1), np.float32(255), out=x)  # a division, as Ultralytics divides
    return x[None]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression (torchvision's rule: drop a box whose IoU with a kept, higher-scoring box
    exceeds ``iou``). boxes (n, 4) xyxy, scores (n,) -> kept indices (k,), in descending score order."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return np.asarray(keep, np.int64)


def decode(
    pred: np.ndarray, nc: int, settings: DetectSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The instances in one image's raw predictions, after NMS.

    pred: (4 + nc + nm, A) float32 (xywh in input pixels, class scores, mask coefficients).
    Returns boxes (k, 4) xyxy in input pixels, scores (k,), classes (k,) int64, coefficients (k, nm); best first.
    """
    cls_scores = pred[4 : 4 + nc]
    best = cls_scores.max(0)
    cand = np.flatnonzero(best > settings.conf)
    x = pred[:, cand].T  # (n, C)
    classes = cls_scores[:, cand].argmax(0)
    scores = best[cand]
    if settings.classes is not None:
        keep = np.isin(classes, np.asarray(settings.classes))
        x, classes, scores = x[keep], classes[keep], scores[keep]
    if len(scores) > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        x, classes, scores = x[top], classes[top], scores[top]
    xy, half = x[:, :2], x[:, 2:4] / 2
    boxes = np.concatenate([xy - half, xy + half], 1)
    keep = nms(boxes + (classes * MAX_WH)[:, None].astype(np.float32), scores, settings.iou)[: settings.max_det]
    return boxes[keep], scores[keep], classes[keep].astype(np.int64), x[keep, 4 + nc :]


def scale_boxes(boxes: np.ndarray, box: Letterbox) -> np.ndarray:
    """(n, 4) xyxy boxes in input pixels -> pixels of the original image, clipped to it (Ultralytics' rule)."""
    (h, w), (new_h, new_w) = box.image, box.new
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] = (out[:, [0, 2]] - box.left) / np.float32(new_w / w)
    out[:, [1, 3]] = (out[:, [1, 3]] - box.top) / np.float32(new_h / h)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def _linear(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of torch's bilinear resampling along one axis (``align_corners=False``)."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = np.clip(src - i0, 0, 1)
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1 - lam)
    np.add.at(m, (rows, i1), lam)
    return m


@lru_cache(maxsize=16)
def _resample(h: int, w: int, mh: int, mw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Prototype (mh, mw) -> image (h, w) resampling as Ultralytics' ``process_mask_native`` does it.

    Returns ry (h, mh) and rx (w, mw) float32 with ``logits_image = ry @ logits_proto @ rx.T``, and per image
    row/column the [first, last + 1) prototype index it reads (ys (h, 2), xs (w, 2)).
    """
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // math.gcd(4, pad | pad // 2)  # upsampling that crops the letterbox padding on whole pixels
    uy, ux = (_linear(f * mh, mh), _linear(f * mw, mw)) if f > 1 else (np.eye(mh), np.eye(mw))
    hu, wu = f * mh, f * mw
    if (hu, wu) == (h, w):
        ry, rx = uy, ux
    else:
        g = min(hu / h, wu / w)
        ch, cw = max(round(h * g), 1), max(round(w * g), 1)
        top, left = round((hu - ch) / 2 - 0.1), round((wu - cw) / 2 - 0.1)
        ry = _linear(h, ch) @ uy[top : top + ch]
        rx = _linear(w, cw) @ ux[left : left + cw]

    def span(m: np.ndarray) -> np.ndarray:
        nz = m != 0
        return np.stack([nz.argmax(1), m.shape[1] - nz[:, ::-1].argmax(1)], 1)

    return ry.astype(np.float32), rx.astype(np.float32), span(ry), span(rx)


def masks_in_boxes(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Full-resolution masks computed only inside their boxes.

    protos (nm, mh, mw) float32, coeffs (n, nm), boxes (n, 4) xyxy in image pixels, shape (h, w) -> masks
    (n, h, w) bool: pixel (r, c) is in mask i when it lies in box i (``x1 <= c < x2``, ``y1 <= r < y2``) and the
    resampled logit there is above 0.
    """
    h, w = shape
    nm, mh, mw = protos.shape
    ry, rx, ys, xs = _resample(h, w, mh, mw)
    masks = np.zeros((len(boxes), h, w), bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(np.float64)):
        c0, c1 = max(math.ceil(x1), 0), min(math.ceil(x2), w)
        r0, r1 = max(math.ceil(y1), 0), min(math.ceil(y2), h)
        if c1 <= c0 or r1 <= r0:
            continue
        p0, p1 = int(ys[r0, 0]), int(ys[r1 - 1, 1])
        q0, q1 = int(xs[c0, 0]), int(xs[c1 - 1, 1])
        logits = (coeffs[i] @ protos[:, p0:p1, q0:q1].reshape(nm, -1)).reshape(p1 - p0, q1 - q0)
        a, b = ry[r0:r1, p0:p1], rx[c0:c1, q0:q1]
        # the cheaper order of the two products (rows first or columns first)
        rows_first = (r1 - r0) * (q1 - q0) * ((p1 - p0) + (c1 - c0))
        cols_first = (c1 - c0) * (p1 - p0) * ((q1 - q0) + (r1 - r0))
        region = (a @ logits) @ b.T if rows_first <= cols_first else a @ (logits @ b.T)
        masks[i, r0:r1, c0:c1] = region > 0
    return masks


def _check_device(settings: DetectSettings) -> None:
    if settings.device not in (None, "cpu"):
        raise AnimesegError(f"device {settings.device}: ONNX models run on the CPU here (use a .pt model)")


class YoloOnnxDetector:
    """An Ultralytics YOLO-seg ONNX export run natively (see the module doc): the :class:`~animeseg.detector.Detector`
    of ``.onnx`` YOLO-seg files and exported folders.

    Args:
        model: an ``.onnx`` file, an exported folder holding ``model.onnx``, or an OpenVINO IR ``.xml`` (from
            ``animeseg export openvino``).
        settings: what :meth:`detect` uses by default; None: the model's own defaults
            (:func:`animeseg.settings.model_defaults`). ``overrides`` (imgsz, conf, runtime...) are laid over
            them. Their ``runtime`` (:data:`animeseg.runtime.session.RUNTIMES`: ``auto``, ``onnxruntime``,
            ``openvino-bf16``...) and ``device`` (None or ``cpu``) are used when the model is loaded.
        streams, threads: images detected side by side (from different threads) and the threads of each (see
            :func:`animeseg.runtime.session.create_session`).
            Default: one single-threaded stream per core, so a batch (:mod:`animeseg.runner`) keeps every core
            on an image of its own; ``streams=1`` with all cores' threads gives one image the lowest latency.
        session: an already made session of ``model`` to use instead.

    A static ONNX input decides the letterbox size, whatever ``imgsz`` says (as Ultralytics does); a dynamic one
    takes ``imgsz`` and, with ``rect`` (the default), the smallest rectangle of stride multiples around the scaled
    image, as Ultralytics gives a dynamic export or a checkpoint.
    """

    def __init__(
        self,
        model: str | Path,
        settings: DetectSettings | None = None,
        *,
        threads: int | None = None,
        streams: int | None = None,
        session: Session | None = None,
        **overrides: Any,
    ) -> None:
        path = Path(model).expanduser()
        if path.is_dir() and (path / "model.onnx").is_file():
            path = path / "model.onnx"
        self.path = path
        base = settings if settings is not None else model_defaults(path).detect
        self.settings: DetectSettings = base.override(**overrides)
        _check_device(self.settings)
        meta = model_metadata(path)
        if meta.get("task", "segment") != "segment":
            raise AnimesegError(f"{path}: a YOLO {meta['task']} model, not a segmentation one")
        if streams is None:
            streams = 1 if threads else default_threads()
        backend, precision = parse_runtime(self.settings.runtime)
        self.session = session or create_session(path, backend, precision, threads=threads, streams=streams)
        self.names: dict[int, str] = class_names(meta)
        outputs = self.session.outputs
        if len(outputs) < 2 or len(outputs[0].shape) != 3 or len(outputs[1].shape) != 4:
            raise AnimesegError(f"{path}: not a YOLO-seg export (expected (1, C, A) boxes and (1, nm, h, w) masks)")
        self.nc = len(self.names) or int(outputs[0].shape[1] or 0) - 4 - int(outputs[1].shape[1] or 0)
        if not self.names:
            self.names = {i: str(i) for i in range(self.nc)}
        self._input = self.session.inputs[0]
        #: the network's stride, which a rectangular input's sides are multiples of
        self.stride = int(meta.get("stride", 32))

    @property
    def dynamic(self) -> bool:
        """True when the network takes any input size (then ``imgsz`` and ``rect`` decide it)."""
        shape = self._input.shape
        return not (len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int))

    @property
    def concurrency(self) -> int:
        """How many :meth:`detect` calls run side by side (from different threads) without waiting."""
        return self.session.streams

    def input_size(self, settings: DetectSettings | None = None) -> tuple[int, int]:
        """(H, W) the image is scaled to fit: the model's own input when static, else ``imgsz`` square (with
        ``rect``, the input is then cut down to the smallest rectangle of stride multiples: :meth:`infer`)."""
        if not self.dynamic:
            return self._input.shape[2], self._input.shape[3]  # type: ignore[return-value]
        imgsz = (settings or self.settings).imgsz
        return imgsz, imgsz

    def infer(self, image: np.ndarray, settings: DetectSettings | None = None) -> tuple[list[np.ndarray], Letterbox]:
        """The raw network outputs for ``image`` and its letterbox (the first half of :meth:`detect`)."""
        settings = settings or self.settings
        stride = self.stride if self.dynamic and settings.rect else 0
        padded, box = letterbox(check_image(image), self.input_size(settings), stride)
        return self.session.run({self._input.name: to_input(padded)}), box

    def detect(self, image: np.ndarray, settings: DetectSettings | None = None) -> Instances:
        """Instances of an RGB (H, W, 3) uint8 image, masks (N, H, W) bool at full resolution, best first.

        ``settings`` replaces :attr:`settings` for this call (its ``device`` and ``runtime`` are ignored: the
        model stays where it was loaded).
        """
        settings = settings or self.settings
        outputs, box = self.infer(image, settings)
        return self.postprocess(outputs, box, settings)

    def postprocess(self, outputs: list[np.ndarray], box: Letterbox, settings: DetectSettings) -> Instances:
        """Instances from the raw outputs of :meth:`infer` (the second half of :meth:`detect`)."""
        h, w = box.image
        pred, protos = (outputs[0], outputs[1]) if outputs[0].ndim == 3 else (outputs[1], outputs[0])
        boxes, scores, classes, coeffs = decode(pred[0], self.nc, settings)
        if not len(boxes):
            return Instances.empty(h, w, self.names)
        boxes = scale_boxes(boxes, box)
        masks = masks_in_boxes(protos[0], coeffs.astype(np.float32), boxes, (h, w))
        keep = masks.any((1, 2))  # Ultralytics drops instances whose mask came out empty
        if not keep.all():
            boxes, scores, classes, masks = boxes[keep], scores[keep], classes[keep], masks[keep]
        n = len(boxes)
        return Instances(boxes, scores, classes, masks, dict(self.names), [unrefined_record() for _ in range(n)])
