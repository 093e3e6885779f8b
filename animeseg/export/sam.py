"""ONNX export of Segment Anything as two graphs in one folder, and its parity check against PyTorch.

``encoder.onnx`` is the image encoder with SAM's normalisation and padding inside; ``decoder.onnx`` is the prompt
encoder and mask decoder for a whole batch of boxes in one call (segment-anything's own script exports one prompt
per call and leaves the encoder in PyTorch), with the mask upsampling of ``SamPredictor`` inside, so masks come back
at the original image size. ``sam.json`` says what they are. :class:`animeseg.refine.sam_onnx.OnnxSamRefiner` runs
the folder without PyTorch.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from animeseg.errors import AnimesegError
from animeseg.export.common import quantize
from animeseg.export.parity import Parity, default_boxes, mask_ious, sample_image
from animeseg.refine.sam_onnx import (
    DECODER,
    ENCODER,
    FORMAT,
    FORMAT_VERSION,
    SAM_JSON,
    OnnxSamRefiner,
    read_sam_json,
)
from animeseg.weights import sha256_file

#: ONNX opset of the SAM graphs (ONNX Runtime >= 1.14 runs it; opset 17 has LayerNormalization).
OPSET = 17


def _write_sam_json(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``sam.json`` atomically (with the usual file permissions, like the ONNX files next to it)."""
    from animeseg.io import write_json

    write_json(folder / SAM_JSON, meta, indent=2)


class SamEncoderOnnx(nn.Module):
    """SAM's image encoder with its preprocessing (normalise, then zero the padding) inside the graph.

    Inputs: ``image`` (1, 3, S, S) float32 RGB in [0, 255], resized so the longest side is S and padded at the
    bottom/right with anything; ``input_size`` (2,) int64, the (h, w) before padding.
    Output: ``image_embeddings`` (1, 256, S/16, S/16).
    """

    def __init__(self, sam: Any):
        super().__init__()
        self.encoder = sam.image_encoder
        self.img_size = int(sam.image_encoder.img_size)
        self.register_buffer("mean", sam.pixel_mean.detach().reshape(1, 3, 1, 1).clone(), persistent=False)
        self.register_buffer("std", sam.pixel_std.detach().reshape(1, 3, 1, 1).clone(), persistent=False)

    def forward(self, image: torch.Tensor, input_size: torch.Tensor) -> torch.Tensor:
        x = (image - self.mean) / self.std
        # Sam.preprocess pads with zeros *after* normalising; masking reproduces that whatever the padding was.
        r = torch.arange(self.img_size, device=x.device)
        valid = (r[:, None] < input_size[0]) & (r[None, :] < input_size[1])
        return self.encoder(x * valid.to(x.dtype))


class SamDecoderOnnx(nn.Module):
    """Prompt encoder + mask decoder for B boxes in one call, with SamPredictor's box transform and upsampling.

    Inputs: ``image_embeddings`` (1, 256, g, g); ``boxes`` (B, 4) float32 xyxy in original-image pixels;
    ``orig_im_size`` (2,) int64 (H, W).
    Outputs: ``masks`` (B, 3, H, W) float32 logits (mask = logits > 0), ``iou_predictions`` (B, 3),
    ``low_res_masks`` (B, 3, 4g, 4g).

    ``MaskDecoder.predict_masks`` repeats the image embedding B times with ``repeat_interleave``; here it is
    broadcast with ``expand`` (same values), which exports cleanly with a dynamic number of boxes.
    """

    def __init__(self, sam: Any):
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.img_size = int(sam.image_encoder.img_size)

    def forward(
        self, image_embeddings: torch.Tensor, boxes: torch.Tensor, orig_im_size: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pe, md = self.prompt_encoder, self.mask_decoder
        # ResizeLongestSide in float64 as Python computes it, so the resized size is the same integer.
        size = orig_im_size.to(torch.float64)
        resized = torch.floor(size * (self.img_size / size.max()) + 0.5)
        ratio = (resized / size).to(torch.float32)  # (h, w) scale factors
        coords = boxes.reshape(-1, 2, 2) * torch.stack([ratio[1], ratio[0]])
        # PromptEncoder._embed_boxes: pixel centres, normalised by the input size, corner embeddings added.
        corners = pe.pe_layer._pe_encoding((coords + 0.5) / self.img_size)
        corners = corners + torch.cat([pe.point_embeddings[2].weight, pe.point_embeddings[3].weight])[None]
        n = corners.shape[0]
        tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight]).unsqueeze(0).expand(n, -1, -1)
        tokens = torch.cat([tokens, corners], dim=1)
        src = (image_embeddings + pe.no_mask_embed.weight.reshape(1, -1, 1, 1)).expand(n, -1, -1, -1)
        pos = pe.get_dense_pe().expand(n, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = md.transformer(src, pos, tokens)
        mask_tokens = hs[:, 1 : 1 + md.num_mask_tokens, :]
        upscaled = md.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
        hyper = torch.stack(
            [md.output_hypernetworks_mlps[i](mask_tokens[:, i, :]) for i in range(md.num_mask_tokens)], dim=1
        )
        _, c, h, w = upscaled.shape
        low_res = (hyper @ upscaled.reshape(n, c, h * w)).reshape(n, -1, h, w)[:, 1:]  # multimask: skip token 0
        iou = md.iou_prediction_head(hs[:, 0, :])[:, 1:]
        # Sam.postprocess_masks: to the padded input size, crop the padding, to the original size.
        masks = F.interpolate(low_res, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        crop = resized.to(torch.int64)
        masks = masks[..., : crop[0], : crop[1]]
        hw = orig_im_size.to(torch.int64)
        masks = F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)
        return masks, iou, low_res


def _io_spec(session_io: list[Any]) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "shape": [d if isinstance(d, int) else str(d) for d in t.shape], "dtype": t.type}
        for t in session_io
    ]


