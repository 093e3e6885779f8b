"""ONNX export of the detector and of Segment Anything, each followed by a parity check against PyTorch.

* Detector: Ultralytics' own exporter, always with an explicit image size (it would otherwise silently use the
  checkpoint's training size), its metadata (names, task, stride, imgsz) kept in the ONNX file. ``int8`` is
  ONNX Runtime dynamic quantisation (no calibration data needed); ``half`` is Ultralytics' FP16 conversion.
* SAM: two graphs in one folder. ``encoder.onnx`` is the image encoder with SAM's normalisation and padding
  inside; ``decoder.onnx`` is the prompt encoder and mask decoder for a whole batch of boxes in one call
  (segment-anything's own script exports one prompt per call and leaves the encoder in PyTorch), with the mask
  upsampling of ``SamPredictor`` inside, so masks come back at the original image size. ``sam.json`` says what
  they are. :class:`animeseg.refine.sam_onnx.OnnxSamRefiner` runs the folder without PyTorch.

The parity checks run the exported graphs and the PyTorch model on the same image and compare masks (IoU) and
raw outputs (largest absolute difference); :data:`THRESHOLDS` lists what each precision must meet.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from animeseg.errors import AnimesegError
from animeseg.refine.sam_onnx import (
    DECODER,
    ENCODER,
    FORMAT,
    FORMAT_VERSION,
    SAM_JSON,
    OnnxSamRefiner,
    read_sam_json,
)

#: ONNX opset of the SAM graphs (ONNX Runtime >= 1.14 runs it; opset 17 has LayerNormalization).
OPSET = 17

#: What each export must meet to pass its parity check. Keys: (model, precision) -> {metric: (op, limit)}.
#: fp32 must reproduce PyTorch; fp16 and int8 trade accuracy for size/speed, so their limits only catch a
#: broken export (a wrong graph gives IoU near 0), and their real cost is printed for the user to judge.
THRESHOLDS: dict[tuple[str, str], dict[str, tuple[str, float]]] = {
    ("detector", "fp32"): {"mask IoU (min)": (">=", 0.99), "score diff (max)": ("<=", 1e-3)},
    ("detector", "fp16"): {"mask IoU (mean)": (">=", 0.95), "score diff (max)": ("<=", 2e-2)},
    ("detector", "int8"): {"mask IoU (mean)": (">=", 0.80), "score diff (max)": ("<=", 0.1)},
    ("sam", "fp32"): {"mask IoU (min)": (">=", 0.99), "decoder logit diff (max)": ("<=", 1e-3)},
    ("sam", "int8"): {"mask IoU (mean)": (">=", 0.90)},
}


# ------------------------------------------------------------------------------------------------ parity reports
@dataclass
class Parity:
    """Result of one parity check: measured metrics and the limits they are held to."""

    model: str  # "detector" or "sam"
    precision: str  # "fp32", "fp16" or "int8"
    path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    detail: str = ""  # what was compared, e.g. "4 boxes x 3 candidates on a 480x360 image"

    @property
    def limits(self) -> dict[str, tuple[str, float]]:
        return THRESHOLDS.get((self.model, self.precision), {})

    def failures(self) -> list[str]:
        """One text per metric outside its limit (empty when the check passed)."""
        bad = []
        for name, (op, limit) in self.limits.items():
            value = self.metrics.get(name, float("nan"))
            ok = value >= limit if op == ">=" else value <= limit
            if not ok:  # NaN fails too
                bad.append(f"{name} {value:.4g} (needs {op} {limit:g})")
        return bad

    @property
    def passed(self) -> bool:
        return not self.failures()

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(metric, value, limit, verdict) rows for a table."""
        rows = []
        for name, value in self.metrics.items():
            op_limit = self.limits.get(name)
            if op_limit is None:
                rows.append((name, _fmt(value), "", "info"))
                continue
            op, limit = op_limit
            ok = value >= limit if op == ">=" else value <= limit
            rows.append((name, _fmt(value), f"{op} {limit:g}", "pass" if ok else "FAIL"))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "passed": self.passed,
            "detail": self.detail,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "limits": {k: f"{op} {lim:g}" for k, (op, lim) in self.limits.items()},
        }


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4f}"
    return f"{value:.2e}"


