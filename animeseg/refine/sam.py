"""Segment Anything as a refiner: YOLO's boxes become SAM box prompts, one image encoding per image.

SAM's image encoder is the expensive part (vit_b: 12-30 s per image on a CPU); the prompt encoder and mask
decoder are cheap and batch over prompts. So each image is encoded exactly once and the boxes of the image go
through ``SamPredictor.predict_torch`` in batches of ``chunk`` (fewer when the full-resolution upsampled masks of a
batch would pass ``max_pixels``). On a CPU batching does not speed the decoder up and big batches slow it
down: each box's decoder state (4096 image tokens x 256 channels, 4 MB) stays in cache, a 20-box batch (84 MB)
does not. Measured with vit_b on 20 boxes of a 1280x720 image (bench/predict.py): one box at a time 2.8 s,
batches of 4 3.0 s, one batch of 20 5.3 s. A GPU is built for big batches (not measured here, no GPU was
available). Hence ``chunk`` defaults to 4 on a CPU and 64 on a GPU. Boxes are mapped to the model's input frame
with ``transform.apply_boxes_torch``, masks are brought back to the original image size by SAM's own
``postprocess_masks``: the candidates are exactly what ``segment_anything.SamPredictor`` gives for those boxes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from animeseg.refine.base import Candidates, SamCalls, torch_threads

if TYPE_CHECKING:
    from animeseg.refine import RefineOptions


class SamRefiner(SamCalls):
    """Box-prompted SAM candidates: K = 3 multimask outputs per box, scored by SAM's predicted IoU.

    Args:
        sam_model: a ``segment_anything.modeling.Sam`` (see :func:`animeseg.sam.load_sam`), on its device.
        chunk: most boxes per decoder call; None: 4 on a CPU, 64 on a GPU (see the module doc).
        max_pixels: bound on float32 mask values a decoder call may upsample at once (K x boxes x (S^2 + H x W),
            S the model's input size), so a large image with many boxes cannot exhaust memory.

    ``encoder_calls`` counts image-encoder passes (one per image refined), so callers and tests can check it.
    """

    name = "sam"
    #: What ``--refine sam`` reads from the shared options (see :mod:`animeseg.refine`).
    uses = ("sam_checkpoint", "sam_type", "device")

    @classmethod
    def check(cls, options: RefineOptions) -> RefineOptions:
        """Check the SAM source before anything is loaded (:func:`animeseg.sam.check_sam_source`)."""
        from dataclasses import replace

        from animeseg.sam import check_sam_source

        return replace(options, sam_checkpoint=check_sam_source(options.sam_checkpoint))

    @classmethod
    def from_options(cls, options: RefineOptions) -> Any:
        """A PyTorch SAM for a checkpoint file (:class:`~animeseg.refine.sam_light.LightSamRefiner` for MobileSAM and
        SAM 2 / 2.1), or the ONNX Runtime refiner for an exported folder."""
        path = options.sam_checkpoint
        if path is not None and path.is_dir():
            from animeseg.refine.sam_onnx import OnnxSamRefiner

            return OnnxSamRefiner(path)
        from animeseg.device import default_device
        from animeseg.sam import LIGHT, load_sam

        model = load_sam(path, model_type=options.sam_type, device=options.device or default_device())
        if model.sam_type in LIGHT:  # MobileSAM, SAM 2 / 2.1: same contract, on Ultralytics' models
            from animeseg.refine.sam_light import LightSamRefiner

            return LightSamRefiner(model)
        return cls(model)

    def __init__(self, sam_model: Any, chunk: int | None = None, max_pixels: int = 200_000_000) -> None:
        from segment_anything import SamPredictor

        self.model = sam_model.eval()
        self.predictor = SamPredictor(self.model)
        self.max_pixels = int(max_pixels)
        self._count_calls(chunk)

    def candidates(self, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray | None = None) -> Candidates:
        """Candidates for N boxes (N, 4) xyxy of an RGB (H, W, 3) uint8 image.

        Returns masks (N, 3, H, W) bool (SAM logits > 0 at the original size) and scores (N, 3) float32 (SAM's
        predicted IoU). ``masks`` (YOLO's) are not used: SAM is prompted with boxes only.
        """
        import torch

        h, w = image.shape[:2]
        n = len(boxes)
        out = np.zeros((n, 3, h, w), bool)
        scores = np.zeros((n, 3), np.float32)
        if n == 0:
            return Candidates(out, scores)
        with torch.inference_mode(), torch_threads():
            self.predictor.set_image(np.ascontiguousarray(image), image_format="RGB")
            size = self.model.image_encoder.img_size
            per_box = 3 * (size * size + h * w)
            step = max(1, min(self.chunk, self.max_pixels // per_box))
            all_boxes = torch.as_tensor(np.asarray(boxes, np.float32), device=self.device)
            prompts = self.predictor.transform.apply_boxes_torch(all_boxes, (h, w))
            for start in range(0, n, step):
                m, iou, _ = self.predictor.predict_torch(
                    point_coords=None,
                    point_labels=None,
                    boxes=prompts[start : start + step],
                    multimask_output=True,
                )
                self.decoder_calls += 1
                out[start : start + step] = m.cpu().numpy()
                scores[start : start + step] = iou.float().cpu().numpy()
            self.predictor.reset_image()
        return Candidates(out, scores)
