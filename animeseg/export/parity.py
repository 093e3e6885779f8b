"""Parity reports of ONNX exports: what was measured against PyTorch, the limits each precision must meet, and
the reference inputs the checks run on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.errors import AnimesegError

#: What each export must meet to pass its parity check. Keys: (model, precision) -> {metric: (op, limit)}.
#: fp32 must reproduce PyTorch; fp16 and int8 trade accuracy for size/speed, so their limits only catch a
#: broken export (a wrong graph gives IoU near 0), and their real cost is printed for the user to judge.
THRESHOLDS: dict[tuple[str, str], dict[str, tuple[str, float]]] = {
    ("detector", "fp32"): {"mask IoU (min)": (">=", 0.99), "score diff (max)": ("<=", 1e-3)},
    ("detector", "fp16"): {"mask IoU (mean)": (">=", 0.95), "score diff (max)": ("<=", 2e-2)},
    ("detector", "int8"): {"mask IoU (mean)": (">=", 0.80), "score diff (max)": ("<=", 0.1)},
    ("sam", "fp32"): {"mask IoU (min)": (">=", 0.99), "decoder logit diff (max)": ("<=", 1e-3)},
    ("sam", "int8"): {"mask IoU (mean)": (">=", 0.90)},
    ("maskrcnn", "fp32"): {
        "mask IoU (min)": (">=", 0.99),
        "score diff (max)": ("<=", 1e-3),
        "unmatched detections": ("<=", 0),
    },
}


@dataclass
class Parity:
    """Result of one parity check: measured metrics and the limits they are held to."""

    model: str  # "detector" (YOLO), "maskrcnn" or "sam"
    precision: str  # "fp32", "fp16" or "int8"
    path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    detail: str = ""  # what was compared, e.g. "4 boxes x 3 candidates on a 480x360 image"

    @property
    def limits(self) -> dict[str, tuple[str, float]]:
        return THRESHOLDS.get((self.model, self.precision), {})

    def failures(self) -> list[str]:
        """One text per metric outside its limit (empty when the check passed)."""
        bad = []
        for name, (op, limit) in self.limits.items():
            value = self.metrics.get(name, float("nan"))
            ok = value >= limit if op == ">=" else value <= limit
            if not ok:  # NaN fails too
                bad.append(f"{name} {value:.4g} (needs {op} {limit:g})")
        return bad

    @property
    def passed(self) -> bool:
        return not self.failures()

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(metric, value, limit, verdict) rows for a table."""
        rows = []
        for name, value in self.metrics.items():
            op_limit = self.limits.get(name)
            if op_limit is None:
                rows.append((name, _fmt(value), "", "info"))
                continue
            op, limit = op_limit
            ok = value >= limit if op == ">=" else value <= limit
            rows.append((name, _fmt(value), f"{op} {limit:g}", "pass" if ok else "FAIL"))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "passed": self.passed,
            "detail": self.detail,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "limits": {k: f"{op} {lim:g}" for k, (op, lim) in self.limits.items()},
        }


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4f}"
    return f"{value:.2e}"


def raise_if_failed(report: Parity) -> None:
    """A failed parity check is an error: the export does not reproduce the PyTorch model."""
    if not report.passed:
        raise AnimesegError(
            f"{report.path}: parity check failed for the {report.precision} {report.model} export: "
            + "; ".join(report.failures())
            + " (files kept for inspection; do not deploy them)"
        )


def sample_image(height: int = 360, width: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic synthetic anime-style scene and the boxes of its three figures plus the whole image.

    Flat colours with dark outlines on a gradient background, like cel-shaded art; non-square so the checks
    exercise SAM's padding. Returns the (H, W, 3) uint8 RGB image and (4, 4) float32 xyxy boxes.
    """
    import cv2

    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array([150, 190, 235], np.float32), np.array([240, 225, 200], np.float32)
    img = np.ascontiguousarray(np.broadcast_to(top + (bottom - top) * yy, (height, width, 3)).astype(np.uint8))
    boxes = []
    figures = [(0.22, 0.95, (230, 90, 120)), (0.52, 0.9, (90, 120, 210)), (0.8, 0.97, (250, 200, 80))]
    for cx_f, foot_f, colour in figures:
        cx, foot, s = int(cx_f * width), int(foot_f * height), height / 360
        head_c, head_r = (cx, int(foot - 230 * s)), int(34 * s)
        body = np.array(
            [[cx - 45 * s, foot], [cx - 28 * s, foot - 185 * s], [cx + 28 * s, foot - 185 * s], [cx + 45 * s, foot]],
            np.int32,
        )
        hair = np.array([[cx - 44 * s, head_c[1]], [cx, head_c[1] - 55 * s], [cx + 44 * s, head_c[1]]], np.int32)
        cv2.fillPoly(img, [body], colour)
        cv2.polylines(img, [body], True, (40, 30, 40), max(1, int(2 * s)))
        cv2.circle(img, head_c, head_r, (255, 225, 205), -1)
        cv2.circle(img, head_c, head_r, (40, 30, 40), max(1, int(2 * s)))
        cv2.fillPoly(img, [hair], tuple(int(c * 0.6) for c in colour))
        for dx in (-12, 12):
            cv2.circle(img, (int(cx + dx * s), int(head_c[1] + 4 * s)), max(1, int(5 * s)), (30, 60, 140), -1)
        x0, y0 = body[:, 0].min(), head_c[1] - 55 * s
        boxes.append([x0, y0, body[:, 0].max(), foot])
    boxes.append([0, 0, width, height])
    return img, np.clip(np.array(boxes, np.float32), 0, [width, height, width, height]).astype(np.float32)


def default_boxes(height: int, width: int) -> np.ndarray:
    """Boxes for a parity check on a user's image: the whole image, its centre and four overlapping quarters."""
    rel = [
        (0, 0, 1, 1),
        (0.25, 0.25, 0.75, 0.75),
        (0, 0, 0.6, 0.6),
        (0.4, 0, 1, 0.6),
        (0, 0.4, 0.6, 1),
        (0.4, 0.4, 1, 1),
    ]
    return (np.array(rel, np.float32) * np.array([width, height, width, height], np.float32)).astype(np.float32)


def mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU per mask of two (..., H, W) bool stacks (1.0 where both masks are empty)."""
    a, b = a.reshape(-1, a.shape[-2] * a.shape[-1]), b.reshape(-1, b.shape[-2] * b.shape[-1])
    inter = np.logical_and(a, b).sum(1)
    union = np.logical_or(a, b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
