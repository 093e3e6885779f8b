"""`animeseg predict`."""

from __future__ import annotations

from animeseg.errors import AnimesegError


def predict() -> None:
    """(being written)"""
    raise AnimesegError("not available yet")
