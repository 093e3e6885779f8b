"""Mask R-CNN training runs: which devices Lightning gets, which weights a run starts from, which checkpoint it
resumes, and how many epochs a checkpoint holds (:mod:`animeseg.train.maskrcnn` runs the training itself).

Importing this module imports neither torch nor Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from animeseg.errors import AnimesegError, InputError, MissingWeightsError
from animeseg.maskrcnn.model import check_backbone

CHECKPOINTS = "checkpoints"


# ------------------------------------------------------------------------------------------------ devices
@dataclass(frozen=True)
class DevicePlan:
    """Lightning's ``accelerator``, ``devices``, ``num_nodes`` and ``precision`` for a ``--device`` string."""

    accelerator: str
    devices: Any
    num_nodes: int
    precision: str

    @property
    def label(self) -> str:
        return "cpu" if self.accelerator == "cpu" else f"gpu {self.devices} x {self.num_nodes} node(s)"


def device_plan(device: str | None, devices: int | None = None, num_nodes: int = 1, amp: bool = True) -> DevicePlan:
    """``--device`` (``cpu``, ``0``, ``0,1``, ``cuda:1``; None: GPU if any) plus ``--devices N`` (GPUs per node)
    and ``--num-nodes`` as Lightning wants them. Mixed precision on GPUs unless ``amp`` is False."""
    import torch

    text = (device or "").strip().lower()
    if text == "cpu" or (not text and not torch.cuda.is_available()):
        if devices not in (None, 1) or num_nodes != 1:
            raise AnimesegError("--devices/--num-nodes need GPUs; on the CPU training runs in one process")
        return DevicePlan("cpu", 1, 1, "32-true")
    if not torch.cuda.is_available():
        raise AnimesegError(f"--device {device}: no CUDA GPU is visible to torch")
    if text:
        ids = [int(t.removeprefix("cuda:")) for t in text.split(",") if t.strip()]
        if devices is not None and devices != len(ids):
            raise AnimesegError(f"--device {device} names {len(ids)} GPU(s) but --devices says {devices}")
        chosen: Any = ids
    else:
        chosen = devices or 1
    return DevicePlan("gpu", chosen, int(num_nodes), "16-mixed" if amp else "32-true")


# ------------------------------------------------------------------------------------------------ starting point
def pretrained_file(backbone: str) -> Path:
    """The official COCO checkpoint a backbone starts from, from the weights folder; one line when missing."""
    from animeseg import weights as W

    name = W.MASKRCNN_PRETRAINED[check_backbone(backbone)]
    path = W.find_official(name)
    if path is None:
        raise MissingWeightsError(
            W.official_path(name),
            f"the COCO starting point of --backbone {backbone}; get it once with `animeseg weights download {name}` "
            "(the only command that uses the network), or pass --from-scratch",
        )
    return path


def load_start(model: Any, path: Path) -> tuple[int, int]:
    """Copy the tensors of ``path`` (a torchvision ``.pth`` state dict or an animeseg checkpoint) whose names and
    shapes fit ``model``; returns (copied, skipped). The class-specific layers of a COCO model are skipped."""
    import torch

    from animeseg.maskrcnn.model import load_checkpoint

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(path, f"not a loadable weights file ({type(e).__name__})") from None
    if isinstance(state, dict) and ("arch" in state or "hyper_parameters" in state):
        state = load_checkpoint(path)[0].state_dict()
    if not isinstance(state, dict):
        raise InputError(path, "not a state dict")
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fits:
        raise InputError(path, "none of its weights fit this Mask R-CNN (another backbone?)")
    model.load_state_dict(fits, strict=False)
    return len(fits), len(state) - len(fits)


# ------------------------------------------------------------------------------------------------ runs
def last_checkpoint(project: Path, name: str | None, model: str | Path | None) -> Path:
    """The Lightning ``last.ckpt`` to resume: ``model`` when it is one, else run ``project/name``, else the most
    recent Mask R-CNN run under ``project``."""
    if model is not None and Path(str(model)).suffix == ".ckpt":
        path = Path(str(model)).expanduser().resolve()
        if not path.is_file():
            raise MissingWeightsError(path, "no such checkpoint to resume")
        return path
    if name:
        path = project / name / CHECKPOINTS / "last.ckpt"
        if not path.is_file():
            raise InputError(path, "no checkpoint to resume (is --project/--name the interrupted run?)")
        return path
    runs = sorted(project.glob(f"*/{CHECKPOINTS}/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise InputError(project, "no Mask R-CNN run with checkpoints/last.ckpt to resume; pass --name")
    return runs[-1]


def new_run_dir(project: Path, name: str) -> Path:
    """``project/name``, or ``name2``, ``name3``... when taken (as Ultralytics does)."""
    run, n = project / name, 2
    while run.exists():
        run, n = project / f"{name}{n}", n + 1
    return run


def epochs_done(checkpoint: Path) -> int:
    """Epochs a Lightning checkpoint has finished training (its fit loop's processed epochs: a checkpoint written
    at the end of an epoch's validation counts that epoch)."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    try:
        return int(ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError):
        return int(ckpt.get("epoch", -1)) + 1
