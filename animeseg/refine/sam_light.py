"""The light Segment Anything family as a refiner: MobileSAM and SAM 2 / SAM 2.1, models built by Ultralytics.

The contract is :class:`animeseg.refine.sam.SamRefiner`'s: YOLO's boxes are box prompts, each image is encoded
exactly once (``encoder_calls`` counts the passes), the boxes of an image go through the prompt encoder and mask
decoder in batches of ``chunk`` (``decoder_calls``), and every box gets SAM's 3 multimask outputs scored by its
predicted IoU, for the same fusion as every refiner.

* **Input.** MobileSAM is SAM with a small encoder: longest side scaled to 1024, padded at the bottom and right.
  SAM 2 is fed as Meta's ``SAM2ImagePredictor`` feeds it: the image resized to 1024 x 1024 (no padding), and its
  decoder also gets the encoder's two high-resolution feature maps.
* **Masks at full size.** The decoder gives 256 x 256 logits per mask. ``SamPredictor`` upsamples each to
  1024 x 1024 and then to the image; for 20 boxes of a 1280 x 720 image that is 60 float images of each size,
  mostly far from any box, and on a CPU it costs more than the light decoders themselves. Here each mask is
  upsampled in one bilinear step (same sampling positions as SAM's two steps composed) straight to the image, and
  only inside the rectangle where some of its logits are positive: bilinear interpolation of non-positive values
  is never positive, so nothing outside that rectangle can be foreground. ``paste_masks`` does this.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from animeseg._lazy import cv2
from animeseg.refine.base import Candidates, SamCalls, torch_threads

#: ImageNet mean and standard deviation on the 0..255 scale (every SAM normalises with them).
_MEAN = (123.675, 116.28, 103.53)
_STD = (58.395, 57.12, 57.375)


def paste_masks(logits: np.ndarray, out: np.ndarray, cells: tuple[float, float]) -> None:
    """Upsample one box's low-resolution mask logits into ``out`` where they are positive.

    Args:
        logits: (K, g, g) float32 decoder logits.
        out: (K, H, W) bool, written in place (it is expected to be all False).
        cells: (y, x) low-resolution cells per image pixel: image pixel ``p`` samples the logit grid at
            ``(p + 0.5) * cells - 0.5`` (align-corners-false bilinear, like ``F.interpolate``).
    """
    positive = (logits > 0).any(0)
    rows, cols = np.flatnonzero(positive.any(1)), np.flatnonzero(positive.any(0))
    if rows.size == 0:
        return
    h, w = out.shape[1:]
    sy, sx = cells
    # pixels whose sample lies within one cell of a positive logit; one pixel more for OpenCV's 1/32-px grid
    y0 = max(0, math.floor((rows[0] - 0.5) / sy - 0.5) - 1)
    y1 = min(h, math.ceil((rows[-1] + 1.5) / sy - 0.5) + 1)
    x0 = max(0, math.floor((cols[0] - 0.5) / sx - 0.5) - 1)
    x1 = min(w, math.ceil((cols[-1] + 1.5) / sx - 0.5) + 1)
    if y1 <= y0 or x1 <= x0:
        return
    to_grid = np.array([[sx, 0.0, sx * (x0 + 0.5) - 0.5], [0.0, sy, sy * (y0 + 0.5) - 0.5]])
    for k in range(len(logits)):
        up = cv2.warpAffine(
            logits[k],
            to_grid,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        out[k, y0:y1, x0:x1] = up > 0


class LightSamRefiner(SamCalls):
    """Box-prompted MobileSAM / SAM 2 / SAM 2.1 candidates: K = 3 per box, scored by predicted IoU.

    Args:
        model: an Ultralytics ``SAMModel`` (MobileSAM) or ``SAM2Model`` on its device, as
            :func:`animeseg.sam.load_sam` returns for a light checkpoint.
        chunk: most boxes per decoder call; None: 4 on a CPU, 64 on a GPU.
    """

    name = "sam"

    def __init__(self, model: Any, chunk: int | None = None) -> None:
        import torch

        self.model = model.eval()
        self.sam2 = hasattr(model, "sam_mask_decoder")
        self.sam_type = getattr(model, "sam_type", "sam2" if self.sam2 else "mobile_sam")
        self.size = int(model.image_size if self.sam2 else model.image_encoder.img_size)
        self.mean = torch.tensor(_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(_STD, device=self.device).view(1, 3, 1, 1)
        self._count_calls(chunk)

    def _input(self, image: np.ndarray) -> tuple[Any, tuple[float, float]]:
        """The normalised (1, 3, S, S) model input and the (y, x) model pixels per image pixel."""
        import torch
        import torch.nn.functional as F

        h, w = image.shape[:2]
        if self.sam2:
            nh = nw = self.size
        else:  # SAM's ResizeLongestSide
            scale = self.size / max(h, w)
            nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        x = torch.tensor(image, device=self.device).permute(2, 0, 1)[None].float()  # a copy: inputs may be read-only
        x = F.interpolate(x, (nh, nw), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        if (nh, nw) != (self.size, self.size):
            x = F.pad(x, (0, self.size - nw, 0, self.size - nh))
        return x, (nh / h, nw / w)

    def _encode(self, x: Any) -> tuple[Any, list[Any] | None]:
        """Image embedding (1, 256, S/16, S/16) and, for SAM 2, its high-resolution feature maps."""
        if not self.sam2:
            return self.model.image_encoder(x), None
        m = self.model
        _, feats, _, _ = m._prepare_backbone_features(m.forward_image(x))
        if m.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + m.no_mem_embed
        sides = [self.size // 4, self.size // 8, self.size // 16]
        maps = [f.permute(1, 2, 0).reshape(1, -1, s, s) for f, s in zip(feats, sides, strict=True)]
        return maps[-1], maps[:-1]

    def _decode(self, embedding: Any, high_res: list[Any] | None, boxes: Any) -> tuple[Any, Any]:
        """(B, 3, g, g) mask logits and (B, 3) predicted IoU for B boxes (B, 4) in model pixels."""
        import torch

        m = self.model
        if not self.sam2:
            sparse, dense = m.prompt_encoder(points=None, boxes=boxes, masks=None)
            return m.mask_decoder(
                image_embeddings=embedding,
                image_pe=m.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
        # SAM 2 takes a box as its two corners, point labels 2 (top-left) and 3 (bottom-right)
        labels = torch.tensor([[2, 3]], dtype=torch.int32, device=boxes.device).expand(len(boxes), -1)
        sparse, dense = m.sam_prompt_encoder(points=(boxes.reshape(-1, 2, 2), labels), boxes=None, masks=None)
        logits, iou, _, _ = m.sam_mask_decoder(
            image_embeddings=embedding,
            image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=True,
            high_res_features=high_res,
        )
        return logits, iou

    def candidates(self, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray | None = None) -> Candidates:
        """Candidates for N boxes (N, 4) xyxy of an RGB (H, W, 3) uint8 image.

        Returns masks (N, 3, H, W) bool (logits > 0 at the original size) and scores (N, 3) float32 (predicted
        IoU). ``masks`` (YOLO's) are not used: the model is prompted with boxes only.
        """
        import torch

        h, w = image.shape[:2]
        n = len(boxes)
        out = np.zeros((n, 3, h, w), bool)
        scores = np.zeros((n, 3), np.float32)
        if n == 0:
            return Candidates(out, scores)
        with torch.inference_mode(), torch_threads():
            x, (fy, fx) = self._input(image)
            embedding, high_res = self._encode(x)
            prompts = torch.as_tensor(np.asarray(boxes, np.float32), device=self.device)
            prompts = prompts * torch.tensor([fx, fy, fx, fy], device=self.device)
            for start in range(0, n, self.chunk):
                logits, iou = self._decode(embedding, high_res, prompts[start : start + self.chunk])
                self.decoder_calls += 1
                logits = logits.float().cpu().numpy()
                cells = (fy * logits.shape[-2] / self.size, fx * logits.shape[-1] / self.size)
                for j, one in enumerate(logits):
                    paste_masks(one, out[start + j], cells)
                scores[start : start + len(logits)] = iou.float().cpu().numpy()
        return Candidates(out, scores)
