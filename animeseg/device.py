"""Device names, read once: ``--device 0`` means the same GPU to the detector and to SAM."""

from __future__ import annotations

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
        raise AnimesegError(f"--device {device}: {str(e).strip().splitlines()[0]}") from None


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
