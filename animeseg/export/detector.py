"""ONNX export of the YOLO-seg detector with Ultralytics' own exporter, and its parity check against PyTorch.

The export always gets an explicit image size (the exporter would otherwise silently use the checkpoint's training
size) and keeps its metadata (names, task, stride, imgsz). ``int8`` is ONNX Runtime static quantisation
(:func:`quantize_detector`: int8 weights per channel and int8 activations whose ranges are calibrated on images,
in QDQ form that ONNX Runtime and OpenVINO both run on int8 kernels); ``half`` is Ultralytics' FP16 conversion.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.errors import AnimesegError
from animeseg.export.common import precision_name
from animeseg.export.parity import Parity, mask_ious, sample_image
from animeseg.runtime.yolo import letterbox as _letterbox
from animeseg.runtime.yolo import to_input
from animeseg.settings import carry_defaults, sidecar_path


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
    dynamic: bool = True,
    half: bool = False,
    int8: bool = False,
    out: str | Path = "exports",
    opset: int | None = None,
    calibration: list[np.ndarray] | None = None,
) -> Path:
    """Export a YOLO segmentation checkpoint (.pt) to ONNX with Ultralytics' exporter; returns the .onnx path.

    Args:
        model: a local Ultralytics ``.pt`` checkpoint.
        imgsz: the input size, always passed explicitly (the exporter would use the training size otherwise).
        dynamic: dynamic batch and image size axes (the default): the runtime then gives each image the smallest
            rectangle of stride multiples, as it gives the checkpoint (``rect``); False fixes the input at the
            ``imgsz`` square.
        half: FP16 weights (Ultralytics' conversion; inputs and outputs stay float32).
        int8: static int8 quantisation (:func:`quantize_detector`) calibrated on ``calibration``.
        out: a folder (the file is ``<stem>.onnx``, ``<stem>.fp16.onnx`` or ``<stem>.int8.onnx``) or an .onnx path.
        opset: ONNX opset; Ultralytics picks the best one for the installed onnx when None.
        calibration: RGB (H, W, 3) uint8 images whose activations set the int8 ranges (default:
            :func:`calibration_images`, shipped anime art).

    The checkpoint is copied into a temporary folder first, because Ultralytics writes its output next to the
    weights file, which may be read-only or shared; the result is moved into place atomically. When the checkpoint's
    sidecar records defaults (the packaged model's do), the export gets a sidecar with them
    (:func:`animeseg.settings.carry_defaults`), so it predicts with the same settings.
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
            quantize_detector(written, quantized, calibration or calibration_images(), imgsz)
            written = quantized
        os.replace(written, dst)
    kind = f"{precision_name(half, int8)}, {'dynamic' if dynamic else 'static'} input, imgsz {imgsz}"
    carry_defaults(src, dst, f"exported from {src.name} by animeseg export onnx ({kind})", imgsz=imgsz)
    return dst


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """(1, 3, size, size) float32 in [0, 1]: the ``size`` square letterbox, an input every export takes."""
    return to_input(_letterbox(image, (size, size))[0])


#: Calibration images shipped with animeseg (recipes/anime-yolov8n-seg/calibration.py): anime art like the
#: packaged model's training set (Ren'Py tutorial sprites, MIT), never its held-out artist.
CALIBRATION_DIR = Path(__file__).resolve().parents[1] / "models" / "calibration"


def calibration_images() -> list[np.ndarray]:
    """The int8 calibration images used when the user gives none: :data:`CALIBRATION_DIR`, RGB uint8."""
    from animeseg.io import read_image

    return [read_image(p) for p in sorted(CALIBRATION_DIR.glob("*.jpg"))]


def export_openvino(onnx_path: Path, out: Path | None = None) -> Path:
    """The OpenVINO IR of an ONNX export: ``<stem>.xml`` + ``.bin`` beside it (or in ``out``), weights as stored
    (fp32 stays fp32: the runtime's precision is chosen when it runs), the export's metadata in its rt_info."""
    from animeseg.runtime.session import import_openvino, no_openvino_telemetry

    ov = import_openvino()
    dst = (out or onnx_path.parent) / f"{onnx_path.stem}.xml"
    with tempfile.TemporaryDirectory(prefix=".animeseg-openvino-", dir=dst.parent) as tmp:
        staged = Path(tmp) / dst.name
        try:
            with no_openvino_telemetry():  # each conversion would start it again
                converted = ov.convert_model(str(onnx_path))
            ov.save_model(converted, str(staged), compress_to_fp16=False)
        except Exception as e:
            raise AnimesegError(f"{onnx_path}: OpenVINO conversion failed ({type(e).__name__}: {e})") from None
        os.replace(staged.with_suffix(".bin"), dst.with_suffix(".bin"))
        os.replace(staged, dst)
    if sidecar_path(dst) != sidecar_path(onnx_path):  # beside the ONNX file, the IR shares its sidecar
        carry_defaults(onnx_path, dst, f"converted from {onnx_path.name} by animeseg export openvino")
    return dst


def head_postprocess_nodes(model: Any) -> list[str]:
    """Names of the nodes of a YOLO head that decode boxes and scores (DFL, anchors, sigmoid, concatenations):
    kept in float, since int8 there costs box and score accuracy for no speed. The head's convolutions (box,
    class and mask branches, prototypes) are quantised."""
    index = max((int(m.group(1)) for n in model.graph.node if (m := re.match(r"/model\.(\d+)/", n.name))), default=-1)
    head = f"/model.{index}/"
    branch = re.compile(re.escape(head) + r"(cv[234]\.|proto)")
    return [n.name for n in model.graph.node if n.name.startswith(head) and not branch.match(n.name)]


def quantize_detector(src: Path, dst: Path, images: list[np.ndarray], imgsz: int = 640) -> None:
    """Static int8 quantisation of a YOLO-seg ONNX export (ONNX Runtime, QDQ format): weights int8 per output
    channel, activations uint8 with ranges calibrated on ``images`` letterboxed to ``imgsz`` (a moving average of
    each image's min and max, which keeps memory flat: histogram calibration took 23 GB for 100 images); the
    head's box and score decoding stays float (:func:`head_postprocess_nodes`). The export's metadata is kept."""
    import logging

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not images:
        raise AnimesegError("int8 export: no calibration images")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._inputs = iter([{"images": letterbox(image, imgsz)} for image in images])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._inputs, None)

    root, quiet = logging.getLogger(), logging.NullHandler()  # the quantiser's hints go to the root logger
    root.addHandler(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix=".animeseg-int8-", dir=dst.parent) as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            excluded = head_postprocess_nodes(onnx.load(str(prepared), load_external_data=False))
            quantize_static(
                str(prepared),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                # the moving average damps one image's outliers (measured on the packaged model: mask IoU 0.95
                # against 0.79 with plain min-max; held-out AP in docs/benchmarks.md)
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"CalibMovingAverage": True, "CalibMovingAverageConstant": 0.01},
            )
    finally:
        root.removeHandler(quiet)


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
    import torch

    from animeseg.runtime.session import create_session
    from animeseg.yolo import load_yolo

    onnx_path = Path(onnx_path)
    image = sample_image()[0] if image is None else image
    x = letterbox(image, imgsz)
    net = load_yolo(model).model.float().eval()
    with torch.no_grad():
        pt_pred, pt_proto = _raw_detector_outputs(net(torch.from_numpy(x)))
    # ONNX on ONNX Runtime, an OpenVINO IR (.xml) on OpenVINO; fp32 compute either way
    backend = "openvino" if onnx_path.suffix == ".xml" else "onnxruntime"
    session = create_session(onnx_path, backend, "fp32", cache=False)
    ox_pred, ox_proto = (o.astype(np.float32) for o in session.run({session.input_names[0]: x})[:2])
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
            "score diff (p99)": float(np.percentile(np.abs(scores_pt - scores_ox), 99)),
            "box diff (max, px)": float(np.abs(pt_pred[0, :4] - ox_pred[0, :4]).max()),
            "mask coverage": coverage,
        },
        f"{len(top)} top anchors of {pt_pred.shape[2]} on a {imgsz}x{imgsz} letterboxed image",
    )
