"""Mask refiners: each turns YOLO's boxes (and masks) into candidate masks; fusion decides what to keep."""

from animeseg.refine.base import Candidates, Refiner

__all__ = ["Candidates", "Refiner"]