def parity_table(report: Parity) -> Any:
    """A rich renderable of a parity report: a metric table and a line saying what was compared."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    verdict = "[green]passed[/]" if report.passed else "[red]FAILED[/]"
    table = Table(
        title=f"{report.model} {report.precision} ONNX vs PyTorch: {verdict}",
        title_justify="left",
        header_style="bold",
    )
    for i, col in enumerate(("metric", "value", "limit", "")):
        table.add_column(col, justify="left" if i == 0 else "right")
    for name, value, limit, ok in report.rows():
        style = {"pass": "green", "FAIL": "red"}.get(ok, "dim")
        table.add_row(name, value, limit, f"[{style}]{ok}[/]")
    detail = f"{report.path}" + (f": {report.detail}" if report.detail else "")
    return Group(table, Text(detail, style="dim"))


def raise_if_failed(report: Parity) -> None:
    """A failed parity check is an error: the export does not reproduce the PyTorch model."""
    if not report.passed:
        raise AnimesegError(
            f"{report.path}: parity check failed for the {report.precision} {report.model} export: "
            + "; ".join(report.failures())
            + " (files kept for inspection; do not deploy them)"
        )


# ------------------------------------------------------------------------------------------------- helpers
def sha256_file(path: str | Path, chunk: int = 2**20) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sample_image(height: int = 360, width: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic synthetic anime-style scene and the boxes of its three figures plus the whole image.

    Flat colours with dark outlines on a gradient background, like cel-shaded art; non-square so the checks
    exercise SAM's padding. Returns the (H, W, 3) uint8 RGB image and (4, 4) float32 xyxy boxes.
    """
    import cv2

    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array([150, 190, 235], np.float32), np.array([240, 225, 200], np.float32)
    img = np.ascontiguousarray(np.broadcast_to(top + (bottom - top) * yy, (height, width, 3)).astype(np.uint8))
    boxes = []
    figures = [(0.22, 0.95, (230, 90, 120)), (0.52, 0.9, (90, 120, 210)), (0.8, 0.97, (250, 200, 80))]
    for cx_f, foot_f, colour in figures:
        cx, foot, s = int(cx_f * width), int(foot_f * height), height / 360
        head_c, head_r = (cx, int(foot - 230 * s)), int(34 * s)
        body = np.array(
            [[cx - 45 * s, foot], [cx - 28 * s, foot - 185 * s], [cx + 28 * s, foot - 185 * s], [cx + 45 * s, foot]],
            np.int32,
        )
        hair = np.array([[cx - 44 * s, head_c[1]], [cx, head_c[1] - 55 * s], [cx + 44 * s, head_c[1]]], np.int32)
        cv2.fillPoly(img, [body], colour)
        cv2.polylines(img, [body], True, (40, 30, 40), max(1, int(2 * s)))
        cv2.circle(img, head_c, head_r, (255, 225, 205), -1)
        cv2.circle(img, head_c, head_r, (40, 30, 40), max(1, int(2 * s)))
        cv2.fillPoly(img, [hair], tuple(int(c * 0.6) for c in colour))
        for dx in (-12, 12):
            cv2.circle(img, (int(cx + dx * s), int(head_c[1] + 4 * s)), max(1, int(5 * s)), (30, 60, 140), -1)
        x0, y0 = body[:, 0].min(), head_c[1] - 55 * s
        boxes.append([x0, y0, body[:, 0].max(), foot])
    boxes.append([0, 0, width, height])
    return img, np.clip(np.array(boxes, np.float32), 0, [width, height, width, height]).astype(np.float32)


def default_boxes(height: int, width: int) -> np.ndarray:
    """Boxes for a parity check on a user's image: the whole image, its centre and four overlapping quarters."""
    rel = [
        (0, 0, 1, 1),
        (0.25, 0.25, 0.75, 0.75),
        (0, 0, 0.6, 0.6),
        (0.4, 0, 1, 0.6),
        (0, 0.4, 0.6, 1),
        (0.4, 0.4, 1, 1),
    ]
    return (np.array(rel, np.float32) * np.array([width, height, width, height], np.float32)).astype(np.float32)


