"""Mask R-CNN models and their animeseg checkpoint: building, saving, reading, and the architecture check.

An animeseg Mask R-CNN checkpoint is a plain ``torch.save`` dict (loadable with ``weights_only=True``)::

    {"arch": "maskrcnn", "format": 1, "config": ModelConfig as a dict, "state_dict": {...}}

The config says everything needed to rebuild the network (backbone, classes, input size, head settings), so a
checkpoint alone is a model: ``predict``, ``eval`` and ``export onnx`` read the architecture from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animeseg.errors import AnimesegError, InputError

if TYPE_CHECKING:
    import torch

ARCH = "maskrcnn"
FORMAT = 1
#: The backbones ``--backbone`` offers: torchvision's ResNet-50-FPN v2 Mask R-CNN, and a MobileNetV3-Large FPN
#: (torchvision's Faster R-CNN MobileNetV3 recipe with the Mask R-CNN mask head added).
BACKBONES = ("resnet50_fpn_v2", "mobilenet_v3_large_fpn")
#: Architectures animeseg can read from a checkpoint (YOLO checkpoints are Ultralytics' own pickles).
KNOWN_ARCHITECTURES = ("yolo", ARCH)


@dataclass(frozen=True)
class ModelConfig:
    """What defines a Mask R-CNN network.

    Attributes:
        backbone: one of :data:`BACKBONES`.
        names: class id (0-based, as in the dataset) -> name; torchvision's label is id + 1 (0 is background).
        imgsz: the long side images are resized to (torchvision's ``min_size`` = ``max_size`` = imgsz).
        width_mult: MobileNetV3 channel multiplier (1.0 is torchvision's; smaller only for tiny test models).
        fpn_channels: MobileNetV3 FPN width (torchvision: 256); below it the box and mask heads shrink with it
            (mask convolutions of that width, a box head of four times it), for tiny test models.
        options: further ``MaskRCNN`` keyword arguments (``rpn_post_nms_top_n_train``, ``box_batch_size_per_image``...).
    """

    backbone: str = "resnet50_fpn_v2"
    names: dict[int, str] = field(default_factory=lambda: {0: "character"})
    imgsz: int = 640
    width_mult: float = 1.0
    fpn_channels: int = 256
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["names"] = {int(k): str(v) for k, v in self.names.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d["names"] = {int(k): str(v) for k, v in (d.get("names") or {}).items()}
        return cls(**d)


def check_backbone(backbone: str) -> str:
    if backbone not in BACKBONES:
        raise AnimesegError(f"--backbone {backbone}: choose one of {', '.join(BACKBONES)}")
    return backbone


def build_model(config: ModelConfig) -> torch.nn.Module:
    """A torchvision ``MaskRCNN`` with random weights (no download ever: ``weights=None`` everywhere).

    Input: a list of (3, H, W) float tensors in [0, 1]; eval output: per image ``boxes`` (N, 4), ``labels`` (N,),
    ``scores`` (N,), ``masks`` (N, 1, H, W) probabilities at the input's size.
    """
    from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor
    from torchvision.models.mobilenetv3 import mobilenet_v3_large

    check_backbone(config.backbone)
    sizes = {"min_size": config.imgsz, "max_size": config.imgsz}
    num_classes = max(config.names, default=0) + 2  # ids 0..max plus background
    kwargs = {**sizes, **config.options}
    if config.backbone == "resnet50_fpn_v2":
        return maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    body = mobilenet_v3_large(weights=None, width_mult=config.width_mult)
    backbone = _mobilenet_extractor(body, True, 6)
    if config.fpn_channels != 256:
        backbone = _narrow_fpn(backbone, config.fpn_channels)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3  # torchvision's fasterrcnn_mobilenet_v3_large_fpn
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    defaults: dict[str, Any] = {"rpn_score_thresh": 0.05}
    if config.fpn_channels != 256:
        defaults.update(_narrow_heads(config.fpn_channels, num_classes))
    return MaskRCNN(
        backbone,
        num_classes=None if "box_predictor" in defaults else num_classes,
        rpn_anchor_generator=anchors,
        **{**defaults, **kwargs},
    )


def _narrow_fpn(backbone: Any, channels: int) -> Any:
    """The MobileNetV3 backbone of ``_mobilenet_extractor`` with its FPN rebuilt at ``channels`` outputs."""
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

    in_channels = [block[0].in_channels for block in backbone.fpn.inner_blocks]
    backbone.fpn = FeaturePyramidNetwork(in_channels, channels, extra_blocks=LastLevelMaxPool())
    backbone.out_channels = channels
    return backbone


def _narrow_heads(channels: int, num_classes: int) -> dict[str, Any]:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    rep = 4 * channels
    return {
        "box_head": TwoMLPHead(channels * 7 * 7, rep),
        "box_predictor": FastRCNNPredictor(rep, num_classes),
        "mask_head": MaskRCNNHeads(channels, (channels,) * 4, 1),
        "mask_predictor": MaskRCNNPredictor(channels, channels, num_classes),
    }


# ------------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str | Path, model: torch.nn.Module, config: ModelConfig) -> Path:
    """Write ``model``'s weights and ``config`` as an animeseg checkpoint, atomically."""
    import torch

    from animeseg.io import atomic_path

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"arch": ARCH, "format": FORMAT, "config": config.to_dict(), "state_dict": state}, tmp)
    return path