def _export_graph(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], **kw: Any) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in segment-anything's code
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,  # the TorchScript exporter traces SAM reliably; dynamo trips on its window partition
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            do_constant_folding=True,
            **kw,
        )


def _finalise(src: Path, dst: Path, metadata: dict[str, str]) -> None:
    """Copy an exported graph to ``dst`` with metadata, as one file (or one file + one .data beyond 2 GB)."""
    import onnx

    model = onnx.load(str(src))
    del model.metadata_props[:]
    for k, v in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = k, v
    large = model.ByteSize() > 1_900_000_000
    if large:  # protobuf cannot hold more than 2 GB (vit_h): weights go to one side file
        onnx.save_model(model, str(dst), save_as_external_data=True, location=dst.name + ".data")
    else:
        onnx.save_model(model, str(dst))


def sam_folder_name(config_name: str, int8: bool = False) -> str:
    """Default folder name of a SAM export: ``sam_vit_b``, ``sam_vit_b_int8``, ``sam_custom`` ..."""
    base = config_name if config_name.startswith("vit_") else "custom"
    return f"sam_{base}{'_int8' if int8 else ''}"


def require_vit(sam: Any, checkpoint: str | Path) -> None:
    """Raise one line when ``sam`` (from :func:`animeseg.sam.load_sam`) is a light model (MobileSAM, SAM 2 / 2.1),
    which this exporter does not cover: its graphs and parity checks are built around segment-anything's ViT
    ``Sam``."""
    from animeseg.sam import LIGHT

    kind = getattr(sam, "sam_type", None)
    if kind in LIGHT:
        raise AnimesegError(
            f"{checkpoint}: {kind} cannot be exported to ONNX (export covers the ViT SAMs vit_b/l/h); "
            "use the checkpoint itself with `predict --refine sam --sam-checkpoint`"
        )


