"""ONNX export of an animeseg Mask R-CNN checkpoint, its parity check, and the ONNX Runtime detector.

The whole torchvision model goes into the graph (resize, backbone, RPN, ROI heads, mask pasting): input ``image``
(3, H, W) float32 in [0, 1] at any size, outputs ``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,) and
``masks`` (N, 1, H, W) probabilities at the input's size. It is traced with torch's TorchScript-based exporter
(``dynamo=False``): torchvision's detection models carry their ONNX support there. The settings traced in are
recorded in the file's metadata (``animeseg_arch``, ``names``, ``imgsz``, ``conf``, ``iou``, ``max_det``); the
ONNX detector (:class:`animeseg.maskrcnn.detector.MaskRCNNOnnxDetector`) applies a higher ``conf`` and fewer
``max_det`` itself.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from animeseg.errors import AnimesegError
from animeseg.export.parity import Parity, mask_ious, sample_image
from animeseg.instances import check_image
from animeseg.maskrcnn.detector import configure, onnx_outputs, onnx_session
from animeseg.maskrcnn.model import ARCH
from animeseg.runtime.metadata import model_metadata

OPSET = 17
#: Settings traced into an export: every detection AP reads (COCO: 100 per image, scores down to 0.001).
EXPORT_SETTINGS = {"conf": 0.001, "iou": 0.5, "max_det": 100}
#: How far (pixels, any coordinate) an ONNX box may be from a PyTorch box to count as the same detection.
MATCH_PX = 2.0


def export_maskrcnn(model: str | Path, out: str | Path = "exports", imgsz: int | None = None) -> Path:
    """Export a Mask R-CNN checkpoint to ``out/<stem>.onnx`` (or ``out`` itself when it ends in .onnx).

    ``imgsz``: the long side images are resized to inside the graph (default: the checkpoint's training size).
    """
    import onnx
    import torch

    from animeseg.io import atomic_path
    from animeseg.maskrcnn.model import load_checkpoint

    net, config = load_checkpoint(model)
    size = int(imgsz or config.imgsz)
    configure(net, size, **EXPORT_SETTINGS)
    out = Path(out)
    dst = out if out.suffix == ".onnx" else out / f"{Path(model).stem}.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(sample_image()[0].transpose(2, 0, 1).copy()).float() / 255.0
    with atomic_path(dst) as tmp:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer warnings about Python values in torchvision's code
                torch.onnx.export(
                    net,
                    ([example],),
                    str(tmp),
                    opset_version=OPSET,
                    input_names=["image"],
                    output_names=["boxes", "labels", "scores", "masks"],
                    dynamic_axes={
                        "image": {1: "height", 2: "width"},
                        "boxes": {0: "n"},
                        "labels": {0: "n"},
                        "scores": {0: "n"},
                        "masks": {0: "n", 2: "height", 3: "width"},
                    },
                    dynamo=False,
                )
        except Exception as e:
            raise AnimesegError(f"{model}: ONNX export failed ({type(e).__name__}: {e})") from None
        proto = onnx.load(str(tmp))
        meta = {
            "animeseg_arch": ARCH,
            "backbone": config.backbone,
            "names": json.dumps({str(k): v for k, v in config.names.items()}),
            "imgsz": str(size),
            **{k: str(v) for k, v in EXPORT_SETTINGS.items()},
        }
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp))
    return dst


def check_maskrcnn(
    model: str | Path, onnx_path: str | Path, image: np.ndarray | None = None, conf: float = 0.05
) -> Parity:
    """Run the checkpoint in PyTorch and its export on ONNX Runtime on one image; compare their detections.

    Each PyTorch detection scoring >= ``conf`` is matched to the ONNX detection of the same class whose box is
    closest (every coordinate within :data:`MATCH_PX` pixels); compared: mask IoU per matched instance
    (probabilities > 0.5 at full resolution), score and box differences, and how many found no match (with a
    random-weights model every score can be near-tied, so detections are matched by box, not by rank).
    """
    import torch

    from animeseg.maskrcnn.model import load_checkpoint

    onnx_path = Path(onnx_path)
    image = sample_image()[0] if image is None else check_image(image)
    session = onnx_session(onnx_path)
    meta = model_metadata(onnx_path)
    net, _ = load_checkpoint(model)
    settings = {k: float(meta.get(k, v)) for k, v in EXPORT_SETTINGS.items()}
    configure(net, int(meta.get("imgsz", 640)), settings["conf"], settings["iou"], int(settings["max_det"]))
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
    with torch.no_grad():
        pt = {k: v.numpy() for k, v in net([x])[0].items()}
    ox = dict(zip(("boxes", "labels", "scores", "masks"), onnx_outputs(session, image), strict=True))
    sel = np.flatnonzero(pt["scores"] >= conf)
    ious, score_diffs, box_diffs, missing = [], [], [], 0
    for i in sel:
        same = np.flatnonzero(ox["labels"] == pt["labels"][i])
        # the closest box (an untrained model also gives degenerate, zero-area boxes, whose IoU says nothing)
        dist = np.abs(ox["boxes"][same] - pt["boxes"][i]).max(1) if len(same) else np.array([np.inf])
        if dist.min() > MATCH_PX:
            missing += 1
            continue
        j = same[int(np.argmin(dist))]
        ious.append(float(mask_ious(pt["masks"][i, 0] > 0.5, ox["masks"][j, 0] > 0.5)[0]))
        score_diffs.append(abs(float(pt["scores"][i]) - float(ox["scores"][j])))
        box_diffs.append(float(np.abs(pt["boxes"][i] - ox["boxes"][j]).max()))
    h, w = image.shape[:2]
    return Parity(
        ARCH,
        "fp32",
        onnx_path,
        {
            "mask IoU (min)": min(ious) if ious else float("nan"),
            "mask IoU (mean)": float(np.mean(ious)) if ious else float("nan"),
            "score diff (max)": max(score_diffs, default=0.0),
            "box diff (max, px)": max(box_diffs, default=0.0),
            "unmatched detections": float(missing),
            "detections compared": float(len(sel)),
        },
        f"{len(sel)} PyTorch detections scoring >= {conf} ({len(pt['scores'])} in all, ONNX {len(ox['scores'])}) "
        f"on a {w}x{h} image",
    )


__all__ = ["EXPORT_SETTINGS", "check_maskrcnn", "export_maskrcnn"]
