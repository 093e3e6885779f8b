"""Segment Anything on ONNX Runtime alone: the refiner for a folder written by ``animeseg export onnx``.

The folder holds ``encoder.onnx`` (image encoder with SAM's normalisation and padding inside the graph),
``decoder.onnx`` (prompt encoder + mask decoder for a batch of boxes, multimask output, masks upsampled to the
original image size inside the graph) and ``sam.json`` (what they are). This module needs numpy, Pillow and
onnxruntime only, so a deployment without PyTorch can still refine masks.

The semantics are those of ``segment_anything.SamPredictor`` so that this refiner and the PyTorch one agree on
the same weights: the image is resized with ``ResizeLongestSide`` (Pillow bilinear, as torchvision does on a PIL
image), boxes are given in original-image pixels, and masks are logits > 0 at full resolution.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.errors import AnimesegError
from animeseg.refine.base import Candidates

SAM_JSON = "sam.json"
ENCODER = "encoder.onnx"
DECODER = "decoder.onnx"
FORMAT = "animeseg-sam-onnx"
FORMAT_VERSION = 1

#: Largest full-resolution logits block one decoder call may return (bytes); bounds memory on big images.
LOGITS_BUDGET = 512 * 2**20


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) after scaling the longest side to ``long_side``: ``ResizeLongestSide.get_preprocess_shape``."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def prepare_image(image: np.ndarray, img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's inputs for an RGB image.

    Args:
        image: (H, W, 3) uint8 RGB.
        img_size: the model's input side (1024 for the official models).

    Returns:
        ``image`` (1, 3, img_size, img_size) float32 in [0, 255]: the image resized so its longest side is
        ``img_size`` (Pillow bilinear, exactly SamPredictor's transform), zero-padded at the bottom and right;
        ``input_size`` (2,) int64: the resized (h, w) before padding (the graph masks the padding out after
        normalising, as ``Sam.preprocess`` pads with zeros after normalisation).
    """
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = preprocess_shape(image.shape[0], image.shape[1], img_size)
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.BILINEAR))
    x = np.zeros((1, 3, img_size, img_size), np.float32)
    x[0, :, :h, :w] = resized.transpose(2, 0, 1)
    return x, np.array([h, w], np.int64)


def read_sam_json(folder: str | Path) -> dict[str, Any]:
    """Read and check ``sam.json`` of an exported SAM folder; one-line AnimesegError when it is not one."""
    folder = Path(folder)
    path = folder / SAM_JSON
    if not path.is_file():
        raise AnimesegError(
            f"{folder}: not an exported SAM folder (no {SAM_JSON}); create one with `animeseg export onnx`"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AnimesegError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AnimesegError(f"{path}: not an animeseg SAM export (format is not {FORMAT!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise AnimesegError(f"{path}: written by a newer animeseg (format version {meta['format_version']})")
    for key in ("encoder", "decoder"):
        name = meta.get(key, {}).get("file", "")
        if not name or not (folder / name).is_file():
            raise AnimesegError(f"{folder}: {key} file {name or '(unnamed)'} is missing")
    return meta


def default_providers() -> list[str]:
    """ONNX Runtime execution providers to use: CUDA when this onnxruntime build has it, then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or available


def _session_options(threads: int | None, arena: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    # This runs in one process with PyTorch/Ultralytics: idle ONNX Runtime threads that spin-wait steal the
    # cores the detector needs next (a PyTorch pass measured 10-24x slower right after a spinning run).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = arena
    return options


class OnnxSamRefiner:
    """SAM box-prompted candidates from an exported folder, on ONNX Runtime.

    Each image is encoded once; all of its boxes go through the decoder in batched calls of at most ``chunk``
    boxes (fewer on very large images, so one call's full-resolution logits stay within ``LOGITS_BUDGET``).
    Every box yields K = 3 candidates (SAM's multimask output) scored by SAM's predicted IoU.
    """

    name = "sam"

    def __init__(
        self,
        folder: str | Path,
        chunk: int = 16,
        providers: list[str] | None = None,
        threads: int | None = None,
    ):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.meta = read_sam_json(self.folder)
        self.img_size = int(self.meta["img_size"])
        self.mask_threshold = float(self.meta.get("mask_threshold", 0.0))
        self.chunk = max(1, int(chunk))
        providers = providers or default_providers()
        # The encoder's global attention needs GBs for a moment (vit_b: 4.5 GB peak, like PyTorch's 3.8 GB);
        # without the arena that memory goes back after each image instead of staying held between images.
        encoder_options, options = _session_options(threads, arena=False), _session_options(threads)
        try:
            self.encoder = ort.InferenceSession(
                str(self.folder / self.meta["encoder"]["file"]), encoder_options, providers=providers
            )
            self.decoder = ort.InferenceSession(
                str(self.folder / self.meta["decoder"]["file"]), options, providers=providers
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise AnimesegError(f"{self.folder}: cannot load the ONNX models ({type(e).__name__}: {e})") from None

    def embed(self, image: np.ndarray) -> np.ndarray:
        """Image embedding (1, 256, img_size/16, img_size/16) float32 of an (H, W, 3) uint8 RGB image."""
        x, input_size = prepare_image(image, self.img_size)
        return self.encoder.run(["image_embeddings"], {"image": x, "input_size": input_size})[0]

    def decode(self, embedding: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Mask logits for boxes on an embedded image, in one decoder call.

        Args:
            embedding: (1, 256, g, g) from :meth:`embed`.
            boxes: (B, 4) xyxy in original-image pixels, B >= 1.
            size: the original image's (H, W).

        Returns:
            logits (B, 3, H, W) float32 (mask = logits > ``mask_threshold``) and predicted IoU (B, 3) float32.
        """
        feeds = {
            "image_embeddings": embedding,
            "boxes": np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4),
            "orig_im_size": np.array(size, np.int64),
        }
        logits, iou = self.decoder.run(["masks", "iou_predictions"], feeds)
        return logits, iou

    def candidates(self, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray | None = None) -> Candidates:
        """Candidates for N boxes: masks (N, 3, H, W) bool, scores (N, 3) float32 (SAM's predicted IoU).

        ``masks`` (the detector's) are not used: SAM is prompted with the boxes alone, like the PyTorch refiner.
        """
        h, w = image.shape[:2]
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        n = len(boxes)
        out_masks = np.zeros((n, 3, h, w), bool)
        out_scores = np.zeros((n, 3), np.float32)
        if n == 0:
            return Candidates(out_masks, out_scores)
        embedding = self.embed(image)
        step = max(1, min(self.chunk, LOGITS_BUDGET // (3 * h * w * 4)))
        for start in range(0, n, step):
            logits, iou = self.decode(embedding, boxes[start : start + step], (h, w))
            out_masks[start : start + step] = logits > self.mask_threshold
            out_scores[start : start + step] = iou
        return Candidates(out_masks, out_scores)

    def __repr__(self) -> str:
        return f"OnnxSamRefiner({str(self.folder)!r}, config={self.meta.get('config')}, {self.meta.get('precision')})"
