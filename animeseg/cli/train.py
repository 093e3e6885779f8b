"""`animeseg train`."""

from __future__ import annotations

from animeseg.errors import AnimesegError


def train() -> None:
    """(being written)"""
    raise AnimesegError("not available yet")
