"""Mask R-CNN as an animeseg :class:`~animeseg.detector.Detector` (a checkpoint in PyTorch, or its ONNX export on
ONNX Runtime): an image in, full-resolution ``Instances`` out.

torchvision resizes the image itself (long side to ``imgsz``) and pastes each mask back at the image's own size,
so masks are never letterbox-sized. ``conf``, ``iou`` and ``max_det`` set the ROI heads' score threshold, NMS
threshold and detections per image; ``classes`` keeps only those class ids. Settings come as a
:class:`~animeseg.settings.DetectSettings`, the detector's own or a call's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.instances import Instances, check_image, unrefined_record
from animeseg.runtime.metadata import model_metadata
from animeseg.settings import DetectSettings, model_defaults


def configure(model: Any, imgsz: int, conf: float, iou: float, max_det: int) -> Any:
    """Set inference settings on a torchvision ``MaskRCNN`` (in place); returns it."""
    model.transform.min_size = (int(imgsz),)
    model.transform.max_size = int(imgsz)
    model.roi_heads.score_thresh = float(conf)
    model.roi_heads.nms_thresh = float(iou)
    model.roi_heads.detections_per_img = int(max_det)
    return model


def to_instances(
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray,
    names: dict[int, str],
    classes: tuple[int, ...] | list[int] | None,
) -> Instances:
    """``Instances`` from Mask R-CNN outputs: labels (N,) with 0 = background, masks (N, 1, H, W) probabilities.

    Kept: the listed ``classes`` (all when None), in descending score order; masks are probabilities > 0.5.
    """
    h, w = masks.shape[-2:]
    cls = labels.astype(np.int64) - 1
    keep = np.ones(len(cls), bool) if classes is None else np.isin(cls, list(classes))
    order = np.argsort(-scores[keep], kind="stable")
    idx = np.flatnonzero(keep)[order]
    if len(idx) == 0:
        return Instances.empty(h, w, dict(names))
    return Instances(
        boxes[idx].astype(np.float32),
        scores[idx].astype(np.float32),
        cls[idx],
        masks[idx, 0] > 0.5,
        dict(names),
        [unrefined_record() for _ in idx],
    )


class MaskRCNNDetector:
    """An animeseg Mask R-CNN checkpoint (``.pt`` from ``animeseg train --arch maskrcnn``), loaded once.

    Args:
        model: the checkpoint (its architecture and classes are read from it).
        settings: what :meth:`detect` uses by default (None: the model's own); ``imgsz`` is the long side the
            image is resized to inside the model; ``device`` a torch device (``cpu``, ``cuda:0``), None: the
            first GPU if any, else the CPU.
    """

    def __init__(self, model: str | Path, settings: DetectSettings | None = None) -> None:
        import torch

        from animeseg.maskrcnn.model import load_checkpoint

        net, self.config = load_checkpoint(model)
        self.settings = settings if settings is not None else model_defaults(model).detect
        device = self.settings.device
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = net.to(self.device).eval()
        self.names: dict[int, str] = dict(self.config.names)

    def detect(self, image: np.ndarray, settings: DetectSettings | None = None) -> Instances:
        """Instances of an RGB (H, W, 3) uint8 image; masks (N, H, W) bool at full resolution, by score.

        ``settings``: this call's (default :attr:`settings`; applied to the model at each call, so detectors
        sharing it may differ).
        """
        import torch

        s = settings or self.settings
        image = check_image(image)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(self.device).float() / 255.0
        configure(self.model, s.imgsz, s.conf, s.iou, s.max_det)
        with torch.inference_mode():
            out = self.model([x])[0]
        return to_instances(
            out["boxes"].cpu().numpy(),
            out["labels"].cpu().numpy(),
            out["scores"].cpu().numpy(),
            out["masks"].cpu().numpy(),
            self.names,
            s.classes,
        )


def onnx_session(path: Path, runtime: str = "auto") -> Any:
    """A CPU session of a Mask R-CNN export (:func:`animeseg.runtime.session.create_session`), in fp32: the
    graph's box and score arithmetic is not made for bf16."""
    from animeseg.runtime.session import create_session, parse_runtime

    backend, _ = parse_runtime(runtime)
    return create_session(path, backend=backend, precision="fp32")


def onnx_outputs(session: Any, image: np.ndarray) -> tuple[np.ndarray, ...]:
    """The graph's ``boxes``, ``labels``, ``scores``, ``masks`` for an RGB (H, W, 3) uint8 image."""
    x = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0
    boxes, labels, scores, masks = session.run({session.input_names[0]: x})[:4]
    return boxes, labels, scores, masks


class MaskRCNNOnnxDetector:
    """A Mask R-CNN ONNX export on ONNX Runtime (CPU), as an animeseg detector.

    ``conf``, ``max_det`` and ``classes`` of its settings are applied to the graph's output (it keeps scores down
    to its traced ``conf``); ``imgsz`` and ``iou`` are fixed in the graph (its metadata says which), so other
    values are ignored.
    """

    def __init__(self, model: str | Path, settings: DetectSettings | None = None) -> None:
        self.path = Path(model)
        self.session = onnx_session(self.path, (settings or model_defaults(model).detect).runtime)
        meta = model_metadata(self.path)
        self.names: dict[int, str] = {int(k): v for k, v in json.loads(meta.get("names", "{}")).items()}
        self.settings = settings if settings is not None else model_defaults(model).detect
        self.model = None

    def detect(self, image: np.ndarray, settings: DetectSettings | None = None) -> Instances:
        """Instances of an RGB (H, W, 3) uint8 image; masks (N, H, W) bool at full resolution, by score."""
        s = settings or self.settings
        image = check_image(image)
        boxes, labels, scores, masks = onnx_outputs(self.session, image)
        keep = scores >= float(s.conf)
        inst = to_instances(boxes[keep], labels[keep], scores[keep], masks[keep], self.names, s.classes)
        return inst[: s.max_det] if len(inst) > s.max_det else inst
