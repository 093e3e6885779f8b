"""A trainable Ultralytics checkpoint from an Ultralytics YOLO detect/segment ONNX export.

An export of a fused model keeps each ``Conv`` (conv + BatchNorm) as one convolution with a bias, and names its
initializers like the fused state dict (``model.4.m.0.cv1.conv.weight``; dynamically quantised int8 exports add
``_quantized``, ``_scale`` and ``_zero_point`` to the weight's name). Each fused convolution goes back into an
unfused model as the conv weight plus an identity BatchNorm (weight 1, bias = the fused bias, running mean 0,
running variance ``1 - eps``), which computes the same function and can be trained again. Plain convolutions
(the heads' last layers, the prototype upsampler) are copied as they are.

The architecture (YOLOv8 or YOLO11, scale n/s/m/l/x, detect or segment) is taken from the export's metadata and
confirmed by the weights' shapes; names, task and image size come from the metadata too.

    >>> result = import_onnx("yolov8n-seg.onnx", "weights/yolov8n-seg-coco.pt")
    >>> result.architecture, result.imgsz, len(result.names)
    ('yolov8n-seg.yaml', 320, 80)
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.errors import AnimesegError, InputError

_SCALES = "nsmlx"
_FAMILIES = ("yolov8", "yolo11")
_DESCRIPTION = re.compile(r"YOLO(v8|11)([nsmlx])", re.IGNORECASE)


@dataclass
class OnnxExport:
    """What an Ultralytics ONNX export says about itself, and its weights as float32 arrays by name."""

    path: Path
    task: str
    names: dict[int, str]
    imgsz: int
    stride: int
    description: str
    weights: dict[str, np.ndarray]
    precision: str  # "fp32", "fp16" or "int8"


@dataclass
class ImportResult:
    """The checkpoint written by :func:`import_onnx`."""

    checkpoint: Path
    architecture: str  # the Ultralytics model config, e.g. ``yolov8n-seg.yaml``
    task: str
    names: dict[int, str]
    imgsz: int
    precision: str
    tensors: int  # ONNX weight tensors placed into the model
    kept_classes: list[int] | None = None
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ reading
def _metadata(model: Any, path: Path) -> dict[str, str]:
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in ("task", "names", "imgsz") if k not in meta]
    if missing or "Ultralytics" not in meta.get("author", "") + meta.get("description", ""):
        raise InputError(path, "not an Ultralytics YOLO export (its metadata has no Ultralytics task, names, imgsz)")
    return meta


def _dequantised(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """int8/uint8 weights (``X_quantized`` + ``X_scale`` + ``X_zero_point``) as float32 ``X``; fp16 as fp32."""
    out: dict[str, np.ndarray] = {}
    precision = "fp32"
    for name, value in tensors.items():
        if name.endswith("_quantized"):
            base = name[: -len("_quantized")]
            scale = tensors.get(base + "_scale")
            zero = tensors.get(base + "_zero_point")
            if scale is None or zero is None:
                continue
            # per-channel scales run along the output channels (axis 0)
            shape = (-1,) + (1,) * (value.ndim - 1) if np.size(scale) > 1 else ()
            q = value.astype(np.float32) - np.asarray(zero, np.float32).reshape(shape)
            out[base] = q * np.asarray(scale, np.float32).reshape(shape)
            precision = "int8"
        elif name.endswith(("_scale", "_zero_point")) and name.rsplit("_", 2)[0] + "_quantized" in tensors:
            continue
        elif value.dtype == np.float16:
            out[name] = value.astype(np.float32)
            precision = "fp16" if precision == "fp32" else precision
        elif value.dtype == np.float32:
            out[name] = value
    return out, precision


def _dequantise_qdq(graph: Any, tensors: dict[str, np.ndarray]) -> bool:
    """Static int8 exports (QDQ: ``animeseg export onnx --int8``) feed each integer weight and bias through a
    ``DequantizeLinear`` node: its output, ``(q - zero_point) * scale`` along the node's axis, is added to
    ``tensors`` as float32 under the node's output name. True when there was any."""
    found = False
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in tensors or node.input[1] not in tensors:
            continue
        q, scale = tensors[node.input[0]], np.asarray(tensors[node.input[1]], np.float32)
        zero = tensors.get(node.input[2]) if len(node.input) > 2 else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.size > 1:
            shape[axis] = -1
        value = q.astype(np.float32) - (np.asarray(zero, np.float32).reshape(shape) if zero is not None else 0)
        tensors[node.output[0]] = value * scale.reshape(shape)
        found = True
    return found


