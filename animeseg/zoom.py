"""A second look, zoomed out, at an image where the detector found nothing.

A character that fills the frame (a head or half-body portrait, a close-up) is the case detectors trained on
full figures miss most; shown smaller, in the middle of a flat border, the same detector often finds it. The
second look costs one more detector pass, paid only on images where the first found nothing
(``DetectSettings.zoom_out``; the packaged model's sidecar turns it on, docs/model.md "Real pictures").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from animeseg._lazy import cv2
from animeseg.instances import Instances
from animeseg.settings import DetectSettings


def border_colour(image: np.ndarray) -> np.ndarray:
    """The median colour of the image's outermost 2-pixel ring: (3,) uint8, the padding that continues it."""
    ring = np.concatenate(
        [image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3), image[:, :2].reshape(-1, 3), image[:, -2:].reshape(-1, 3)]
    )
    return np.median(ring, axis=0).astype(np.uint8)


def zoomed_out(
    detect: Callable[[np.ndarray, DetectSettings], Instances],
    image: np.ndarray,
    settings: DetectSettings,
    factor: float,
) -> Instances:
    """Detect on ``image`` (H, W, 3) uint8 shrunk ``factor`` times in the middle of a flat border of its own
    edge colour, the canvas keeping its aspect ratio; returns the instances that lie mostly on the image, their
    masks (N, H, W) bool at the image's own size.

    ``detect`` is a detector's ``detect(image, settings)``. The shrunk image is made at the detector's own scale
    (the canvas' long side is ``settings.imgsz``), so the pass costs one ordinary detection.
    """
    h, w = image.shape[:2]
    scale = settings.imgsz / factor / max(h, w)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    cw, ch = max(sw, round(sw * factor)), max(sh, round(sh * factor))
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:] = border_colour(image)
    x0, y0 = (cw - sw) // 2, (ch - sh) // 2
    canvas[y0 : y0 + sh, x0 : x0 + sw] = small
    found = detect(canvas, settings)
    if len(found) == 0:
        return Instances.empty(h, w, found.names)
    inner = found.masks[:, y0 : y0 + sh, x0 : x0 + sw]
    n = len(found)
    on_image = inner.reshape(n, -1).sum(1) >= 0.5 * np.maximum(found.masks.reshape(n, -1).sum(1), 1)
    masks = np.zeros((n, h, w), bool)
    for k in np.flatnonzero(on_image):
        masks[k] = cv2.resize(inner[k].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    keep = np.flatnonzero(masks.reshape(n, -1).any(1))
    out = Instances(np.zeros((len(keep), 4)), found.scores[keep], found.classes[keep], masks[keep], found.names)
    out.boxes = out.boxes_from_masks()
    return out
