"""Fusion: decide, per instance, whether a refiner's candidate mask replaces YOLO's, then settle overlaps.

The same rules for every refiner (SAM, GrabCut, ONNX SAM, or a new one):

1. **Pick.** Among an instance's K candidates, the one with the highest *agreement* (IoU with YOLO's mask)
   is chosen; exact ties go to the refiner's higher score. YOLO knows *which* character it found; a refiner
   knows *where the edges are*. The candidate most consistent with YOLO's instance is the refiner's view of that
   same instance, which is what we want (SAM's multimask output, for example, offers a whole character, a
   part, and a sub-part: agreement picks the whole).
2. **Accept or keep YOLO's mask.** The picked candidate replaces YOLO's mask only when every check passes:

   ============== ========================================================================= =========
   threshold      rejects a candidate when                                                  default
   ============== ========================================================================= =========
   min_agreement  IoU with YOLO's mask is below it (a different object, or noise)           0.6
   max_growth     its area is more than this times YOLO's (it leaked into the background)   1.5
   min_coverage   it covers less than this fraction of YOLO's mask (a part, not the whole)  0.75
   max_outside    more than this fraction of it lies outside YOLO's box grown by box_pad    0.15
   box_pad        how much (fraction of box width/height) the box is grown for that check   0.15
   min_score      the refiner's own score is below it (SAM's predicted IoU, say)             0.0
   ============== ========================================================================= =========

   An empty candidate is never accepted. A rejected instance keeps YOLO's mask, and its record says why.
3. **Settle overlaps.** A pixel claimed by several final masks goes to one instance: to the claimant whose own
   YOLO mask contains it, if exactly one does (the detector's word on *which* instance, which a refiner, looking at
   one box at a time, cannot know); otherwise to the claimant with the higher detection score. Duplicate
   detections of one character (NMS leaves some) thus do not split it between them: the more confident one keeps
   the whole character. An instance that would lose all its pixels keeps them (never dropped).
4. **Boxes** are recomputed from the final masks. Instances are never dropped, added or reordered.

Each instance's ``refine`` record: ``method`` (the refiner's name), ``refined`` (bool: the candidate was taken),
``candidate`` (index of the picked candidate, or None when there was none), ``candidate_score`` (the refiner's
score for it), ``agreement`` (its IoU with YOLO's mask), ``reason`` (short text: ``accepted``, or which check
failed), and ``contested`` (pixels this instance lost to another in step 3).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from animeseg.instances import Instances
from animeseg.refine.base import Candidates

DEFAULTS: dict[str, float] = {
    "min_agreement": 0.6,
    "max_growth": 1.5,
    "min_coverage": 0.75,
    "max_outside": 0.15,
    "box_pad": 0.15,
    "min_score": 0.0,
}


def _grown_box(box: np.ndarray, pad: float, h: int, w: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    px, py = pad * (x2 - x1), pad * (y2 - y1)
    return (
        int(max(0, np.floor(x1 - px))),
        int(max(0, np.floor(y1 - py))),
        int(min(w, np.ceil(x2 + px))),
        int(min(h, np.ceil(y2 + py))),
    )


def _extent(yolo: np.ndarray, cands: np.ndarray) -> tuple[int, int, int, int]:
    """``y1, y2, x1, x2`` bounding every pixel of ``yolo`` (H, W) and ``cands`` (K, H, W); the whole image when
    both are empty. Judging on this window gives the same counts as on the whole image, at a fraction of the
    cost for a character in a large frame."""
    occupied = yolo | cands.any(0) if len(cands) else yolo
    rows, cols = np.flatnonzero(occupied.any(1)), np.flatnonzero(occupied.any(0))
    if len(rows) == 0:
        return 0, yolo.shape[0], 0, yolo.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _judge(
    yolo: np.ndarray, box: np.ndarray, cands: np.ndarray, scores: np.ndarray, t: dict[str, float]
) -> tuple[int | None, float | None, float | None, str]:
    """Pick and check one instance's candidates: (index, agreement, score, reason); index None when none."""
    if len(cands) == 0:
        return None, None, None, "no candidate"
    h, w = yolo.shape
    gx1, gy1, gx2, gy2 = _grown_box(box, t["box_pad"], h, w)
    wy1, wy2, wx1, wx2 = _extent(yolo, cands)
    yolo, cands = yolo[wy1:wy2, wx1:wx2], cands[:, wy1:wy2, wx1:wx2]
    flat_y = yolo.reshape(-1)
    flat_c = cands.reshape(len(cands), -1)
    inter = (flat_c & flat_y).sum(1).astype(np.float64)
    area_c = flat_c.sum(1).astype(np.float64)
    area_y = float(flat_y.sum())
    union = area_c + area_y - inter
    agreement = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    order = np.lexsort((-np.asarray(scores, np.float64), -agreement))  # agreement first, then score
    k = int(order[0])
    a, s = float(agreement[k]), float(scores[k])
    if area_c[k] == 0:
        return k, a, s, "rejected: empty candidate"
    if s < t["min_score"]:
        return k, a, s, f"rejected: score {s:.2f} < {t['min_score']:.2f}"
    if a < t["min_agreement"]:
        return k, a, s, f"rejected: agreement {a:.2f} < {t['min_agreement']:.2f}"
    if area_y > 0 and area_c[k] > t["max_growth"] * area_y:
        return k, a, s, f"rejected: leaks (area {area_c[k] / area_y:.2f}x YOLO's > {t['max_growth']:.2f}x)"
    coverage = inter[k] / area_y if area_y > 0 else 1.0
    if coverage < t["min_coverage"]:
        return k, a, s, f"rejected: partial (covers {coverage:.2f} of YOLO's mask < {t['min_coverage']:.2f})"
    # the grown box in the window's coordinates (the window holds every candidate pixel)
    x1, y1, x2, y2 = max(gx1 - wx1, 0), max(gy1 - wy1, 0), max(gx2 - wx1, 0), max(gy2 - wy1, 0)
    inside = float(cands[k, y1:y2, x1:x2].sum())
    outside = 1.0 - inside / area_c[k]
    if outside > t["max_outside"]:
        return k, a, s, f"rejected: spills outside its box ({outside:.2f} > {t['max_outside']:.2f})"
    return k, a, s, "accepted"