def _mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU per mask of two (..., H, W) bool stacks (1.0 where both masks are empty)."""
    a, b = a.reshape(-1, a.shape[-2] * a.shape[-1]), b.reshape(-1, b.shape[-2] * b.shape[-1])
    inter = np.logical_and(a, b).sum(1)
    union = np.logical_or(a, b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def _quantize(src: Path, dst: Path, large: bool = False) -> None:
    """Dynamic int8 quantisation of weights (activations quantised on the fly), for CPU inference."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # u8 weights (U8U8): on x86 CPUs without VNNI the default s8 weights saturate 16-bit sums (VPMADDUBSW) and
    # lose most of the accuracy (vit_b embedding error 18% vs 2% measured here), for no speed gain.
    # The quantiser logs a "run pre-processing" hint through the root logger; a NullHandler keeps logging's
    # last-resort handler from printing it (and from configuring the root logger for the whole process).
    root, quiet = logging.getLogger(), logging.NullHandler()
    root.addHandler(quiet)
    try:
        quantize_dynamic(src, dst, weight_type=QuantType.QUInt8, use_external_data_format=large)
    finally:
        root.removeHandler(quiet)


def _write_sam_json(folder: Path, meta: dict[str, Any]) -> None:
    """Write ``sam.json`` atomically (with the usual file permissions, like the ONNX files next to it)."""
    from animeseg.io import write_json

    write_json(folder / SAM_JSON, meta, indent=2)


def _precision(half: bool, int8: bool) -> str:
    if half and int8:
        raise AnimesegError("choose one of --half and --int8, not both")
    return "int8" if int8 else "fp16" if half else "fp32"


# ---------------------------------------------------------------------------------------------------- detector
def detector_path(model: str | Path, out: str | Path, half: bool = False, int8: bool = False) -> Path:
    """Where :func:`export_detector` writes: ``out`` itself when it ends in .onnx, else ``out/<stem>[.prec].onnx``."""
    out = Path(out)
    if out.suffix == ".onnx":
        return out
    precision = _precision(half, int8)
    suffix = "" if precision == "fp32" else f".{precision}"
    return out / f"{Path(model).stem}{suffix}.onnx"


def export_detector(
    model: str | Path,
    imgsz: int = 640,
    dynamic: bool = False,
    half: bool = False,
    int8: bool = False,
    out: str | Path = "exports",
    opset: int | None = None,
) -> Path:
    """Export a YOLO segmentation checkpoint (.pt) to ONNX with Ultralytics' exporter; returns the .onnx path.

    Args:
        model: a local Ultralytics ``.pt`` checkpoint.
        imgsz: the input size, always passed explicitly (the exporter would use the training size otherwise).
        dynamic: dynamic batch and image size axes.
        half: FP16 weights (Ultralytics' conversion; inputs and outputs stay float32).
        int8: dynamic int8 quantisation with ONNX Runtime (weights int8, no calibration data).
        out: a folder (the file is ``<stem>.onnx``, ``<stem>.fp16.onnx`` or ``<stem>.int8.onnx``) or an .onnx path.
        opset: ONNX opset; Ultralytics picks the best one for the installed onnx when None.

    The checkpoint is copied into a temporary folder first, because Ultralytics writes its output next to the
    weights file, which may be read-only or shared; the result is moved into place atomically.
    """
    from animeseg.yolo import load_yolo

    _precision(half, int8)  # refuses half + int8
    src = Path(model).expanduser()
    if src.suffix != ".pt":
        raise AnimesegError(f"{model}: the detector to export must be an Ultralytics .pt checkpoint")
    if imgsz < 32 or imgsz % 32:
        raise AnimesegError(f"--imgsz {imgsz}: must be a positive multiple of 32 (the detector's stride)")
    dst = detector_path(src, out, half, int8)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".animeseg-export-", dir=dst.parent) as tmp:
        local = Path(tmp) / src.name
        load_yolo(src)  # checks that the file exists and is a model before copying it
        shutil.copyfile(src, local)
        yolo = load_yolo(local)
        if getattr(yolo, "task", "segment") != "segment":
            raise AnimesegError(f"{model}: a {yolo.task} model, not a segmentation model")
        kwargs: dict[str, Any] = {"format": "onnx", "imgsz": imgsz, "dynamic": dynamic, "simplify": True}
        if opset:
            kwargs["opset"] = opset
        if half:
            kwargs["quantize"] = 16
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notes on the legacy exporter, tracer warnings
                written = Path(yolo.export(**kwargs))
        except Exception as e:
            raise AnimesegError(f"{model}: ONNX export failed ({type(e).__name__}: {e})") from None
        if int8:
            quantized = written.with_name(f"{written.stem}.int8.onnx")
            _quantize(written, quantized)
            written = quantized
        os.replace(written, dst)
    return dst


