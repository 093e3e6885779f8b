"""Mask R-CNN as an animeseg :class:`~animeseg.detector.Detector`: an image in, full-resolution ``Instances`` out.

torchvision resizes the image itself (long side to ``imgsz``) and pastes each mask back at the image's own size,
so masks are never letterbox-sized. ``conf``, ``iou`` and ``max_det`` set the ROI heads' score threshold, NMS
threshold and detections per image; ``classes`` keeps only those class ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animeseg.detector import check_image, unrefined_record
from animeseg.instances import Instances


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
    classes: list[int] | None,
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
        imgsz: long side the image is resized to inside the model.
        conf, iou, max_det, classes: as for every detector (see the module doc).
        device: a torch device (``cpu``, ``cuda:0``); None: the first GPU if any, else the CPU.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        device: str | None = None,
        classes: list[int] | None = None,
    ) -> None:
        import torch

        from animeseg.maskrcnn.model import load_checkpoint

        net, self.config = load_checkpoint(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = net.to(self.device).eval()
        # applied at each call, so a shallow copy with other args shares the loaded model (as `serve` does)
        self.args: dict[str, Any] = {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det}
        self.names: dict[int, str] = dict(self.config.names)
        self.classes = list(classes) if classes is not None else None

    def detect(self, image: np.ndarray) -> Instances:
        """Instances of an RGB (H, W, 3) uint8 image; masks (N, H, W) bool at full resolution, by score."""
        import torch

        image = check_image(image)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(self.device).float() / 255.0
        configure(self.model, **self.args)
        with torch.inference_mode():
            out = self.model([x])[0]
        return to_instances(
            out["boxes"].cpu().numpy(),
            out["labels"].cpu().numpy(),
            out["scores"].cpu().numpy(),
            out["masks"].cpu().numpy(),
            self.names,
            self.classes,
        )
