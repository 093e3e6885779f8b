"""YOLO-seg label files, the one place that reads and writes their lines: ``class x1 y1 x2 y2 ... xn yn``, with
coordinates divided by the image's width and height.

One validity rule, applied strictly on write and tolerantly on read:

* a line is a class id (an integer >= 0) and a polygon of at least 3 points (an even number of values, 6 or more);
* coordinates lie in [0, 1]. Reading accepts up to :data:`TOLERANCE` outside (rounding in other tools' exports)
  and clips; writing refuses anything outside, and fewer than 3 distinct points (at the written precision);
* 4 values are a box (a detection label, not a segmentation one): read as a :class:`LabelProblem` of kind
  ``box`` so a checker can warn about it rather than fail.

Reading never raises on a bad line: :func:`parse_line` raises :class:`LabelProblem` with the reason, and
:func:`read_labels` collects the problems per line so each caller decides (skip the file, report it...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: How far outside [0, 1] a coordinate may be on read (then clipped).
TOLERANCE = 0.01
#: Decimals written per coordinate.
DECIMALS = 6


@dataclass
class LabelLine:
    """One valid line: ``class_id`` and ``polygon`` (K, 2) float64 in [0, 1], K >= 3."""

    class_id: int
    polygon: np.ndarray


class LabelProblem(ValueError):
    """Why a line is not a valid YOLO-seg polygon; ``kind`` is ``error`` or ``box`` (a detection line)."""

    def __init__(self, reason: str, kind: str = "error"):
        super().__init__(reason)
        self.reason, self.kind = reason, kind


@dataclass
class LabelFile:
    """A label file read tolerantly: its valid lines and, per line number, the problems of the others."""

    lines: list[tuple[int, LabelLine]] = field(default_factory=list)
    problems: list[tuple[int, LabelProblem]] = field(default_factory=list)


def label_path(image: Path) -> Path:
    """Where Ultralytics looks for an image's labels: the last ``images`` folder of the path becomes ``labels``,
    the suffix ``.txt``."""
    parts = list(Path(image).parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_line(text: str, classes: int | None = None) -> LabelLine | None:
    """One label line -> :class:`LabelLine`; None for a blank line; :class:`LabelProblem` when invalid.

    ``classes``: the number of classes, when known (a larger class id is invalid).
    """
    parts = text.split()
    if not parts:
        return None
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise LabelProblem("not numbers") from None
    cls, coords = values[0], np.array(values[1:], np.float64)
    if cls != int(cls) or cls < 0 or (classes is not None and cls >= classes):
        raise LabelProblem(f"class {parts[0]} is not a class id" + (f" (0..{classes - 1})" if classes else ""))
    if len(coords) == 4:
        raise LabelProblem("box-only line (detection label, no polygon)", kind="box")
    if len(coords) < 6 or len(coords) % 2:
        raise LabelProblem("polygon with fewer than 3 points or an odd number of values")
    if not np.isfinite(coords).all() or coords.min() < -TOLERANCE or coords.max() > 1 + TOLERANCE:
        raise LabelProblem(f"coordinates outside [0, 1] ({coords.min():.4g}..{coords.max():.4g})")
    return LabelLine(int(cls), np.clip(coords.reshape(-1, 2), 0.0, 1.0))


def read_labels(path: Path, classes: int | None = None) -> LabelFile:
    """Every line of a label file, parsed tolerantly (see :func:`parse_line`); OSError when unreadable."""
    out = LabelFile()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), 1):
        try:
            parsed = parse_line(line, classes)
        except LabelProblem as e:
            out.problems.append((n, e))
            continue
        if parsed is not None:
            out.lines.append((n, parsed))
    return out


def distinct_points(polygon: np.ndarray) -> int:
    """Points of a normalised polygon that stay distinct once written with :data:`DECIMALS` decimals."""
    return len(set(map(tuple, np.round(np.asarray(polygon, np.float64).reshape(-1, 2), DECIMALS).tolist())))


def is_writable(polygon: np.ndarray) -> bool:
    """True when :func:`format_line` accepts ``polygon``: finite, in [0, 1], at least 3 distinct points."""
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    return bool(len(poly) and np.isfinite(poly).all() and poly.min() >= 0 and poly.max() <= 1) and (
        distinct_points(poly) >= 3
    )


def format_line(class_id: int, polygon: np.ndarray) -> str:
    """One label line, checked strictly: ``class x1 y1 ...`` with :data:`DECIMALS` decimals.

    Raises ValueError for a negative class, or a polygon that :func:`is_writable` refuses.
    """
    if int(class_id) < 0:
        raise ValueError(f"class id {class_id} is negative")
    if not is_writable(polygon):
        raise ValueError("a label polygon needs 3 or more distinct points with coordinates in [0, 1]")
    coords = " ".join(f"{v:.{DECIMALS}f}" for v in np.asarray(polygon, np.float64).reshape(-1))
    return f"{int(class_id)} {coords}"


def format_lines(lines: list[tuple[int, np.ndarray]]) -> str:
    """A label file's text: one :func:`format_line` per ``(class id, polygon)``, each ending in a newline."""
    return "".join(format_line(c, p) + "\n" for c, p in lines)