def _torch_load(path: Path) -> Any:
    import pickle

    import torch

    from animeseg.io import torch_file_problem

    problem = torch_file_problem(path)
    if problem is not None:  # a text file or an image renamed .pt: the unpickler would say `KeyError: 101`
        raise AnimesegError(f"{path}: {problem}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError):
        return None  # not a plain-data checkpoint: Ultralytics pickles its model objects
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None


def architecture(path: str | Path) -> str:
    """The architecture of a model file: ``maskrcnn`` for an animeseg Mask R-CNN checkpoint (``.pt``) or its ONNX
    export, else ``yolo``. A checkpoint that names another architecture is a one-line :class:`InputError`."""
    path = Path(path).expanduser()
    if path.suffix == ".onnx" and path.is_file():
        return onnx_architecture(path)
    if path.suffix not in (".pt", ".pth", ".ckpt") or not path.is_file():
        return "yolo"
    ckpt = _torch_load(path)
    if ckpt is None:
        return "yolo"
    arch = ckpt.get("arch") if isinstance(ckpt, dict) else None
    if arch is None and isinstance(ckpt, dict):
        arch = (ckpt.get("hyper_parameters") or {}).get("arch")  # a Lightning checkpoint of `train --arch maskrcnn`
    if arch in KNOWN_ARCHITECTURES:
        return str(arch)
    if arch is None:
        raise InputError(
            path,
            "not a model checkpoint animeseg knows (no architecture recorded: neither an "
            "Ultralytics YOLO checkpoint nor an animeseg Mask R-CNN one)",
        )
    raise InputError(path, f"unknown architecture {arch!r} (known: {', '.join(KNOWN_ARCHITECTURES)})")


def onnx_architecture(path: Path) -> str:
    """``maskrcnn`` for an ONNX file exported by :mod:`animeseg.maskrcnn.export` (its metadata says so)."""
    from animeseg.runtime.metadata import onnx_metadata

    try:
        meta = onnx_metadata(path)  # the metadata alone, without parsing the graph or importing onnx
    except InputError as e:
        raise AnimesegError(f"{path}: not a readable ONNX model (empty, truncated or not ONNX: {e.problem})") from None
    arch = meta.get("animeseg_arch", "yolo")
    if arch not in KNOWN_ARCHITECTURES:
        raise InputError(path, f"unknown architecture {arch!r} (known: {', '.join(KNOWN_ARCHITECTURES)})")
    return arch


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, ModelConfig]:
    """The model (eval mode, CPU) and config of an animeseg Mask R-CNN checkpoint or Lightning ``.ckpt``."""
    path = Path(path).expanduser()
    if not path.is_file():
        from animeseg.errors import MissingWeightsError

        raise MissingWeightsError(path)
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict):
        raise InputError(path, "not an animeseg Mask R-CNN checkpoint")
    if "hyper_parameters" in ckpt:  # Lightning: the module's state has a "model." prefix
        hp = ckpt["hyper_parameters"]
        config = ModelConfig.from_dict(hp["config"])
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    else:
        if ckpt.get("arch") != ARCH:
            raise InputError(path, f"a {ckpt.get('arch') or 'unknown'} checkpoint, not a Mask R-CNN one")
        config = ModelConfig.from_dict(ckpt["config"])
        state = ckpt["state_dict"]
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(path, f"weights do not fit its recorded architecture ({str(e).splitlines()[0]})") from None
    return model.eval(), config
