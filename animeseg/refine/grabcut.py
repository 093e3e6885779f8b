"""A refiner that needs no weights: OpenCV GrabCut seeded from YOLO's mask and box.

YOLO-seg masks come from a 4x-downsampled prototype grid of the letterboxed image, so on a full-size image their
edges are blurry and blocky (8 px cells for a 640 px image at ``imgsz=320``). The mask is nearly right in the
middle and uncertain along its edge, which is exactly what a GrabCut trimap expresses:

* sure foreground: YOLO's mask eroded by an inner band;
* probable foreground / background: the rest of YOLO's mask / a band just outside it;
* sure background: everything further out, and everything outside the box padded by ``pad``.

GrabCut then learns colour models of character and background from the image and cuts along colour edges. The
work is done on a crop around the box, scaled so its longer side is at most ``max_side``: GrabCut's cost is
linear in pixels, and the low-resolution cut is brought back to full size with a guided filter on the
full-resolution crop, which snaps the upsampled edge onto the image's own edges. Bands are measured with two
distance transforms (any width, one pass each) instead of erosions and dilations by large disks, and instances
are cut in parallel threads (OpenCV releases the GIL).

Cost, measured (``bench/refine.py``, ``docs/benchmarks.md``): one band pair on a 400 px crop gives the mask AP of
three band pairs (the earlier default) at about a third of the time. With three candidates per
instance, fusion picked the first band pair's in most cases, and when all pairs share the first pair's colour
models, in every case: the extra candidates cost twice the time for no AP. K = ``len(bands)`` candidates. GrabCut
starts from colour models clustered on a sample of each side (:func:`_initial_models`), not on every pixel.

Candidate score: how well the candidate's outline sits on image edges — the mean colour-gradient magnitude along
its boundary relative to the strongest gradients in the crop (0..1). YOLO's blurry outline scores low; a cut along
the character's line art scores high.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from animeseg._lazy import cv2
from animeseg.refine.base import Candidates

#: (inner, outer) band widths, as fractions of sqrt(box area), one candidate each.
DEFAULT_BANDS: tuple[tuple[float, float], ...] = ((0.08, 0.2),)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _keep_seeded(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` (uint8) that touch ``seed`` (bool): drops stray background blobs."""
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[seed & (mask > 0)])] = True
    keep[0] = False
    return keep[labels]


def _fill_small_holes(mask: np.ndarray, max_fraction: float) -> np.ndarray:
    """Fill holes smaller than ``max_fraction`` of the mask's area (specks GrabCut leaves in flat regions)."""
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n <= 1:
        return mask
    h, w = mask.shape
    x, y, bw, bh, area = stats.T
    touches = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    small = (area <= max_fraction * max(int(mask.sum()), 1)) & ~touches
    small[0] = small[0] and not touches[0]
    return mask | small[labels]