def read_export(path: str | Path) -> OnnxExport:
    """Read an Ultralytics ONNX export's metadata and weights; :class:`InputError` for anything else."""
    import onnx
    from onnx import numpy_helper

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise InputError(path, f"not an ONNX model ({type(e).__name__})") from None
    meta = _metadata(model, path)
    try:
        names = {int(k): str(v) for k, v in ast.literal_eval(meta["names"]).items()}
        size = ast.literal_eval(meta["imgsz"])
        imgsz = int(max(size) if isinstance(size, (list, tuple)) else size)
    except (ValueError, SyntaxError, AttributeError, TypeError):
        raise InputError(path, "unreadable Ultralytics metadata (names or imgsz)") from None
    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:  # a simplifier may pass a merged copy of an initializer on through Identity
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    static = _dequantise_qdq(model.graph, tensors)
    weights, precision = _dequantised(tensors)
    precision = "int8" if static else precision
    # A simplifier may merge equal initializers (say, two identical bias vectors) under one name; the nodes of
    # each module still say which tensors they use.
    weights = {**_by_node_scope(model.graph, weights), **{k: v for k, v in weights.items() if k.startswith("model.")}}
    return OnnxExport(
        path=path,
        task=meta["task"],
        names=names,
        imgsz=imgsz,
        stride=int(meta.get("stride", 32)),
        description=meta.get("description", ""),
        weights=weights,
        precision=precision,
    )


def module_path(node_name: str) -> str | None:
    """``/model.22/cv3.1/cv3.1.2/Conv`` -> ``model.22.cv3.1.2``: the module a node of a torch export belongs to.

    Each scope is named relative to its parent, except children of containers (Sequential, ModuleList), whose
    names already carry the container's (``cv3.1`` then ``cv3.1.2``).
    """
    parts = node_name.strip("/").split("/")[:-1]
    if not parts or not parts[0].startswith("model."):
        return None
    stack = [parts[0]]
    for i, p in enumerate(parts[1:], start=1):
        inside_container = i > 1 and p.startswith(parts[i - 1] + ".")
        stack.append(f"{stack[-2] if inside_container else stack[-1]}.{p}")
    return stack[-1]


