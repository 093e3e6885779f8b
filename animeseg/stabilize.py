"""Temporally stable masks along tracks: each track's mask made consistent with its previous frames.

A detector segments every frame alone, so a character's edges move by a pixel or two from frame to frame even
when the character does not, its upsampled low-resolution mask misses the drawing's outline by as much, and a
character it misses for a frame while another walks in front of it vanishes: a video cut out with those masks
shimmers and blinks. :class:`MaskStabilizer` keeps, per track, a soft mask and, on each new frame:

1. estimates the track's motion from its previous frame to this one (:func:`animeseg.motion.estimate_motion`):
   sparse optical flow of corners inside the previous mask, started from the shift of the mask's centre so that
   a character moving tens of pixels a frame is followed, fitted with a similarity transform (shift, rotation,
   scale); for a character not detected in this frame, from the track's last motion;
2. warps the previous soft mask by that motion, so it is where the character is now (no lag behind fast
   motion), and blends it with the current one, ``weight * current + (1 - weight) * warped``, in a band of
   ``band`` x the character's size around the current mask's edge (the shimmer is there; a limb that really
   moved is left to the current frame); when the flow's warp disagrees with the current mask, the centre's
   shift is tried before giving up on the past;
3. snaps the result to the frame's edges with a colour guided filter (radius ``snap`` x the frame's long side,
   about one cell of a YOLO mask) and thresholds it at 0.5;
4. never takes a pixel that another instance of this frame claims (no leaking into a neighbour at a crossing),
   and changes nothing outside the current box widened by the band and the filter.

With the refiner's alphas (``Instances.alphas``), the soft mask *is* the alpha: it is warped, blended and
snapped as above, the mask is its 0.5 level and the alpha reported is that soft mask with a steeper edge
(:data:`ALPHA_GAIN`), so cut-outs are as steady as masks and keep exactly what the masks keep.

A track seen for the first time, or after a gap, or whose warped past agrees with its current mask by less
than ``min_agreement`` IoU (a jump the motion estimate missed, a sudden change of pose) starts again from its
current mask (still snapped). A track that was in the previous frame but has no detection in this one (a
character the detector misses while it is partly hidden) is *carried*: its warped mask, less what the others
claim, is reported for up to ``carry`` frames while at least ``keep`` of its last area remains, with its last
class and score and the refine record ``{"method": "carried", ...}``. A detector that loses a character behind
another often merges what shows of it into the front one's mask; so where a missing track's moved mask lies,
a detected track keeps only the pixels its own moved past explains, and the rest goes to the carried track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from animeseg._lazy import cv2
from animeseg.instances import Instances
from animeseg.matte import guided_filter
from animeseg.motion import STILL, bounds, centre_shift, estimate_motion, warp


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
        with stabilised masks (and ``alphas``, when they have them), then the carried tracks, all in descending
        score order."""
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
        alphas = None if instances.alphas is None else instances.alphas.copy()
        # the tracks of the previous frame missing from this one, moved to where they are now: a detector that
        # merges a character hidden behind another into the front one's mask gives those pixels back to it
        missing: dict[int, tuple[_TrackState, np.ndarray, tuple[int, int, int, int], np.ndarray]] = {}
        behind = np.zeros(gray.shape, bool)
        for track in sorted(set(self._tracks) - {int(t) for t in ids}):
            state = self._recent(track)
            moved = None if state is None or state.carried >= self.carry else self._moved(gray, snap, state)
            if moved is not None:
                missing[track] = (state, *moved)
                x1, y1, x2, y2 = moved[1]
                behind[y1:y2, x1:x2] |= moved[2] >= 0.5
        tracks: dict[int, _TrackState] = {}
        for i, track in enumerate(int(t) for t in ids):
            if track < 0:
                continue
            state = self._recent(track)
            others = (claimed - masks[i]) > 0  # pixels another instance of this frame claims
            alpha = None if alphas is None else alphas[i]
            soft, x, y, motion = self._track(
                gray, rgb, snap, state, out[i], alpha, instances.boxes[i], others, behind if missing else None
            )
            score, cls = float(instances.scores[i]), int(instances.classes[i])
            tracks[track] = _TrackState(soft, x, y, out[i], self._frame, motion, score, cls)

        extra: list[tuple[int, _TrackState]] = []
        taken = out.any(axis=0) if n else np.zeros(gray.shape, bool)
        for track, (state, motion, crop, soft) in missing.items():
            carried = self._carry(rgb, snap, state, motion, crop, soft, taken)
            if carried is not None:
                tracks[track] = carried
                extra.append((track, carried))
        self._tracks = tracks
        self._gray = gray
        self._frame += 1

        result = Instances(
            instances.boxes, instances.scores, instances.classes, out, dict(instances.names),
            list(instances.refine), ids.copy(), alphas,
        )  # fmt: skip
        if not extra:
            return result
        added = Instances(
            np.array([_box(s.mask) for _, s in extra], np.float32),
            [s.score for _, s in extra],
            [s.cls for _, s in extra],
            np.array([s.mask for _, s in extra]),
            dict(instances.names),
            [_carried_record(s.carried) for _, s in extra],
            [t for t, _ in extra],
            None if alphas is None else np.array([_alpha(s) for _, s in extra]),
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
        mask: np.ndarray,
        alpha: np.ndarray | None,
        box: np.ndarray,
        others: np.ndarray,
        behind: np.ndarray | None,
    ) -> tuple[np.ndarray, int, int, np.ndarray]:
        """Stabilises one detected track's ``mask`` (H, W) bool and ``alpha`` (H, W) uint8 or None in place;
        returns its new soft state (crop and origin) and its motion. ``behind`` (H, W) bool: where the tracks
        missing from this frame's detections are now."""
        h, w = mask.shape
        area = int(mask.sum())
        if area == 0:
            return np.zeros((1, 1), np.float32), 0, 0, STILL
        r = max(2, round(self.band * np.sqrt(area)))
        # the crop this frame works on: the current box and mask, widened by the band and the filter
        pad = r + 2 * snap + 1
        mx1, my1, mx2, my2 = bounds(mask)
        x1 = max(int(min(box[0], mx1)) - pad, 0)
        y1 = max(int(min(box[1], my1)) - pad, 0)
        x2 = min(int(np.ceil(max(box[2], mx2))) + pad, w)
        y2 = min(int(np.ceil(max(box[3], my2))) + pad, h)
        crop = (x1, y1, x2, y2)
        cur = mask[y1:y2, x1:x2].copy()
        free = ~others[y1:y2, x1:x2]
        # the refiner's alpha, when there is one, is the soft mask (its 0.5 level is the mask): one signal warped,
        # blended and snapped, so the cut-outs' edges are as steady as the masks'
        mine = cur.astype(np.float32) if alpha is None else alpha[y1:y2, x1:x2] * np.float32(1 / 255)
        soft = mine
        motion = STILL
        if state is not None:
            motion, warped = self._past(gray, state, mask, cur, crop)
            if warped is not None and behind is not None:
                # what this track's own past does not explain but a missing track's does: not this track's
                lost = behind[y1:y2, x1:x2] & cur & (warped < 0.5)
                cur &= ~lost
                free &= ~lost
                mine = np.where(lost, np.float32(0), mine)
            if warped is not None:
                kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
                c8 = cur.astype(np.uint8)
                edge = (cv2.dilate(c8, kernel) > 0) & ~(cv2.erode(c8, kernel, borderType=cv2.BORDER_REPLICATE) > 0)
                soft = np.where(edge & free, self.weight * soft + (1.0 - self.weight) * warped, soft)
        if snap:
            soft = _snapped(rgb, crop, soft, snap, self.eps)
        soft = np.where(free, soft, mine).astype(np.float32)  # never into pixels another instance claims
        mask[y1:y2, x1:x2] = np.where(free, soft >= 0.5, cur)
        if alpha is not None:
            alpha[y1:y2, x1:x2] = _alpha_of(soft, mask[y1:y2, x1:x2])
        return soft, x1, y1, motion

    def _past(
        self, gray: np.ndarray, state: _TrackState, mask: np.ndarray, cur: np.ndarray, crop: tuple[int, int, int, int]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The track's motion since the previous frame and its past soft mask moved by it onto ``crop`` (None when
        it agrees with the current mask by less than ``min_agreement`` IoU): the optical-flow estimate, or when
        that does not agree (flow lost on a blurred or hidden character), the shift of the mask's centre."""
        guess = centre_shift(state.mask, mask)
        motion = estimate_motion(self._gray, gray, state.mask, guess)
        for candidate in (motion, guess) if motion is not guess else (motion,):
            warped = warp(state.soft, state.x, state.y, candidate, crop)
            past = warped >= 0.5
            union = np.logical_or(past, cur).sum()
            if union and np.logical_and(past, cur).sum() / union >= self.min_agreement:
                return candidate, warped
        return motion, None

    def _moved(
        self, gray: np.ndarray, snap: int, state: _TrackState
    ) -> tuple[np.ndarray, tuple[int, int, int, int], np.ndarray] | None:
        """A track missing from this frame's detections moved by its motion (estimated from the frames, else its
        last): the motion, the crop it lands on and its soft mask there; None when it left the frame."""
        h, w = gray.shape
        motion = estimate_motion(self._gray, gray, state.mask, state.motion)
        sh, sw = state.soft.shape
        corners = np.array([[state.x, state.y, 1], [state.x + sw, state.y, 1], [state.x, state.y + sh, 1],
                            [state.x + sw, state.y + sh, 1]], np.float64) @ motion.T  # fmt: skip
        pad = 2 * snap + 1
        x1, y1 = max(int(corners[:, 0].min()) - pad, 0), max(int(corners[:, 1].min()) - pad, 0)
        x2, y2 = min(int(np.ceil(corners[:, 0].max())) + pad, w), min(int(np.ceil(corners[:, 1].max())) + pad, h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return None
        return motion, (x1, y1, x2, y2), warp(state.soft, state.x, state.y, motion, (x1, y1, x2, y2))

    def _carry(
        self,
        rgb: np.ndarray,
        snap: int,
        state: _TrackState,
        motion: np.ndarray,
        crop: tuple[int, int, int, int],
        soft: np.ndarray,
        taken: np.ndarray,
    ) -> _TrackState | None:
        """The state of a track carried through a frame without its detection (moved by :meth:`_moved`), or
        None when too little of it would remain outside ``taken`` (H, W) bool, what the detections kept."""
        h, w = taken.shape
        x1, y1, x2, y2 = crop
        if snap:
            soft = _snapped(rgb, (x1, y1, x2, y2), soft, snap, self.eps)
        soft = np.where(taken[y1:y2, x1:x2], 0.0, soft).astype(np.float32)
        mask = np.zeros((h, w), bool)
        mask[y1:y2, x1:x2] = soft >= 0.5
        if mask.sum() < self.keep * max(int(state.mask.sum()), 1):
            return None
        return _TrackState(soft, x1, y1, mask, self._frame, motion, state.score, state.cls, state.carried + 1)


def _snapped(rgb: np.ndarray, crop: tuple[int, int, int, int], soft: np.ndarray, snap: int, eps: float) -> np.ndarray:
    """``soft`` (h, w) on the frame's ``crop`` snapped to the frame's colour edges (the guided filter of radius
    ``snap``), in [0, 1]. The filter's coefficients are found at 1/``snap // 3`` of the resolution (a radius of
    3 px or more there): 3x faster at 640x360, and the 0.5 level moves by a pixel at most in a few places."""
    x1, y1, x2, y2 = crop
    guide = rgb[y1:y2, x1:x2].astype(np.float32) / 255.0
    return np.clip(guided_filter(guide, soft, snap, eps, subsample=max(1, snap // 3)), 0.0, 1.0)


#: how much steeper a cut-out's alpha edge is than the snapped soft mask's: the guided filter spreads an edge over
#: about its radius (6 px at 640x360) with faint tails; 3x steeper is a ramp of 2-3 px, like the refiner's
#: (2-4 on the tuning clips gave the same temporal error within 0.002)
ALPHA_GAIN = 3.0


def _alpha_of(soft: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The alpha (h, w) uint8 of a stabilised soft mask (h, w) float32, with its 0.5 level on the edge of ``mask``
    (h, w) bool (at least 128 inside, at most 127 outside, as the refiner's alphas are)."""
    alpha = np.round(np.clip((soft - 0.5) * ALPHA_GAIN + 0.5, 0.0, 1.0) * 255)
    return np.where(mask, np.maximum(alpha, 128), np.minimum(alpha, 127)).astype(np.uint8)


def _alpha(state: _TrackState) -> np.ndarray:
    """A carried track's alpha (H, W) uint8 in the frame."""
    h, w = state.mask.shape
    sh, sw = state.soft.shape
    out = np.zeros((h, w), np.uint8)
    crop = (slice(state.y, state.y + sh), slice(state.x, state.x + sw))
    out[crop] = _alpha_of(state.soft, state.mask[crop])
    return out


def _carried_record(frames: int) -> dict:
    return {
        "method": "carried",
        "refined": False,
        "reason": f"not detected in this frame; the track's mask carried over by its motion ({frames} frame(s))",
    }


def _concat(a: Instances, b: Instances) -> Instances:
    ids = np.concatenate([a.track_ids, b.track_ids]) if a.track_ids is not None else None
    alphas = np.concatenate([a.alphas, b.alphas]) if a.alphas is not None and b.alphas is not None else None
    return Instances(
        np.concatenate([a.boxes, b.boxes]), np.concatenate([a.scores, b.scores]),
        np.concatenate([a.classes, b.classes]), np.concatenate([a.masks, b.masks]), dict(a.names),
        a.refine + b.refine, ids, alphas,
    )  # fmt: skip


def _box(mask: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = bounds(mask)
    return [float(x1), float(y1), float(x2), float(y2)]
