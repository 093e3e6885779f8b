"""A character's motion from one frame to the next, and moving its soft mask by it: what
:class:`animeseg.stabilize.MaskStabilizer` carries a track's past by before blending it with the present.

Motions are 2x3 float64 similarity transforms in frame pixels (``x' = M @ [x, y, 1]``).
"""

from __future__ import annotations

import numpy as np

from animeseg._lazy import cv2

#: no motion
STILL = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

_LK = {"winSize": (15, 15), "maxLevel": 3}  # with the criteria, made on first use (cv2 is imported lazily)


def shift(dx: float, dy: float) -> np.ndarray:
    """The motion that translates by ``dx, dy``."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def centre_shift(prev_mask: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The translation between the centres of two (H, W) bool masks: a guess at the motion that needs no
    texture and has no range limit, but that a partial occlusion (the mask changing shape) throws off."""
    d = centre(mask) - centre(prev_mask)
    return shift(d[0], d[1])


def estimate_motion(
    prev_gray: np.ndarray,
    gray: np.ndarray,
    prev_mask: np.ndarray,
    mask: np.ndarray | None,
    fallback: np.ndarray | None = None,
) -> np.ndarray:
    """The 2x3 similarity transform taking a character from the previous frame to this one.

    The guess is the shift of the centre of ``prev_mask`` to that of ``mask`` (H, W) bool, or ``fallback``
    (the track's last motion: constant velocity) without a current mask. Corners inside ``prev_mask`` (eroded,
    so none sits on the outline where the background moves differently) are followed by pyramidal Lucas-Kanade
    optical flow on the grey frames (H, W) uint8 *starting from the guess* (so a character that moved 60 px is
    followed as well as one that moved 2), and kept when the flow back, started from the guess undone, returns
    within a pixel. A RANSAC similarity fit of at least 8 of them is the answer when its scale is within
    0.8-1.25 and its rotation within 10 degrees, else their median shift (3 or more), else the guess.
    """
    guess = centre_shift(prev_mask, mask) if mask is not None else (STILL if fallback is None else fallback)
    if not prev_mask.any():
        return guess
    x1, y1, x2, y2 = bounds(prev_mask)
    inner = cv2.erode(prev_mask[y1:y2, x1:x2].astype(np.uint8), np.ones((5, 5), np.uint8))
    if not inner.any():
        return guess
    corners = cv2.goodFeaturesToTrack(
        np.ascontiguousarray(prev_gray[y1:y2, x1:x2]), maxCorners=80, qualityLevel=0.01, minDistance=4, mask=inner
    )
    if corners is None or len(corners) < 3:
        return guess
    p0 = (corners.reshape(-1, 2) + np.array([x1, y1], np.float32)).astype(np.float32)
    start = (p0 @ guess[:, :2].T.astype(np.float32) + guess[:, 2].astype(np.float32)).astype(np.float32)
    lk = {**_LK, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
    lk["flags"] = cv2.OPTFLOW_USE_INITIAL_FLOW
    p1, ok1, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, p0, start, **lk)
    undone = (p1 - (start - p0)).astype(np.float32)  # the guess taken back off: the backward flow's own start
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray, prev_gray, p1, undone, **lk)
    good = (ok1.ravel() == 1) & (ok2.ravel() == 1) & (np.linalg.norm(back - p0, axis=1) < 1.0)
    p0, p1 = p0[good], p1[good]
    if len(p0) >= 8:
        fit, inliers = cv2.estimateAffinePartial2D(p0, p1, method=cv2.RANSAC, ransacReprojThreshold=1.5)
        if fit is not None and inliers is not None and int(inliers.sum()) >= 8:
            scale = float(np.hypot(fit[0, 0], fit[1, 0]))
            angle = float(np.degrees(np.arctan2(fit[1, 0], fit[0, 0])))
            if 0.8 <= scale <= 1.25 and abs(angle) <= 10:
                return fit.astype(np.float64)
    if len(p0) >= 3:
        dx, dy = np.median(p1 - p0, axis=0)
        return shift(float(dx), float(dy))
    return guess


def warp(soft: np.ndarray, x: int, y: int, motion: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    """``soft`` (h, w) float32, a crop whose top-left corner is at ``x, y`` in the frame, moved by ``motion``
    onto the frame's crop ``x1, y1, x2, y2`` (zero where nothing lands)."""
    x1, y1, x2, y2 = crop
    to_frame = np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], np.float64)
    from_frame = np.array([[1, 0, -x1], [0, 1, -y1], [0, 0, 1]], np.float64)
    full = from_frame @ np.vstack([motion, [0, 0, 1]]) @ to_frame
    return cv2.warpAffine(soft, full[:2], (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderValue=0.0)


def bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``x1, y1, x2, y2`` (exclusive ends) of a non-empty (H, W) bool mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def centre(mask: np.ndarray) -> np.ndarray:
    """(x, y) centre of a mask's pixels (0, 0 for an empty one)."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    return np.array([m["m10"], m["m01"]]) / m["m00"] if m["m00"] else np.zeros(2)
