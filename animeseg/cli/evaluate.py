"""`animeseg evaluate`."""

from __future__ import annotations

from animeseg.errors import AnimesegError


def evaluate() -> None:
    """(being written)"""
    raise AnimesegError("not available yet")
