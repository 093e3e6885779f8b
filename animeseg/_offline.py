"""Make Ultralytics safe to use offline, once, before any of its code runs.

Ultralytics reaches for the network in several places: hub events, font downloads for plots, AMP checks that
fetch ``yolo11n.pt``, pip auto-installs and GitHub weight downloads for unknown model names. We switch each of
those off through its documented environment variables and settings, give it a config folder we own, and put
a TTF where its font check looks first, so that plotting never downloads ``Arial.ttf``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_DONE = False

#: Font names Ultralytics asks for (Latin and non-Latin labels).
_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def home() -> Path:
    """The folder animeseg keeps its own state in (``$ANIMESEG_HOME``, else ``~/.cache/animeseg``)."""
    root = (
        os.environ.get("ANIMESEG_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "animeseg"
    )
    return Path(root)


def _bundled_ttf() -> Path | None:
    """A TrueType font that ships inside an installed package (matplotlib, an Ultralytics dependency)."""
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except Exception:
        return None
    return path if path.is_file() else None


def ensure_offline() -> Path:
    """Configure Ultralytics for offline use; idempotent. Returns the Ultralytics config folder.

    A user's own ``YOLO_CONFIG_DIR`` is respected; otherwise ``<home>/ultralytics`` is used.
    """
    global _DONE
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(home() / "ultralytics")))
    if _DONE:
        return config_dir
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ.setdefault("HUB_OFFLINE", "1")
    fonts = config_dir / "Ultralytics"
    try:
        fonts.mkdir(parents=True, exist_ok=True)
        src = _bundled_ttf()
        for name in _FONT_NAMES:
            dst = fonts / name
            if src is not None and not dst.exists():
                tmp = dst.with_suffix(".tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
    except OSError:
        pass  # a read-only home only costs us plots with labels; never fail an import over it
    _DONE = True
    return config_dir


def import_ultralytics():
    """Import Ultralytics with the offline set-up applied and its hub sync and experiment loggers off.

    Returns the ``ultralytics`` module. Loggers (MLflow, Comet, ClearML, DVC, Ray Tune, W&B) would try to reach
    their servers when their packages happen to be installed; TensorBoard writes local files and stays as is.
    """
    ensure_offline()
    # Ultralytics sets OMP_NUM_THREADS=1 on import when it is unset, which leaves torch on ONE thread if its
    # thread pool is created afterwards (SAM's encoder then runs several times slower on a multi-core CPU).
    # Importing torch first keeps torch's default of one thread per core.
    import torch  # noqa: F401
    import ultralytics
    from ultralytics.utils import SETTINGS

    wanted = {k: False for k in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "wandb") if k in SETTINGS}
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)
    return ultralytics
