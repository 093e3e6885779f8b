"""Overlays (``predict --save overlays``, annotated videos): the image with each instance's mask tinted, outlined,
boxed and labelled with its class and score."""

from __future__ import annotations

import numpy as np

from animeseg._lazy import cv2
from animeseg.instances import Instances
from animeseg.masks import mask_to_contours

# Distinct, colour-blind-friendly-ish colours (RGB), cycled per instance.
PALETTE = np.array(
    [
        (255, 56, 56),
        (72, 249, 10),
        (0, 194, 255),
        (255, 178, 29),
        (207, 210, 49),
        (146, 204, 23),
        (61, 219, 134),
        (26, 147, 52),
        (0, 212, 187),
        (44, 153, 168),
        (52, 69, 147),
        (100, 115, 255),
        (0, 24, 236),
        (132, 56, 255),
        (82, 0, 133),
        (203, 56, 255),
        (255, 149, 200),
        (255, 55, 199),
    ],
    dtype=np.uint8,
)


def render_overlay(image: np.ndarray, instances: Instances, alpha: float = 0.45) -> np.ndarray:
    """RGB (H, W, 3) uint8: ``image`` with each instance's mask tinted in its colour, its outline, its box and a
    ``name score`` label. Tracked instances take their track's colour and a ``#id name score`` label, so a
    character keeps its colour through a video. Text uses OpenCV's built-in Hershey font (no font files)."""
    out = np.ascontiguousarray(image[..., :3]).copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 320))
    scale = max(0.4, min(h, w) / 600)
    names = instances.class_names()
    tracks = instances.track_ids
    # a track's colour is fixed by its id; untracked instances are coloured by position
    slots = [int(t) for t in tracks] if tracks is not None else list(range(len(instances)))
    for i in range(len(instances)):
        colour = PALETTE[slots[i] % len(PALETTE)]
        m = instances.masks[i]
        out[m] = (out[m] * (1 - alpha) + colour * alpha + 0.5).astype(np.uint8)
    for i in range(len(instances)):
        colour = tuple(int(c) for c in PALETTE[slots[i] % len(PALETTE)])
        contours = [np.round(c).astype(np.int32).reshape(-1, 1, 2) for c in mask_to_contours(instances.masks[i])]
        if contours:
            cv2.polylines(out, contours, True, colour, thick, cv2.LINE_AA)
        x1, y1, x2, y2 = (int(round(float(v))) for v in instances.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
        label = f"{names[i]} {float(instances.scores[i]):.2f}"
        if tracks is not None:
            label = f"#{int(tracks[i])} {label}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(h - 1, y1 + th + base + 2)
        tx = int(np.clip(x1, 0, max(0, w - tw)))
        cv2.rectangle(out, (tx, ty - th - base), (tx + tw, ty + base // 2), colour, -1)
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        text = (0, 0, 0) if luminance > 140 else (255, 255, 255)
        cv2.putText(out, label, (tx, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, text, thick, cv2.LINE_AA)
    return out
