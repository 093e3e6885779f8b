"""Device names, read once: ``--device 0`` means the same GPU to the detector and to SAM."""

from __future__ import annotations

import re

from animeseg.errors import AnimesegError


def resolve_device(device: str | None) -> str | None:
    """A user's device (``cpu``, ``0``, ``cuda:0``, ``mps``...) as torch spells it (``cuda:0``), checked to exist.

    None (or empty) stays None: each model then picks the first GPU if there is one, else the CPU. A device this
    machine does not have is a one-line :class:`AnimesegError`. Ultralytics' own parser decides what is valid, so
    the detector and SAM accept exactly the same spellings.
    """
    if device is None or not str(device).strip():
        return None
    if str(device).strip().lower() == "cpu":
        return "cpu"  # needs no torch: the core install (ONNX models) accepts it too
    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.utils.torch_utils import select_device

    try:
        return str(select_device(str(device).strip(), verbose=False))
    except Exception as e:
        raise AnimesegError(f"--device {device}: {_missing_device(str(device).strip(), e)}") from None


def _missing_device(device: str, e: Exception) -> str:
    """What is wrong with a device Ultralytics refused, in the user's own spelling (Ultralytics' message names
    ``device=0`` whatever was asked)."""
    import torch

    if device.lower().startswith("mps"):
        return "Apple's MPS is not available here; pass --device cpu"
    if not re.fullmatch(r"(cuda)?(:?\d+(,\d+)*)?", device.lower()):
        return "not a device; use cpu, 0 (the first GPU), 0,1, cuda:0 or mps"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "this machine has no CUDA GPU that torch can use; pass --device cpu (or leave --device out)"
    ids = ", ".join(str(i) for i in range(count))
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"no such GPU (this machine has {count}: {ids}); {first}"


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
