"""Temporally stable masks along tracks: each track's mask made consistent with its previous frames.

A detector segments every frame alone, so a character's edges move by a pixel or two from frame to frame even
when the character does not, its upsampled low-resolution mask misses the drawing's outline by as much, and a
character it misses for a frame while another walks in front of it vanishes: a video cut out with those masks
shimmers and blinks. :class:`MaskStabilizer` keeps, per track, a soft mask and, on each new frame:

1. estimates the track's motion from its previous frame to this one: sparse optical flow (Lucas-Kanade, checked
   forwards and backwards) of corners inside the previous mask, fitted with a similarity transform (shift,
   rotation, scale; RANSAC); with too few corners, their median shift; with none, the shift of the mask's
   centre (of the track's last motion for a character not detected in this frame);
2. warps the previous soft mask by that motion, so it is where the character is now (no lag behind fast
   motion), and blends it with the current mask, ``weight * current + (1 - weight) * warped``, in a band of
   ``band`` x the character's size around the current mask's edge (the shimmer is there; a limb that really
   moved is left to the current frame);
3. snaps the result to the frame's edges with a colour guided filter (radius ``snap`` x the frame's long side,
   about one cell of a YOLO mask) and thresholds it at 0.5;
4. never takes a pixel that another instance of this frame claims (no leaking into a neighbour at a crossing),
   and changes nothing outside the current box widened by the band and the filter.

A track seen for the first time, or after a gap, or whose warped past agrees with its current mask by less
than ``min_agreement`` IoU (a jump the motion estimate missed, a sudden change of pose) starts again from its
current mask (still snapped). A track that was in the previous frame but has no detection in this one (a
character the detector misses while it is partly hidden) is *carried*: its warped mask, less what the others
claim, is reported for up to ``carry`` frames while at least ``keep`` of its last area remains, with its last
class and score and the refine record ``{"method": "carried", ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from animeseg._lazy import cv2
from animeseg.instances import Instances
from animeseg.matte import guided_filter


@dataclass
class _TrackState:
    soft: np.ndarray  # (h, w) float32, the track's soft mask on the crop at (x, y)
    x: int
    y: int
    mask: np.ndarray  # (H, W) bool, its output mask in the frame it was last seen
    frame: int
    motion: np.ndarray  # (2, 3) its last frame-to-frame motion
    score: float
    cls: int
    carried: int = 0  # frames in a row it has been carried without a detection


_STILL = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class MaskStabilizer:
    """Temporal smoothing of the tracked masks of one sequence (call :meth:`update` on its frames in order).

    Args:
        weight: share of the current frame in the blend with the warped past (the rest is the past).
        band: half-width of the band around the current mask's edge where the past may change it, as a
            fraction of the square root of the mask's area (at least 2 pixels).
        min_agreement: IoU between the warped past and the current mask below which a track starts again.
        snap: radius of the guided filter that snaps masks to the frame's edges, as a fraction of the frame's
            long side (at least 2 pixels; 1/100: 6 px at 640x360, 19 px at 1920x1080); None: no snapping.
        eps: the guided filter's regularisation (how strong a colour edge must be to be followed).
        carry: most frames in a row a track missing from the detections is carried (0: never).
        keep: least share of its last area a carried mask must keep after the others' masks are taken away.
    """

    def __init__(
        self,
        weight: float = 0.35,
        band: float = 0.03,
        min_agreement: float = 0.6,
        snap: float | None = 1 / 100,
        eps: float = 1e-3,
        carry: int = 3,
        keep: float = 0.25,
    ) -> None:
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.weight = float(weight)
        self.band = float(band)
        self.min_agreement = float(min_agreement)
        self.snap = snap
        self.eps = float(eps)
        self.carry = int(carry)
        self.keep = float(keep)
        self._tracks: dict[int, _TrackState] = {}
        self._gray: np.ndarray | None = None
        self._frame = 0

    def update(self, image: np.ndarray, instances: Instances) -> Instances:
        """This frame's ``instances`` (tracked: ``track_ids``; -1 for none) of the RGB ``image`` (H, W, 3) uint8
        with stabilised masks, then the carried tracks, all in descending score order."""
        rgb = np.ascontiguousarray(image[..., :3])
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if self._gray is not None and self._gray.shape != gray.shape:
            self._tracks.clear()  # a stream that changes size: nothing to carry over
            self._gray = None
        snap = max(2, round(self.snap * max(gray.shape))) if self.snap else 0
        n = len(instances)
        masks = instances.masks
        ids = instances.track_ids if instances.track_ids is not None else np.full(n, -1, np.int64)
        claimed = masks.sum(axis=0, dtype=np.int32)
        out = masks.copy()
        tracks: dict[int, _TrackState] = {}
        for i, track in enumerate(int(t) for t in ids):
            if track < 0:
                continue
            state = self._recent(track)
            others = (claimed - masks[i]) > 0  # pixels another instance of this frame claims
            out[i], soft, x, y, motion = self._track(gray, rgb, snap, state, masks[i], instances.boxes[i], others)
            score, cls = float(instances.scores[i]), int(instances.classes[i])
            tracks[track] = _TrackState(soft, x, y, out[i], self._frame, motion, score, cls)

        extra: list[tuple[int, np.ndarray, _TrackState]] = []
        taken = out.any(axis=0) if n else np.zeros(gray.shape, bool)
        for track in sorted(set(self._tracks) - set(tracks)):
            state = self._recent(track)
            if state is None or state.carried >= self.carry:
                continue
            carried = self._carry(gray, rgb, snap, state, taken)
            if carried is not None:
                tracks[track] = carried
                extra.append((track, carried.mask, carried))
        self._tracks = tracks
        self._gray = gray
        self._frame += 1

        result = Instances(
            instances.boxes, instances.scores, instances.classes, out, dict(instances.names),
            list(instances.refine), ids.copy(),
        )  # fmt: skip
        if not extra:
            return result
        added = Instances(
            np.array([_box(m) for _, m, _ in extra], np.float32),
            [s.score for _, _, s in extra],
            [s.cls for _, _, s in extra],
            np.array([m for _, m, _ in extra]),
            dict(instances.names),
            [_carried_record(s.carried) for _, _, s in extra],
            [t for t, _, _ in extra],
        )
        both = _concat(result, added)
        return both[np.argsort(-both.scores, kind="stable")]

    def _recent(self, track: int) -> _TrackState | None:
        """The track's state if it was in the previous frame (after a gap it starts again)."""
        state = self._tracks.get(track)
        return state if state is not None and state.frame == self._frame - 1 and self._gray is not None else None

    def _track(
        self,
        gray: np.ndarray,
        rgb: np.ndarray,
        snap: int,
        state: _TrackState | None,
        current: np.ndarray,
        box: np.ndarray,
        others: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray]:
        """The stabilised mask of one detected track, its new soft state (crop and origin) and its motion."""
        h, w = current.shape
        area = int(current.sum())
        if area == 0:
            return current, np.zeros((1, 1), np.float32), 0, 0, _STILL
        r = max(2, round(self.band * np.sqrt(area)))
        # the crop this frame works on: the current box and mask, widened by the band and the filter
        pad = r + 2 * snap + 1
        mx1, my1, mx2, my2 = _bounds(current)
        x1 = max(int(min(box[0], mx1)) - pad, 0)
        y1 = max(int(min(box[1], my1)) - pad, 0)
        x2 = min(int(np.ceil(max(box[2], mx2))) + pad, w)
        y2 = min(int(np.ceil(max(box[3], my2))) + pad, h)
        cur = current[y1:y2, x1:x2]
        free = ~others[y1:y2, x1:x2]
        soft = cur.astype(np.float32)
        motion = _STILL
        if state is not None:
            motion = estimate_motion(self._gray, gray, state.mask, current)
            warped = _warp(state, motion, x1, y1, x2, y2)
            past = warped >= 0.5
            union = np.logical_or(past, cur).sum()
            if union and np.logical_and(past, cur).sum() / union >= self.min_agreement:
                kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
                c8 = cur.astype(np.uint8)
                edge = (cv2.dilate(c8, kernel) > 0) & ~(cv2.erode(c8, kernel, borderType=cv2.BORDER_REPLICATE) > 0)
                soft = np.where(edge & free, self.weight * soft + (1.0 - self.weight) * warped, soft)
        if snap:
            soft = np.clip(guided_filter(_guide(rgb, x1, y1, x2, y2), soft, snap, self.eps), 0.0, 1.0)
        soft = np.where(free, soft, cur).astype(np.float32)  # never into pixels another instance claims
        out = current.copy()
        out[y1:y2, x1:x2] = soft >= 0.5
        return out, soft, x1, y1, motion

    def _carry(
        self, gray: np.ndarray, rgb: np.ndarray, snap: int, state: _TrackState, taken: np.ndarray
    ) -> _TrackState | None:
        """The state of a track carried through a frame without its detection, or None when too little of it
        would remain (it left the frame, or is hidden)."""
        h, w = gray.shape
        motion = estimate_motion(self._gray, gray, state.mask, None, fallback=state.motion)
        sh, sw = state.soft.shape
        corners = np.array([[state.x, state.y, 1], [state.x + sw, state.y, 1], [state.x, state.y + sh, 1],
                            [state.x + sw, state.y + sh, 1]], np.float64) @ motion.T  # fmt: skip
        pad = 2 * snap + 1
        x1, y1 = max(int(corners[:, 0].min()) - pad, 0), max(int(corners[:, 1].min()) - pad, 0)
        x2, y2 = min(int(np.ceil(corners[:, 0].max())) + pad, w), min(int(np.ceil(corners[:, 1].max())) + pad, h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return None
        soft = _warp(state, motion, x1, y1, x2, y2)
        if snap:
            soft = np.clip(guided_filter(_guide(rgb, x1, y1, x2, y2), soft, snap, self.eps), 0.0, 1.0)
        soft = np.where(taken[y1:y2, x1:x2], 0.0, soft).astype(np.float32)
        mask = np.zeros((h, w), bool)
        mask[y1:y2, x1:x2] = soft >= 0.5
        if mask.sum() < self.keep * max(int(state.mask.sum()), 1):
            return None
        return _TrackState(soft, x1, y1, mask, self._frame, motion, state.score, state.cls, state.carried + 1)


def _guide(rgb: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    return rgb[y1:y2, x1:x2].astype(np.float32) / 255.0


def _warp(state: _TrackState, motion: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """The track's soft mask moved by ``motion`` (frame coordinates) onto the crop ``x1, y1, x2, y2``."""
    to_frame = np.array([[1, 0, state.x], [0, 1, state.y], [0, 0, 1]], np.float64)
    from_frame = np.array([[1, 0, -x1], [0, 1, -y1], [0, 0, 1]], np.float64)
    full = from_frame @ np.vstack([motion, [0, 0, 1]]) @ to_frame
    return cv2.warpAffine(state.soft, full[:2], (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderValue=0.0)


def _carried_record(frames: int) -> dict:
    return {
        "method": "carried",
        "refined": False,
        "reason": f"not detected in this frame; the track's mask carried over by its motion ({frames} frame(s))",
    }


def _concat(a: Instances, b: Instances) -> Instances:
    ids = np.concatenate([a.track_ids, b.track_ids]) if a.track_ids is not None else None
    return Instances(
        np.concatenate([a.boxes, b.boxes]), np.concatenate([a.scores, b.scores]),
        np.concatenate([a.classes, b.classes]), np.concatenate([a.masks, b.masks]), dict(a.names),
        a.refine + b.refine, ids,
    )  # fmt: skip


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _box(mask: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = _bounds(mask)
    return [float(x1), float(y1), float(x2), float(y2)]


def estimate_motion(
    prev_gray: np.ndarray,
    gray: np.ndarray,
    prev_mask: np.ndarray,
    mask: np.ndarray | None,
    fallback: np.ndarray | None = None,
) -> np.ndarray:
    """The 2x3 similarity transform (float64) taking a character from the previous frame to this one.

    Corners inside ``prev_mask`` (eroded, so none sits on the outline where the background moves differently)
    are followed by pyramidal Lucas-Kanade optical flow on the grey frames (H, W) uint8 and kept when the
    backward flow returns within a pixel; a RANSAC similarity fit of at least 8 of them is the answer when its
    scale is within 0.8-1.25 and its rotation within 10 degrees, else their median shift (3 or more), else the
    shift between the centres of ``prev_mask`` and ``mask``, or ``fallback`` without a current mask.
    """
    if mask is not None:
        shift = _centre(mask) - _centre(prev_mask)
        fallback = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float64)
    elif fallback is None:
        fallback = _STILL
    if not prev_mask.any():
        return fallback
    x1, y1, x2, y2 = _bounds(prev_mask)
    inner = cv2.erode(prev_mask[y1:y2, x1:x2].astype(np.uint8), np.ones((5, 5), np.uint8))
    if not inner.any():
        return fallback
    corners = cv2.goodFeaturesToTrack(
        np.ascontiguousarray(prev_gray[y1:y2, x1:x2]), maxCorners=80, qualityLevel=0.01, minDistance=4, mask=inner
    )
    if corners is None or len(corners) < 3:
        return fallback
    p0 = (corners.reshape(-1, 2) + np.array([x1, y1], np.float32)).astype(np.float32)
    lk = {"winSize": (15, 15), "maxLevel": 3, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
    p1, ok1, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, p0, None, **lk)
    back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray, prev_gray, p1, None, **lk)
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
        return np.array([[1, 0, dx], [0, 1, dy]], np.float64)
    return fallback


def _centre(mask: np.ndarray) -> np.ndarray:
    """(x, y) centre of a mask's pixels (0, 0 for an empty one)."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    return np.array([m["m10"], m["m01"]]) / m["m00"] if m["m00"] else np.zeros(2)