def _letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """(1, 3, size, size) float32 in [0, 1]: resize keeping the aspect ratio, pad with grey (Ultralytics' input)."""
    import cv2

    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    canvas = np.full((size, size, 3), 114, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def _raw_detector_outputs(output: Any) -> tuple[np.ndarray, np.ndarray]:
    """(predictions (1, 4 + nc + nm, A), prototypes (1, nm, h, w)) from a SegmentationModel's eval output."""
    while isinstance(output, (list, tuple)) and isinstance(output[0], (list, tuple)):
        output = output[0]
    preds, protos = output[0], output[1]
    if isinstance(protos, (list, tuple)):  # older heads return (feats, coefficients, protos)
        protos = protos[-1]
    return preds.detach().float().cpu().numpy(), protos.detach().float().cpu().numpy()


def check_detector(
    model: str | Path,
    onnx_path: str | Path,
    image: np.ndarray | None = None,
    imgsz: int = 640,
    precision: str = "fp32",
    top_k: int = 20,
) -> Parity:
    """Run the PyTorch checkpoint and its ONNX export on one letterboxed image and compare raw outputs.

    Compared: box coordinates and class scores of every anchor (largest difference), and the masks of the
    ``top_k`` highest-scoring anchors (prototype masks at the head's resolution, logits > 0), whatever their
    score: raw outputs are compared rather than final detections, so an untrained model is checked as well
    as a good one and NMS ties cannot flip the verdict.
    """
    import onnxruntime as ort

    from animeseg.yolo import load_yolo

    onnx_path = Path(onnx_path)
    image = sample_image()[0] if image is None else image
    x = _letterbox(image, imgsz)
    net = load_yolo(model).model.float().eval()
    with torch.no_grad():
        pt_pred, pt_proto = _raw_detector_outputs(net(torch.from_numpy(x)))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.astype(np.float32)}
    ox_pred, ox_proto = (o.astype(np.float32) for o in session.run(None, feed)[:2])
    if ox_pred.shape != pt_pred.shape or ox_proto.shape != pt_proto.shape:
        raise AnimesegError(
            f"{onnx_path}: output shapes {ox_pred.shape}, {ox_proto.shape} differ from PyTorch's "
            f"{pt_pred.shape}, {pt_proto.shape}"
        )
    nm = pt_proto.shape[1]
    nc = pt_pred.shape[1] - 4 - nm
    scores_pt, scores_ox = pt_pred[0, 4 : 4 + nc], ox_pred[0, 4 : 4 + nc]
    top = np.argsort(-scores_pt.max(0))[:top_k]
    protos_pt, protos_ox = pt_proto[0].reshape(nm, -1), ox_proto[0].reshape(nm, -1)
    logits_pt = pt_pred[0, 4 + nc :, top].reshape(len(top), nm) @ protos_pt
    logits_ox = ox_pred[0, 4 + nc :, top].reshape(len(top), nm) @ protos_ox
    shape = (len(top), *pt_proto.shape[2:])
    ious = _mask_ious((logits_pt > 0).reshape(shape), (logits_ox > 0).reshape(shape))
    # An untrained head can give all-empty masks, which agree trivially: show how much mask there was.
    coverage = float((logits_pt > 0).mean())
    return Parity(
        "detector",
        precision,
        onnx_path,
        {
            "mask IoU (min)": float(ious.min()),
            "mask IoU (mean)": float(ious.mean()),
            "mask logit diff (max)": float(np.abs(logits_pt - logits_ox).max()),
            "score diff (max)": float(np.abs(scores_pt - scores_ox).max()),
            "box diff (max, px)": float(np.abs(pt_pred[0, :4] - ox_pred[0, :4]).max()),
            "mask coverage": coverage,
        },
        f"{len(top)} top anchors of {pt_pred.shape[2]} on a {imgsz}x{imgsz} letterboxed image",
    )


# --------------------------------------------------------------------------------------------------------- SAM
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
    from animeseg.sam import config_from_state_dict, load_sam, require_vit

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
                _quantize(raw, quantized, large=raw.stat().st_size > 1_900_000_000)
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
    ious = _mask_ious(pt_logits > thr, logits > thr)
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