def export_sam(
    checkpoint: str | Path,
    sam_type: str = "auto",
    out: str | Path | None = None,
    int8: bool = False,
    sam: Any = None,
) -> Path:
    """Export a SAM checkpoint to ``out`` (a folder): ``encoder.onnx``, ``decoder.onnx`` and ``sam.json``.

    Args:
        checkpoint: a SAM state-dict checkpoint (architecture inferred, see :func:`animeseg.sam.load_sam`).
        sam_type: ``auto`` or ``vit_b``/``vit_l``/``vit_h`` (checked against the checkpoint).
        out: the folder; ``exports/sam_<type>[_int8]`` when None.
        int8: quantise both graphs with ONNX Runtime dynamic quantisation (CPU; int8 weights).
        sam: an already loaded model for ``checkpoint`` (saves loading it twice); loaded when None.

    ``sam.json`` is removed first and written last, so a folder with a ``sam.json`` is always complete.
    Returns the folder.
    """
    from animeseg import __version__
    from animeseg.sam import config_from_state_dict, load_sam

    checkpoint = Path(checkpoint).expanduser()
    if sam is None:
        sam = load_sam(checkpoint, sam_type, device="cpu")
    require_vit(sam, checkpoint)
    sam = sam.float().eval().cpu()
    config = config_from_state_dict(sam.state_dict())
    folder = Path(out) if out is not None else Path("exports") / sam_folder_name(config.name, int8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SAM_JSON).unlink(missing_ok=True)
    size, grid = config.img_size, config.img_size // 16
    precision = "int8" if int8 else "fp32"
    meta_common = {"animeseg": __version__, "sam_config": config.name, "precision": precision}
    with tempfile.TemporaryDirectory(prefix=".animeseg-sam-", dir=folder) as tmp:
        tmp = Path(tmp)
        encoder = SamEncoderOnnx(sam).eval()
        _export_graph(
            encoder,
            (torch.zeros(1, 3, size, size), torch.tensor([size, size * 3 // 4])),
            tmp / "encoder.raw.onnx",
            ["image", "input_size"],
            ["image_embeddings"],
        )
        decoder = SamDecoderOnnx(sam).eval()
        _export_graph(
            decoder,
            (torch.randn(1, 256, grid, grid), torch.tensor([[10.0, 20.0, 200.0, 150.0]] * 2), torch.tensor([300, 400])),
            tmp / "decoder.raw.onnx",
            ["image_embeddings", "boxes", "orig_im_size"],
            ["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={
                "boxes": {0: "num_boxes"},
                "masks": {0: "num_boxes", 2: "height", 3: "width"},
                "iou_predictions": {0: "num_boxes"},
                "low_res_masks": {0: "num_boxes"},
            },
        )
        for name, final in (("encoder", ENCODER), ("decoder", DECODER)):
            raw = tmp / f"{name}.raw.onnx"
            if int8:
                quantized = tmp / f"{name}.int8.onnx"
                quantize(raw, quantized, large=raw.stat().st_size > 1_900_000_000)
                raw = quantized
            _finalise(raw, tmp / final, {**meta_common, "role": name})
            data = tmp / (final + ".data")
            (folder / (final + ".data")).unlink(missing_ok=True)
            if data.exists():
                os.replace(data, folder / data.name)
            os.replace(tmp / final, folder / final)
    import onnxruntime as ort

    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.name,
        "architecture": {
            "embed_dim": config.embed_dim,
            "depth": config.depth,
            "num_heads": config.num_heads,
            "global_attn_indexes": list(config.global_attn_indexes),
            "img_size": config.img_size,
            "window_size": config.window_size,
        },
        "img_size": size,
        "embedding_shape": [1, 256, grid, grid],
        "mask_threshold": float(sam.mask_threshold),
        "pixel_mean": [float(v) for v in sam.pixel_mean.flatten()],
        "pixel_std": [float(v) for v in sam.pixel_std.flatten()],
        "multimask_output": 3,
        "opset": OPSET,
        "precision": precision,
        "source": {"checkpoint": checkpoint.name, "sha256": sha256_file(checkpoint)},
        "exported_with": {
            "animeseg": __version__,
            "torch": torch.__version__.split("+")[0],
            "onnxruntime": ort.__version__,
        },
        "preprocessing": (
            "RGB uint8 image resized so its longest side is img_size (bilinear, PIL), as float32 (1,3,S,S) "
            "zero-padded bottom/right; input_size = resized (h, w). Normalisation happens inside encoder.onnx."
        ),
        "postprocessing": "masks are logits at the original image size; mask = masks > mask_threshold",
    }
    for key, file in (("encoder", ENCODER), ("decoder", DECODER)):
        session = ort.InferenceSession(str(folder / file), providers=["CPUExecutionProvider"])
        meta[key] = {
            "file": file,
            "bytes": (folder / file).stat().st_size,
            "inputs": _io_spec(session.get_inputs()),
            "outputs": _io_spec(session.get_outputs()),
        }
        del session
    _write_sam_json(folder, meta)
    return folder


def check_sam(
    folder: str | Path,
    sam: Any,
    image: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
) -> Parity:
    """Compare an exported SAM folder with the PyTorch model it came from, on one image and a few boxes.

    Three comparisons, all against ``segment_anything.SamPredictor`` (multimask, box prompts):

    * end to end (ONNX encoder + ONNX decoder, through :class:`OnnxSamRefiner`): mask IoU per box and candidate,
      largest logit and predicted-IoU difference;
    * the ONNX decoder fed PyTorch's image embedding: largest logit difference (the decoder on its own);
    * the encoders' embeddings: largest difference.

    With no image, :func:`sample_image` and its boxes are used; with an image and no boxes,
    :func:`default_boxes`. The result is also recorded in ``sam.json`` under ``parity``.
    """
    from segment_anything import SamPredictor

    folder = Path(folder)
    if image is None:
        image, sample_boxes = sample_image()
        boxes = sample_boxes if boxes is None else boxes
    h, w = image.shape[:2]
    boxes = default_boxes(h, w) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
    sam = sam.float().eval().cpu()
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    with torch.no_grad():
        tb = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes), (h, w))
        pt_logits, pt_iou, _ = predictor.predict_torch(None, None, boxes=tb, multimask_output=True, return_logits=True)
    pt_logits, pt_iou = pt_logits.numpy(), pt_iou.numpy()
    pt_embedding = predictor.features.numpy()

    refiner = OnnxSamRefiner(folder, providers=["CPUExecutionProvider"])
    embedding = refiner.embed(image)
    logits, iou = refiner.decode(embedding, boxes, (h, w))
    dec_logits, _ = refiner.decode(pt_embedding, boxes, (h, w))
    thr = refiner.mask_threshold
    ious = mask_ious(pt_logits > thr, logits > thr)
    report = Parity(
        "sam",
        refiner.meta.get("precision", "fp32"),
        folder,
        {
            "mask IoU (min)": float(ious.min()),
            "mask IoU (mean)": float(ious.mean()),
            "logit diff (max)": float(np.abs(pt_logits - logits).max()),
            "decoder logit diff (max)": float(np.abs(pt_logits - dec_logits).max()),
            "predicted IoU diff (max)": float(np.abs(pt_iou - iou).max()),
            "embedding diff (max)": float(np.abs(pt_embedding - embedding).max()),
            "mask coverage": float((pt_logits > thr).mean()),
        },
        f"{len(boxes)} boxes x 3 candidates on a {w}x{h} image",
    )
    meta = read_sam_json(folder)
    meta["parity"] = report.to_dict()
    _write_sam_json(folder, meta)
    return report