def _by_node_scope(graph: Any, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weights named after the module of the convolution that uses them (see :func:`module_path`)."""
    out: dict[str, np.ndarray] = {}
    for node in graph.node:
        path = module_path(node.name)
        if path is None:
            continue
        ins = list(node.input)
        if node.op_type in ("Conv", "ConvTranspose"):
            for suffix, name in zip((".weight", ".bias"), ins[1:3], strict=False):
                if name in weights:
                    out[path + suffix] = weights[name]
        elif node.op_type == "ConvInteger" and ins[1].removesuffix("_quantized") in weights:
            out[path + ".weight"] = weights[ins[1].removesuffix("_quantized")]
        elif node.op_type == "Reshape" and node.name.endswith("bias_reshape") and ins[0] in weights:
            out[path + ".bias"] = weights[ins[0]]  # the int8 graph adds the bias after the integer convolution
    return out


# ------------------------------------------------------------------------------------------------ mapping
def candidate_architectures(export: OnnxExport) -> list[str]:
    """Model configs to try, the one the description names first."""
    suffix = {"segment": "-seg", "detect": ""}.get(export.task)
    if suffix is None:
        raise InputError(export.path, f"task {export.task!r} is not supported (detect or segment)")
    all_ = [f"{fam}{s}{suffix}.yaml" for fam in _FAMILIES for s in _SCALES]
    m = _DESCRIPTION.search(export.description)
    if m:
        named = f"yolo{'v8' if m.group(1).lower() == 'v8' else '11'}{m.group(2).lower()}{suffix}.yaml"
        all_.remove(named)
        all_.insert(0, named)
    return all_


def unfused_state(model: Any, weights: dict[str, np.ndarray]) -> tuple[dict[str, Any], int]:
    """The state dict of ``model`` (an unfused Ultralytics model) filled from fused ONNX ``weights``.

    Raises ``KeyError``/``ValueError`` naming the first tensor that is missing or of another shape.
    """
    import torch
    from torch import nn

    state = model.state_dict()
    new: dict[str, Any] = {}
    used: set[str] = set()

    def take(onnx_name: str, like: torch.Tensor) -> torch.Tensor:
        if onnx_name not in weights:
            raise KeyError(onnx_name)
        value = torch.from_numpy(np.array(weights[onnx_name], np.float32))
        if tuple(value.shape) != tuple(like.shape):
            raise ValueError(f"{onnx_name}: shape {tuple(value.shape)}, model wants {tuple(like.shape)}")
        used.add(onnx_name)
        return value.to(like.dtype)

    for name, module in model.named_modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            w = take(f"{name}.conv.weight", conv.weight)
            b = take(f"{name}.conv.bias", bn.bias)
            new[f"{name}.conv.weight"] = w
            new[f"{name}.bn.weight"] = torch.ones_like(bn.weight)
            new[f"{name}.bn.bias"] = b
            new[f"{name}.bn.running_mean"] = torch.zeros_like(bn.running_mean)
            # (x - 0) / sqrt(var + eps) == x: the BatchNorm adds the fused bias and nothing else
            new[f"{name}.bn.running_var"] = torch.full_like(bn.running_var, 1.0 - bn.eps)
    for key, value in state.items():
        if key in new or key.endswith("num_batches_tracked"):
            continue
        if key in weights:
            new[key] = take(key, value)
        elif ".dfl." in key:  # the DFL's fixed 0..15 projection is folded into the graph
            new[key] = value
        else:
            raise KeyError(key)
    return new, len(used)


def _build(architecture: str, nc: int, task: str) -> Any:
    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel

    cls = SegmentationModel if task == "segment" else DetectionModel
    return cls(architecture, nc=nc, verbose=False)


def keep_classes(model: Any, keep: list[int]) -> None:
    """Cut the classification head of ``model`` (in place) down to the classes ``keep``, in that order."""
    import torch

    head = model.model[-1]
    index = torch.as_tensor(keep, dtype=torch.long)
    for branch in head.cv3:
        last = branch[-1]
        conv = last if isinstance(last, torch.nn.Conv2d) else last[-1]
        new = torch.nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, conv.stride, conv.padding)
        with torch.no_grad():
            new.weight.copy_(conv.weight[index])
            new.bias.copy_(conv.bias[index])
        if isinstance(last, torch.nn.Conv2d):
            branch[-1] = new
        else:
            last[-1] = new
    head.nc = len(keep)
    head.no = head.nc + head.reg_max * 4
    model.yaml["nc"] = len(keep)


def resolve_classes(names: dict[int, str], wanted: list[str]) -> list[int]:
    """Class ids for ``wanted`` given as ids or names; :class:`AnimesegError` for an unknown one."""
    by_name = {v.lower(): k for k, v in names.items()}
    out = []
    for w in wanted:
        w = str(w).strip()
        if w.isdigit() and int(w) in names:
            out.append(int(w))
        elif w.lower() in by_name:
            out.append(by_name[w.lower()])
        else:
            raise AnimesegError(f"class {w!r} is not in the model's names ({len(names)} classes)")
    return out


def import_onnx(
    onnx_path: str | Path,
    out: str | Path,
    *,
    classes: list[str] | None = None,
    rename: list[str] | None = None,
) -> ImportResult:
    """Write ``out``, an Ultralytics ``.pt`` checkpoint equivalent to the ONNX export ``onnx_path``.

    ``classes`` keeps only those classes (ids or names; the head's rows are sliced, so the kept classes score as
    before); ``rename`` gives the kept classes new names, in order. Raises :class:`InputError` for an ONNX model
    that is not an Ultralytics YOLOv8/YOLO11 detect or segment export.
    """
    import torch

    from animeseg.io import atomic_path

    export = read_export(onnx_path)
    problems = []
    for arch in candidate_architectures(export):
        model = _build(arch, len(export.names), export.task)
        try:
            state, tensors = unfused_state(model, export.weights)
        except (KeyError, ValueError) as e:
            problems.append(f"{arch}: {e}")
            continue
        model.load_state_dict(state, strict=True)
        break
    else:
        raise InputError(export.path, f"weights match no YOLOv8/YOLO11 {export.task} model ({problems[0]})")
    names = dict(export.names)
    kept = None
    if classes:
        kept = resolve_classes(names, classes)
        keep_classes(model, kept)
        names = {i: names[k] for i, k in enumerate(kept)}
    if rename:
        if len(rename) != len(names):
            raise AnimesegError(f"--names gives {len(rename)} names for {len(names)} classes")
        names = dict(enumerate(rename))
    model.names = names
    model.args = {"task": export.task, "imgsz": export.imgsz, "model": arch}
    model.eval()
    ckpt = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": _version(),
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": -1,
        "best_fitness": None,
        "model": model,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {"task": export.task, "imgsz": export.imgsz, "model": arch},
        "train_metrics": None,
        "animeseg_import": {"source": str(export.path), "precision": export.precision, "kept_classes": kept},
    }
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(ckpt, tmp)
    return ImportResult(out, arch, export.task, names, export.imgsz, export.precision, tensors, kept)


def _version() -> str:
    from animeseg.versions import installed_version

    return installed_version("ultralytics") or "unknown"


# ------------------------------------------------------------------------------------------------ parity
@dataclass
class ImportParityRow:
    """One ONNX detection and its best match among the checkpoint's detections (same class)."""

    cls: str
    onnx_conf: float
    ckpt_conf: float | None  # None: no detection of that class overlaps it
    box_iou: float
    mask_iou: float | None


@dataclass
class ImportParity:
    """The ONNX export against the imported checkpoint on one image, same letterbox and image size."""

    image: str
    imgsz: int
    rows: list[ImportParityRow]
    onnx_count: int
    ckpt_count: int

    def ok(self, min_conf: float = 0.5, min_iou: float = 0.95, match_conf: float = 0.3) -> bool:
        """Every ONNX detection of confidence >= ``min_conf`` has a checkpoint match of box IoU >= ``min_iou``
        and confidence >= ``match_conf``."""
        return all(
            r.ckpt_conf is not None and r.ckpt_conf >= match_conf and r.box_iou >= min_iou
            for r in self.rows
            if r.onnx_conf >= min_conf
        )


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) against boxes (M, 4), xyxy -> (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def compare(onnx_path: str | Path, checkpoint: str | Path, image: np.ndarray, *, conf: float = 0.2) -> ImportParity:
    """Detections of the export and of the checkpoint on ``image`` (RGB (H, W, 3) uint8) at the export's size.

    Both are letterboxed to the same square (an ONNX export's static input), so any difference is the weights'.
    """
    from animeseg.yolo import load_yolo

    export = read_export(onnx_path)
    bgr = np.ascontiguousarray(image[..., ::-1])
    args = {"imgsz": export.imgsz, "conf": conf, "rect": False, "retina_masks": True, "verbose": False}
    out = []
    for path in (onnx_path, checkpoint):
        r = load_yolo(path, task=export.task).predict(bgr, device="cpu", **args)[0]
        masks = r.masks.data.cpu().numpy() > 0.5 if r.masks is not None else None
        out.append((r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(), r.boxes.cls.cpu().numpy(), masks))
    (ob, oc, ok_, om), (cb, cc, ck, cm) = out
    iou = _box_iou(ob, cb) if len(ob) and len(cb) else np.zeros((len(ob), len(cb)))
    rows = []
    for i in range(len(ob)):
        same = np.flatnonzero(ck == ok_[i])
        if len(same) == 0 or iou[i, same].max() <= 0:
            rows.append(ImportParityRow(export.names.get(int(ok_[i]), str(int(ok_[i]))), float(oc[i]), None, 0.0, None))
            continue
        j = int(same[np.argmax(iou[i, same])])
        mask_iou = None
        if om is not None and cm is not None:
            inter = np.logical_and(om[i], cm[j]).sum()
            mask_iou = float(inter / max(np.logical_or(om[i], cm[j]).sum(), 1))
        name = export.names.get(int(ok_[i]), str(int(ok_[i])))
        rows.append(ImportParityRow(name, float(oc[i]), float(cc[j]), float(iou[i, j]), mask_iou))
    return ImportParity("", export.imgsz, rows, len(ob), len(cb))
