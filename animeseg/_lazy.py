"""Modules imported on first use, for the few whose import has side effects.

OpenCV's import edits the process environment (``LD_LIBRARY_PATH`` and Qt's plugin and font paths), and
importing animeseg must not; modules that use OpenCV write ``from animeseg._lazy import cv2`` and the real import
happens at the first ``cv2.<name>`` they evaluate.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name``; the first attribute looked up imports it, and each attribute read is
    kept so later reads cost what a module attribute costs."""

    def __init__(self, name: str) -> None:
        self.__dict__["_name"] = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


cv2: Any = LazyModule("cv2")
