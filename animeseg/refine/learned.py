"""The learned refiner (``--refine learned``): a small U-Net that redraws each instance's mask as a soft alpha.

For every detected instance it sees a crop around the box (:data:`PAD` of the box added on each side, resized to
:data:`SIZE` x :data:`SIZE`) with six channels: RGB, the instance's own coarse mask, the union of the *other*
instances' masks in that crop, so an overlap is settled between characters rather than per character, and a
colour prior (:func:`colour_prior`: how much more often each pixel's colour occurs inside the coarse mask than
around it, GrabCut's colour models in one channel), so a part the coarse mask missed but drawn in the
character's colours (a hat's tip, a sleeve) can be taken back. It
predicts the instance's alpha in the crop (the sprites' exact anti-aliased alpha is what it was trained on);
the alpha is pasted back at full resolution, and its 0.5 level is the candidate mask that fusion judges.

All instances of an image run as one batch through the runtime session (ONNX Runtime or OpenVINO; no PyTorch).
The packaged network is ``animeseg/models/anime-refiner.onnx``, made by ``recipes/anime-refiner/run.sh``
(:mod:`animeseg.train.refiner`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from animeseg._lazy import cv2
from animeseg.errors import AnimesegError
from animeseg.refine.base import Candidates

#: Side of the square crop the network sees, in pixels.
SIZE = 256
#: Context added around the box on each side, as a fraction of the box's width and height.
PAD = 0.15
#: Input channels: RGB, own coarse mask, the other instances' masks, the colour prior.
CHANNELS = 6
#: Levels per RGB channel of the colour prior's histograms (16 ** 3 colour bins).
LEVELS = 16
#: ImageNet-style normalisation of the RGB channels (the masks stay 0/1).
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0

PACKAGED = Path(__file__).resolve().parents[1] / "models" / "anime-refiner.onnx"


def crop_boxes(boxes: np.ndarray, height: int, width: int, pad: float = PAD) -> np.ndarray:
    """Integer crop boxes: ``boxes`` (N, 4) xyxy grown by ``pad`` of their size on each side, clipped to the
    image; (N, 4) int64 ``x1, y1, x2, y2`` (exclusive ends), each at least 2 pixels wide and high."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    x1 = np.clip(np.floor(b[:, 0] - pad * bw), 0, width - 2)
    y1 = np.clip(np.floor(b[:, 1] - pad * bh), 0, height - 2)
    x2 = np.clip(np.ceil(b[:, 2] + pad * bw), x1 + 2, width)
    y2 = np.clip(np.ceil(b[:, 3] + pad * bh), y1 + 2, height)
    return np.stack([x1, y1, x2, y2], 1).astype(np.int64)


def resize_to(crop: np.ndarray, size: int = SIZE) -> np.ndarray:
    """A crop resized to ``size`` x ``size``: area averaging when shrinking (no aliasing of line art)."""
    h, w = crop.shape[:2]
    interp = cv2.INTER_AREA if h * w > size * size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


def colour_prior(rgb: np.ndarray, own: np.ndarray) -> np.ndarray:
    """P(inside | colour) of each pixel of a crop: ``rgb`` (S, S, 3) uint8, ``own`` (S, S) the coarse mask (> 0.5
    inside) -> (S, S) float32 in [0, 1]; colours are binned :data:`LEVELS` per channel, the two histograms
    normalised by their pixel counts and smoothed by one count per bin. 0.5 everywhere when either side is
    empty."""
    inside = np.asarray(own) > 0.5
    n_in = int(inside.sum())
    if n_in == 0 or n_in == inside.size:
        return np.full(inside.shape, 0.5, np.float32)
    q = (rgb.astype(np.uint16) * LEVELS) >> 8
    bins = ((q[..., 0] * LEVELS + q[..., 1]) * LEVELS + q[..., 2]).ravel()
    flat = inside.ravel()
    fg = np.bincount(bins[flat], minlength=LEVELS**3).astype(np.float32) + 1.0
    bg = np.bincount(bins[~flat], minlength=LEVELS**3).astype(np.float32) + 1.0
    fg /= n_in + LEVELS**3
    bg /= inside.size - n_in + LEVELS**3
    return (fg / (fg + bg))[bins].reshape(inside.shape).astype(np.float32)


