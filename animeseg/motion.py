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
#: pixels around a character's box the optical flow sees: two flow windows, for the guess's error and context
_MARGIN = 30


def shift(dx: float, dy: float) -> np.ndarray:
    """The motion that translates by ``dx, dy``."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def centre_shift(prev_mask: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The translation between the centres of two (H, W) bool masks: a guess at the motion that needs no
    texture and has no range limit, but that a partial occlusion (the mask changing shape) throws off."""
    d = centre(mask) - centre(prev_mask)
    return shift(d[0], d[1])


def estimate_motion(prev_gray: np.ndarray, gray: np.ndarray, prev_mask: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform taking a character, ``prev_mask`` (H, W) bool in the previous frame, to this
    one, given a ``guess`` at it (the shift of its mask's centre, or its last motion when it has no mask now).

    Corners inside ``prev_mask`` (eroded, so none sits on the outline where the background moves differently)
    are followed by pyramidal Lucas-Kanade optical flow on the grey frames (H, W) uint8 *starting from the
    guess* (so a character that moved 100 px is followed as well as one that moved 2), and kept when the flow
    back, started from the guess undone, returns within a pixel. A RANSAC similarity fit of at least 8 of them
    is the answer when its scale is within 0.8-1.25 and its rotation within 10 degrees, else their median shift
    (3 or more), else the guess.
    """
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
    # the flow runs on the character's box and that box moved by the guess, widened by _MARGIN for what the
    # guess misses (the same crop of both frames, as the flow needs): the frames' other pixels add nothing
    mx1, my1, mx2, my2 = _moved_box((x1, y1, x2, y2), guess)
    h, w = gray.shape
    cx1, cy1 = max(min(x1, mx1) - _MARGIN, 0), max(min(y1, my1) - _MARGIN, 0)
    cx2, cy2 = min(max(x2, mx2) + _MARGIN, w), min(max(y2, my2) + _MARGIN, h)
    origin = np.array([cx1, cy1], np.float32)
    prev_crop, crop = prev_gray[cy1:cy2, cx1:cx2], gray[cy1:cy2, cx1:cx2]
    lk = {**_LK, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
    lk["flags"] = cv2.OPTFLOW_USE_INITIAL_FLOW
    p1, ok1, _ = cv2.calcOpticalFlowPyrLK(prev_crop, crop, p0 - origin, start - origin, **lk)
    undone = (p1 - (start - p0)).astype(np.float32)  # the guess taken back off: the backward flow's own start
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(crop, prev_crop, p1, undone, **lk)
    p1, back = p1 + origin, back + origin
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


def _moved_box(box: tuple[int, int, int, int], motion: np.ndarray) -> tuple[int, int, int, int]:
    """The box around ``box`` (``x1, y1, x2, y2``) moved by ``motion``."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]], np.float64) @ motion.T
    lo, hi = np.floor(corners.min(axis=0)), np.ceil(corners.max(axis=0))
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


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
    if not mask.any():
        return np.zeros(2)
    x1, y1, x2, y2 = bounds(mask)  # moments of the mask's box only: a character is a small part of a frame
    m = cv2.moments(mask[y1:y2, x1:x2].astype(np.uint8), binaryImage=True)
    return np.array([m["m10"] / m["m00"] + x1, m["m01"] / m["m00"] + y1])