def settle_overlaps(masks: np.ndarray, yolo: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give every pixel claimed by several of ``masks`` (N, H, W) bool to one instance (rules in the module doc).

    ``yolo`` (N, H, W) bool are the detector's masks, ``scores`` (N,) its confidences. Returns the settled masks
    and (N,) int64 counts of pixels each instance lost.
    """
    n = len(masks)
    lost = np.zeros(n, np.int64)
    if n < 2:
        return masks, lost
    contested = masks.sum(0, dtype=np.uint8 if n < 256 else np.int64) > 1
    if not contested.any():
        return masks, lost
    ys, xs = np.nonzero(contested)
    y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    sub = contested[y1:y2, x1:x2]
    who = [i for i in range(n) if (masks[i, y1:y2, x1:x2] & sub).any()]
    # strength: 2 when the pixel is inside the claimant's own YOLO mask, plus its detection score in [0, 1];
    # so YOLO membership decides when it singles out one claimant, the score decides otherwise
    best = np.full(sub.shape, -np.inf)
    winner = np.full(sub.shape, -1, np.int64)
    for i in who:
        strength = 2.0 * yolo[i, y1:y2, x1:x2] + float(np.clip(scores[i], 0.0, 1.0))
        strength = np.where(masks[i, y1:y2, x1:x2] & sub, strength, -np.inf)
        better = strength > best
        best[better] = strength[better]
        winner[better] = i
    out = masks.copy()
    for i in who:
        lose = sub & (winner != i) & masks[i, y1:y2, x1:x2]
        n_lose = int(lose.sum())
        if n_lose == 0 or n_lose >= int(out[i].sum()):
            continue  # never leave an instance without pixels
        out[i, y1:y2, x1:x2] &= ~lose
        lost[i] = n_lose
    return out, lost


def fuse(instances: Instances, candidates: Candidates, method: str, **thresholds: Any) -> Instances:
    """Fuse refiner ``candidates`` (N, K, H, W) into ``instances`` (N); returns new Instances (same N, same order).

    ``thresholds`` override :data:`DEFAULTS` (see the module doc for what each one does). Unknown names raise
    ``TypeError`` so a typo never silently changes nothing.
    """
    unknown = set(thresholds) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown fusion threshold(s): {', '.join(sorted(unknown))}")
    t = {**DEFAULTS, **{k: float(v) for k, v in thresholds.items()}}
    n = len(instances)
    masks_c = np.asarray(candidates.masks, bool)
    scores_c = np.asarray(candidates.scores, np.float32)
    if masks_c.ndim != 4 or len(masks_c) != n or masks_c.shape[2:] != instances.masks.shape[1:]:
        raise ValueError(
            f"candidates {masks_c.shape} do not fit {n} instances of size {instances.masks.shape[1:]} "
            "(expected (N, K, H, W))"
        )
    if scores_c.shape != masks_c.shape[:2]:
        raise ValueError(f"candidate scores {scores_c.shape} do not match candidate masks {masks_c.shape[:2]}")
    final = instances.masks.copy()
    records: list[dict[str, Any]] = []
    for i in range(n):
        k, a, s, reason = _judge(instances.masks[i], instances.boxes[i], masks_c[i], scores_c[i], t)
        accepted = reason == "accepted"
        if accepted:
            final[i] = masks_c[i, k]
        records.append(
            {
                "method": method,
                "refined": accepted,
                "candidate": k,
                "candidate_score": None if s is None else round(s, 4),
                "agreement": None if a is None else round(a, 4),
                "reason": reason,
            }
        )
    picked = final.copy()
    final, lost = settle_overlaps(final, instances.masks, instances.scores)
    for rec, n_lost in zip(records, lost, strict=True):
        rec["contested"] = int(n_lost)
    alphas = None
    if candidates.alphas is not None:
        # an accepted candidate brings its soft alpha; the others keep their binary mask as alpha; pixels lost in
        # an overlap lose their alpha too
        alphas = final.astype(np.uint8) * np.uint8(255)
        for i, rec in enumerate(records):
            if rec["refined"]:
                alphas[i] = np.where(picked[i] & ~final[i], 0, candidates.alphas[i, rec["candidate"]])
    out = Instances(
        instances.boxes.copy(),
        instances.scores,
        instances.classes,
        final,
        dict(instances.names),
        records,
        instances.track_ids,
        alphas,
    )
    boxes = out.boxes_from_masks()
    nonempty = final.reshape(n, -1).any(1) if n else np.zeros(0, bool)
    out.boxes[nonempty] = boxes[nonempty]  # an instance whose mask was empty all along keeps its detector box
    return out
