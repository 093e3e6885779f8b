"""Installed versions of the packages animeseg runs on, by import name, for the records a build or a training run
writes. The one place that knows an import may come from either of two distributions: ``cv2`` from
``opencv-python-headless`` (the core install) or ``opencv-python``, ``ultralytics`` from
``ultralytics-opencv-headless`` (the ``train`` extra) or ``ultralytics``."""

from __future__ import annotations

from importlib import metadata


def installed_version(module: str) -> str | None:
    """The version of the distribution that provides the top-level import ``module`` (``cv2``, ``ultralytics``,
    ``PIL``...), or None when none is installed. Where several do, their versions joined by ``+``, each with its
    distribution's name (two OpenCV wheels writing the same ``cv2`` folder is a broken install worth recording)."""
    names = sorted(set(metadata.packages_distributions().get(module, [])))
    found = []
    for name in names:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    if not found:
        return None
    if len(found) == 1:
        return found[0][1]
    return " + ".join(f"{name} {version}" for name, version in found)
