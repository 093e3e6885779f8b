"""ONNX export of the YOLO-seg detector with Ultralytics' own exporter, and its parity check against PyTorch.

The export always gets an explicit image size (the exporter would otherwise silently use the checkpoint's training
size) and keeps its metadata (names, task, stride, imgsz). ``int8`` is ONNX Runtime dynamic quantisation (no
calibration data needed); ``half`` is Ultralytics' FP16 conversion.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.errors import AnimesegError
from animeseg.export.common import precision_name, quantize
from animeseg.export.parity import Parity, mask_ious, sample_image


def detector_path(model: str | Path, out: str | Path, half: bool = False, int8: bool = False) -> Path:
    """Where :func:`export_detector` writes: ``out`` itself when it ends in .onnx, else ``out/<stem>[.prec].onnx``."""
    out = Path(out)
    if out.suffix == ".onnx":
        return out
    precision = precision_name(half, int8)
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

    precision_name(half, int8)  # refuses half + int8
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
            quantize(written, quantized)
            written = quantized
        os.replace(written, dst)
    return dst


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """(1, 3, size, size) float32 in [0, 1]: resize keeping the aspect ratio, pad with grey; the square input
    :class:`animeseg.detector.YoloDetector` gives every backend."""
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
    import torch

    from animeseg.yolo import load_yolo

    onnx_path = Path(onnx_path)
    image = sample_image()[0] if image is None else image
    x = letterbox(image, imgsz)
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
    ious = mask_ious((logits_pt > 0).reshape(shape), (logits_ox > 0).reshape(shape))
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