class GrabCutRefiner:
    """Weight-free refiner: GrabCut on a crop around each box, seeded with a trimap made from YOLO's mask.

    Args:
        bands: (inner, outer) band widths as fractions of sqrt(box area); one candidate each (K = len(bands)).
        iterations: GrabCut iterations per candidate (colour models learnt, then the cut, each time).
        pad: how far beyond the box (fraction of its width/height) the character may extend.
        max_side: longer side of the crop GrabCut works on; bigger crops are scaled down and the result is
            upsampled with a guided filter on the full-resolution crop.
        workers: instances cut at the same time, in threads; None: the CPU count, at most 4.

    Results do not depend on ``workers`` or on earlier calls: GrabCut's k-means starts from a fixed seed.
    """

    name = "grabcut"

    def __init__(
        self,
        bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
        iterations: int = 2,
        pad: float = 0.1,
        max_side: int = 400,
        workers: int | None = None,
    ) -> None:
        if not bands:
            raise ValueError("GrabCutRefiner needs at least one (inner, outer) band pair")
        self.bands = tuple((float(i), float(o)) for i, o in bands)
        self.iterations = int(iterations)
        self.pad = float(pad)
        self.max_side = int(max_side)
        self.workers = max(1, int(workers if workers is not None else min(4, os.cpu_count() or 1)))

    def candidates(self, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray) -> Candidates:
        """Candidates for N instances: masks (N, K, H, W) bool, scores (N, K) float32 in [0, 1].

        A candidate GrabCut could not make (empty mask, nothing to learn background from, a box a few pixels
        wide) is left empty with score 0.
        """
        h, w = image.shape[:2]
        n, k = len(boxes), len(self.bands)
        out = np.zeros((n, k, h, w), bool)
        scores = np.zeros((n, k), np.float32)

        def one(i: int) -> None:
            scores[i] = self._one(image, np.asarray(boxes[i], float), np.asarray(masks[i], bool), out[i])

        if self.workers > 1 and n > 1:
            with ThreadPoolExecutor(min(self.workers, n)) as pool:
                list(pool.map(one, range(n)))
        else:
            for i in range(n):
                one(i)
        return Candidates(out, scores)

    def _crop(self, box: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = box
        px, py = self.pad * (x2 - x1) + 4, self.pad * (y2 - y1) + 4
        return int(max(0, x1 - px)), int(max(0, y1 - py)), int(min(w, np.ceil(x2 + px))), int(min(h, np.ceil(y2 + py)))

    def _one(self, image: np.ndarray, box: np.ndarray, mask: np.ndarray, full: np.ndarray) -> np.ndarray:
        """Fill ``full`` (K, H, W) with one instance's candidates; returns their (K,) scores."""
        h, w = mask.shape
        scores = np.zeros(len(self.bands), np.float32)
        cx1, cy1, cx2, cy2 = self._crop(box, h, w)
        if cx2 - cx1 < 4 or cy2 - cy1 < 4:
            return scores  # too small to cut: empty candidates, so fusion keeps YOLO's mask
        crop = np.ascontiguousarray(image[cy1:cy2, cx1:cx2])
        seed_full = mask[cy1:cy2, cx1:cx2]
        if not seed_full.any():
            return scores
        scale = min(1.0, self.max_side / max(crop.shape[:2]))
        if scale < 1.0:
            size = (max(4, round(crop.shape[1] * scale)), max(4, round(crop.shape[0] * scale)))
            small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            seed = cv2.resize(seed_full.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5
            if not seed.any():
                return scores
        else:
            small, seed = crop, seed_full
        bgr = np.ascontiguousarray(small[..., ::-1])
        side = np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0)) * scale
        inner_box = (box - np.array([cx1, cy1, cx1, cy1])) * scale
        barrier = _outside_box(seed, inner_box, margin=max(2, round(0.02 * side)))
        seed_u8 = seed.astype(np.uint8)
        # Euclidean distances replace erosion/dilation by disks: any band width from the same two maps
        depth = cv2.distanceTransform(seed_u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        reach = cv2.distanceTransform(1 - seed_u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        upsample = _GuidedUpsampler(crop, scale) if scale < 1.0 else None
        grad = _gradient(crop)
        for j, (inner, outer) in enumerate(self.bands):
            trimap = _trimap(seed, depth, reach, barrier, max(1, round(inner * side)), max(2, round(outer * side)))
            if trimap is None or not self._cut(bgr, trimap):
                continue  # left empty (score 0): fusion never takes an empty candidate
            cut = ((trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD)).astype(np.uint8)
            cut = _fill_small_holes(_keep_seeded(cut, trimap == cv2.GC_FGD), 0.002)
            cut_full = upsample(cut) if upsample is not None else cut
            full[j, cy1:cy2, cx1:cx2] = cut_full
            scores[j] = _edge_score(cut_full, grad)
        return scores

    def _cut(self, bgr: np.ndarray, trimap: np.ndarray) -> bool:
        """Run GrabCut on ``trimap`` (h, w) uint8 in place; False when OpenCV refuses the input."""
        # GrabCut's k-means draws from OpenCV's per-thread RNG: reseed it so a crop always gets the same cut,
        # whatever ran before in this thread (a server answers many requests on the same threads)
        cv2.setRNGSeed(0)
        models = _initial_models(bgr, trimap)
        try:
            if models is None:
                bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
                cv2.grabCut(bgr, trimap, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
            else:
                cv2.grabCut(bgr, trimap, None, *models, self.iterations, cv2.GC_EVAL)
        except cv2.error:
            return False
        return True


#: Pixels per side (character, background) that GrabCut's first colour models are clustered from.
INIT_SAMPLES = 4096
_COMPONENTS = 5  # Gaussians per colour model, fixed in OpenCV's GrabCut


def _initial_models(bgr: np.ndarray, trimap: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """GrabCut's starting colour models, background and foreground, as OpenCV's (1, 65) float64 rows (5
    weights, 5 BGR means, 5 3x3 covariances), from k-means on at most :data:`INIT_SAMPLES` evenly spaced pixels
    of each side; None when a side has too few pixels (then OpenCV initialises them itself).

    OpenCV clusters every pixel with 10 rounds of k-means++ before its first iteration, about a quarter of a
    two-iteration cut's time; the first iteration re-learns the models from every pixel anyway, so a sample
    gives the same cuts (mask AP within run-to-run noise on the tuning composites, docs/refinement.md).
    """
    flat = bgr.reshape(-1, 3)
    labels = trimap.ravel()
    fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    n_fg = int(fg.sum())
    if min(n_fg, len(labels) - n_fg) < 4 * _COMPONENTS:
        return None  # decided before any k-means, so OpenCV's own start draws from the freshly seeded RNG
    models = []
    for side in (~fg, fg):
        samples = flat[side]
        samples = samples[:: max(1, len(samples) // INIT_SAMPLES)].astype(np.float32)
        _, cluster, _ = cv2.kmeans(
            samples, _COMPONENTS, None, (cv2.TERM_CRITERIA_MAX_ITER, 10, 0.0), 1, cv2.KMEANS_PP_CENTERS
        )
        cluster = cluster.ravel()
        model = np.zeros((1, 13 * _COMPONENTS), np.float64)
        for c in range(_COMPONENTS):
            x = samples[cluster == c].astype(np.float64)
            if len(x) == 0:
                continue  # weight 0: OpenCV skips the component
            mean = x.mean(0)
            cov = x.T @ x / len(x) - np.outer(mean, mean)
            if np.linalg.det(cov) <= np.finfo(np.float64).eps:
                cov += 0.01 * np.eye(3)  # as OpenCV does for a singular component (a flat colour)
            model[0, c] = len(x) / len(samples)
            model[0, _COMPONENTS + 3 * c : _COMPONENTS + 3 * c + 3] = mean
            model[0, 4 * _COMPONENTS + 9 * c : 4 * _COMPONENTS + 9 * c + 9] = cov.ravel()
        models.append(model)
    return models[0], models[1]


def _trimap(
    seed: np.ndarray, depth: np.ndarray, reach: np.ndarray, barrier: np.ndarray, inner: int, outer: int
) -> np.ndarray | None:
    """(h, w) uint8 GrabCut labels for one band pair, or None when there is no background to learn from.

    ``seed`` is YOLO's mask, ``depth`` / ``reach`` the distances of its pixels to the background / of the
    background to it, ``barrier`` the pixels that are background whatever their colour.
    """
    sure_fg = depth > inner
    if not sure_fg.any():
        sure_fg = seed
    trimap = np.full(seed.shape, cv2.GC_BGD, np.uint8)
    trimap[(reach <= outer) & ~barrier] = cv2.GC_PR_BGD
    trimap[seed] = cv2.GC_PR_FGD
    trimap[sure_fg] = cv2.GC_FGD
    if not ((trimap == cv2.GC_BGD) | (trimap == cv2.GC_PR_BGD)).any():
        return None  # the mask fills the whole crop: no background colours to learn
    return trimap


class _GuidedUpsampler:
    """Bring a cut made at ``scale`` back to the full-resolution crop: bilinear, then a guided filter on the
    crop's grey levels, whose statistics are computed once for all of an instance's candidates."""

    def __init__(self, crop: np.ndarray, scale: float, eps: float = 1e-3) -> None:
        self.size = (crop.shape[1], crop.shape[0])
        self.guide = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        radius = max(2, int(np.ceil(1.5 / scale)))
        self.ksize = (2 * radius + 1, 2 * radius + 1)
        self.mean_i = self._box(self.guide)
        self.var_i = self._box(self.guide * self.guide) - self.mean_i * self.mean_i + eps

    def _box(self, x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, self.ksize, borderType=cv2.BORDER_REFLECT)

    def __call__(self, cut: np.ndarray) -> np.ndarray:
        soft = cv2.resize(cut.astype(np.float32), self.size, interpolation=cv2.INTER_LINEAR)
        mean_p = self._box(soft)
        a = (self._box(self.guide * soft) - self.mean_i * mean_p) / self.var_i
        b = mean_p - a * self.mean_i
        return self._box(a) * self.guide + self._box(b) > 0.5


def _outside_box(seed: np.ndarray, box: np.ndarray, margin: int) -> np.ndarray:
    """(h, w) bool: pixels beyond ``box`` (+ ``margin``) where the character cannot be.

    A detector's box is tight on what it saw, so beyond it is background, except where YOLO's mask reaches the
    box's edge: the box may have cut the character there (a skirt, a raised hand), and growth straight out of
    that side, level with where the mask touches it, stays possible.
    """
    h, w = seed.shape
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    barrier = np.ones((h, w), bool)
    barrier[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin] = False
    if x2 <= x1 or y2 <= y1:
        return barrier

    def spread(touch: np.ndarray) -> np.ndarray:  # widen the touching stretch by the margin
        return cv2.dilate(touch.astype(np.uint8).reshape(-1, 1), np.ones((2 * margin + 1, 1), np.uint8)).ravel() > 0

    rows = np.zeros(h, bool)
    cols = np.zeros(w, bool)
    rows[y1:y2] = seed[y1:y2, x1 : x1 + margin].any(1)
    barrier[spread(rows), :x1] = False
    rows[:] = False
    rows[y1:y2] = seed[y1:y2, max(x1, x2 - margin) : x2].any(1)
    barrier[spread(rows), x2:] = False
    cols[x1:x2] = seed[y1 : y1 + margin, x1:x2].any(0)
    barrier[:y1, spread(cols)] = False
    cols[:] = False
    cols[x1:x2] = seed[max(y1, y2 - margin) : y2, x1:x2].any(0)
    barrier[y2:, spread(cols)] = False
    return barrier


def _gradient(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 colour-gradient magnitude (largest over channels) of a lightly smoothed crop."""
    blur = cv2.GaussianBlur(rgb, (3, 3), 0).astype(np.float32)
    mag = cv2.magnitude(cv2.Sobel(blur, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(blur, cv2.CV_32F, 0, 1, ksize=3))
    if mag.ndim == 2:
        return mag
    channels = cv2.split(mag)  # OpenCV's per-pixel max over channels: about 5x numpy's max(axis=2) here
    out = channels[0]
    for c in channels[1:]:
        out = cv2.max(out, c)
    return out


def _edge_score(mask: np.ndarray, grad: np.ndarray) -> float:
    """Mean gradient on the mask's inner boundary over the crop's 99th-percentile gradient, clipped to [0, 1]."""
    m = mask.astype(np.uint8)
    edge = (m > 0) & (cv2.erode(m, _disk(1)) == 0)
    # boundary pixels on the crop border are where the image ends, not edges the cut found
    edge[0, :] = edge[-1, :] = False
    edge[:, 0] = edge[:, -1] = False
    if not edge.any():
        return 0.0
    ref = float(np.percentile(grad, 99)) + 1e-6
    return float(np.clip(grad[edge].mean() / ref, 0.0, 1.0))