def crop_inputs(
    image: np.ndarray,
    masks: np.ndarray,
    crops: np.ndarray,
    others: np.ndarray | None = None,
    size: int = SIZE,
    channels: int = CHANNELS,
) -> np.ndarray:
    """The network's input for each instance: (N, channels, size, size) float32.

    ``image`` RGB (H, W, 3) uint8, ``masks`` (N, H, W) bool (each instance's coarse mask), ``crops`` (N, 4) from
    :func:`crop_boxes`. ``others`` (N, H, W) bool replaces the default "union of the other masks" (training
    builds its own). ``channels`` 5 leaves out the colour prior (networks trained before it).
    """
    masks = np.asarray(masks, bool)
    n = len(masks)
    out = np.empty((n, channels, size, size), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(crops):
        rgb = resize_to(image[y1:y2, x1:x2], size)
        out[i, :3] = ((rgb.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
        own = masks[i, y1:y2, x1:x2]
        # only the crop of each mask is read: whole-image unions cost more than the network for a large frame
        rest = others[i, y1:y2, x1:x2] if others is not None else masks[np.arange(n) != i, y1:y2, x1:x2].any(0)
        out[i, 3] = resize_to(own.astype(np.float32), size)
        out[i, 4] = resize_to(rest.astype(np.float32), size)
        if channels > 5:
            out[i, 5] = colour_prior(rgb, out[i, 3])
    return out


def paste_alpha(alpha: np.ndarray, crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """One instance's crop alpha (size, size) float back at full resolution: (H, W) uint8, 0 outside the crop."""
    x1, y1, x2, y2 = (int(v) for v in crop)
    out = np.zeros((height, width), np.uint8)
    full = cv2.resize(np.ascontiguousarray(alpha, np.float32), (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    # upsampling spreads the network's edge ramp (about a pixel of the crop) over `zoom` pixels; steepen it back
    # around 0.5, so the mask (alpha >= 0.5) is unchanged and the soft edge is as wide as the art's anti-aliasing
    zoom = max(x2 - x1, y2 - y1) / alpha.shape[0]
    if zoom > 1:
        full = (full - 0.5) * zoom + 0.5
    out[y1:y2, x1:x2] = np.clip(full * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


class LearnedRefiner:
    """``--refine learned``: one batched network call per image; candidates are the alphas' 0.5 level.

    Args:
        model: the network's ONNX file (default: the packaged ``anime-refiner.onnx``).
        backend, precision: passed to :func:`animeseg.runtime.session.create_session` (``auto`` measures-based).

    ``candidates`` returns one candidate per instance, scored by the network's confidence (mean distance of the
    alpha from 0.5 inside the crop, in [0, 1]), and the soft alphas (N, 1, H, W) uint8 that cut-outs use.
    """

    name = "learned"
    uses: ClassVar[tuple[str, ...]] = ()
    #: its candidates carry soft alphas, which ``--alpha matte`` cut-outs use (no PyMatting needed)
    predicts_alpha = True

    def __init__(self, model: str | Path | None = None, backend: str = "auto", precision: str = "auto") -> None:
        self.path = Path(model) if model is not None else PACKAGED
        if not self.path.is_file():
            raise AnimesegError(f"{self.path}: the learned refiner's network is missing (a broken install?)")
        from animeseg.runtime.session import create_session

        self.session = create_session(self.path, backend=backend, precision=precision)
        width = self.session.inputs[0].shape[1] if len(self.session.inputs[0].shape) == 4 else None
        #: input channels the network takes (5: a network from before the colour prior)
        self.channels = width if isinstance(width, int) else CHANNELS
        self.calls = 0

    @classmethod
    def check(cls, options: Any) -> Any:
        """The packaged network is there (a one-line error before any work otherwise)."""
        if not PACKAGED.is_file():
            raise AnimesegError(f"{PACKAGED}: the learned refiner's network is missing (a broken install?)")
        return options

    @classmethod
    def from_options(cls, options: Any) -> LearnedRefiner:
        return cls()

    def predict_alpha(self, inputs: np.ndarray) -> np.ndarray:
        """(N, 6, S, S) float32 inputs -> (N, S, S) float32 alphas in [0, 1]."""
        self.calls += 1
        (logits,) = self.session.run({"input": np.ascontiguousarray(inputs, np.float32)})[:1]
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float32).reshape(len(inputs), *inputs.shape[2:])))

    def candidates(self, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray) -> Candidates:
        h, w = image.shape[:2]
        n = len(boxes)
        if n == 0:
            return Candidates(np.zeros((0, 1, h, w), bool), np.zeros((0, 1), np.float32))
        crops = crop_boxes(boxes, h, w)
        alphas = self.predict_alpha(crop_inputs(image, np.asarray(masks, bool), crops, channels=self.channels))
        full = np.stack([paste_alpha(a, c, h, w) for a, c in zip(alphas, crops, strict=True)])
        confidence = np.abs(alphas - 0.5).mean(axis=(1, 2)) * 2.0
        return Candidates(full[:, None] >= 128, confidence[:, None].astype(np.float32), alphas=full[:, None])
