"""Soft alpha for cut-outs: image matting on a trimap around a mask's edge, plus foreground colour estimation.

A binary mask cuts hair and outlines along a pixel staircase and keeps a fringe of the old background. Here the
mask's edge becomes a band of unknown pixels (the trimap: eroded mask = foreground, outside the dilated mask =
background) whose alpha is solved by closed-form matting (Levin et al. 2008, via PyMatting), and whose colours
are re-estimated without the old background (multi-level foreground estimation, Germer et al. 2020). Everything
is computed on the crop around the band only, so the cost follows the length of the edge, not the image size.

    >>> from animeseg.matte import matte
    >>> m = matte(image, mask)        # image (H, W, 3) RGB uint8, mask (H, W) bool
    >>> m.alpha, m.foreground         # (H, W) float32 in [0, 1]; (H, W, 3) uint8 with the old background removed

:func:`animeseg.writers.cutout` turns it into the RGBA cut-outs that ``predict --alpha matte`` writes.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

from animeseg._lazy import cv2

#: ``--alpha`` choices: ``binary`` (alpha is the mask, 0 or 255) or ``matte`` (soft alpha from matting).
ALPHA_MODES = ("binary", "matte")


@dataclass
class Matte:
    """A soft cut-out of one mask, at full image size.

    Attributes:
        alpha: (H, W) float32 in [0, 1]; 1 inside the eroded mask, 0 outside the dilated mask.
        foreground: (H, W, 3) uint8 RGB: the image, with colours re-estimated (old background removed) where
            alpha is strictly between 0 and 1.
        radius: half-width in pixels of the unknown band that was solved (0: the mask was too thin, alpha is
            the mask itself).
    """

    alpha: np.ndarray
    foreground: np.ndarray
    radius: int


def default_radius(height: int, width: int) -> int:
    """Half-width of the unknown band for an image of this size: 1.5 % of its long side, at least 3 pixels.

    A segmentation model's mask edge is off by a few of its own mask pixels (a quarter of the inference size),
    which at full resolution scales with the image; the band must cover that error to be able to fix it.
    """
    return max(3, round(0.015 * max(height, width)))


def trimap(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) float64 trimap of ``mask``: 1 foreground (mask eroded by ``radius``), 0 background (outside the
    mask dilated by ``radius``), 0.5 unknown in between."""
    m = np.asarray(mask, bool).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    tri = np.where(cv2.dilate(m, kernel) > 0, 0.5, 0.0)
    tri[cv2.erode(m, kernel) > 0] = 1.0
    return tri


def _quiet_ichol(matrix):
    """PyMatting's incomplete-Cholesky preconditioner without its console warnings (the library prints nothing)."""
    from pymatting import ichol

    with contextlib.redirect_stdout(io.StringIO()):
        return ichol(matrix)


@contextlib.contextmanager
def _one_numba_thread():
    """PyMatting's foreground estimation launches Numba thread pools for tiny resizes, many times per call; on a
    busy CPU each launch waits for every core, which made it 10-100x slower than on one thread."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _binary(image: np.ndarray, mask: np.ndarray) -> Matte:
    return Matte(mask.astype(np.float32), np.ascontiguousarray(image[..., :3]).copy(), 0)


def matte(image: np.ndarray, mask: np.ndarray, radius: int | None = None) -> Matte:
    """Soft alpha and cleaned colours for ``mask`` (H, W) bool of the RGB ``image`` (H, W, 3) uint8.

    ``radius`` is the half-width of the unknown band (default :func:`default_radius`); it shrinks for thin masks
    so that some sure foreground remains, and a mask too thin for any keeps its binary alpha.
    """
    from animeseg.errors import require

    require("pymatting", "--alpha matte")  # the [matte] extra: one line saying so when it is missing
    from pymatting import estimate_alpha_cf, estimate_foreground_ml

    image = np.ascontiguousarray(np.asarray(image)[..., :3])
    mask = np.asarray(mask, bool)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    h, w = mask.shape
    if not mask.any():
        return _binary(image, mask)
    thickness = float(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3).max())
    r = min(radius or default_radius(h, w), int(thickness // 2))
    if r < 1:
        return _binary(image, mask)

    tri = trimap(mask, r)
    ys, xs = np.nonzero(tri > 0)
    # one pixel beyond the band, so every matting window around an unknown pixel lies inside the crop
    y0, y1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, h)
    x0, x1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, w)
    crop = image[y0:y1, x0:x1].astype(np.float64) / 255.0
    tri_crop = tri[y0:y1, x0:x1]
    # a residual of 1e-5 moves no alpha by more than ~1e-3, far below one 8-bit step, in fewer iterations
    alpha_crop = estimate_alpha_cf(crop, tri_crop, preconditioner=_quiet_ichol, cg_kwargs={"rtol": 1e-5})
    alpha_crop = np.where(tri_crop == 0.5, np.clip(alpha_crop, 0.0, 1.0), tri_crop)
    with _one_numba_thread():
        fg_crop = estimate_foreground_ml(crop, alpha_crop)

    alpha = np.zeros((h, w), np.float32)
    alpha[y0:y1, x0:x1] = alpha_crop
    foreground = image.copy()
    soft = (alpha_crop > 0) & (alpha_crop < 1)
    foreground[y0:y1, x0:x1][soft] = np.clip(fg_crop[soft] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Matte(alpha, foreground, r)


#: Guided-filter snapping of a predicted alpha to the image's colour edges: radius as a share of the image's long
#: side, and regularisation (chosen on held-out composites, docs/benchmarks.md "Cut-out alpha").
SNAP_RADIUS = 1 / 80
SNAP_EPS = 1e-4
#: Half-width in pixels of the band around the predicted edge where the snapped alpha is used.
SNAP_BAND = 3


def from_alpha(image: np.ndarray, alpha: np.ndarray) -> Matte:
    """A cut-out from a soft ``alpha`` (H, W) uint8 predicted elsewhere (the learned refiner).

    The alpha is first snapped to the image's colour edges with a guided filter (:data:`SNAP_RADIUS`,
    :data:`SNAP_EPS`) around its soft edge, then the colours are cleaned of the old background there:
    ``F = (I - (1 - a) B) / a``, the background ``B`` estimated from the nearby fully transparent pixels (a
    normalised Gaussian average). Tens of milliseconds where :func:`matte` takes about a second.
    """
    image = np.ascontiguousarray(np.asarray(image)[..., :3])
    a = np.asarray(alpha, np.float32) / 255.0
    ys, xs = np.nonzero(a > 0)
    if len(ys):
        h, w = a.shape
        r = max(2, round(SNAP_RADIUS * max(h, w)))
        y0, y1 = max(int(ys.min()) - r, 0), min(int(ys.max()) + r + 1, h)
        x0, x1 = max(int(xs.min()) - r, 0), min(int(xs.max()) + r + 1, w)
        guide = image[y0:y1, x0:x1].astype(np.float32) / 255.0
        sub = a[y0:y1, x0:x1]
        snapped = np.clip(guided_filter(guide, sub, r, SNAP_EPS), 0.0, 1.0)
        # only within a few pixels of the predicted edge: further out the filter would spread a faint haze of
        # alpha over textured background (grass, foliage)
        inner = (sub >= 0.5).astype(np.uint8)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * SNAP_BAND + 1, 2 * SNAP_BAND + 1))
        band = (cv2.dilate(inner, k) > 0) & ~(cv2.erode(inner, k) > 0)
        a = a.copy()
        a[y0:y1, x0:x1] = np.where(band, np.where(snapped < 0.05, 0.0, snapped), sub)
        a = np.round(a * 255.0) / 255.0  # what an 8-bit alpha channel keeps
    foreground = image.copy()
    soft = (a > 0) & (a < 1)
    if soft.any():
        ys, xs = np.nonzero(soft)
        m = 8  # the background estimate reaches this far
        h, w = a.shape
        y0, y1 = max(int(ys.min()) - m, 0), min(int(ys.max()) + m + 1, h)
        x0, x1 = max(int(xs.min()) - m, 0), min(int(xs.max()) + m + 1, w)
        crop = image[y0:y1, x0:x1].astype(np.float32)
        ac = a[y0:y1, x0:x1]
        weight = (ac == 0).astype(np.float32)
        bg = cv2.GaussianBlur(crop * weight[..., None], (0, 0), 3.0)
        norm = cv2.GaussianBlur(weight, (0, 0), 3.0)[..., None]
        bg = np.where(norm > 1e-3, bg / np.maximum(norm, 1e-3), crop)
        fg = (crop - (1.0 - ac[..., None]) * bg) / np.maximum(ac[..., None], 0.05)
        sc = soft[y0:y1, x0:x1]
        foreground[y0:y1, x0:x1][sc] = np.clip(fg[sc] + 0.5, 0, 255).astype(np.uint8)
    return Matte(a, foreground, 0)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int = 1) -> np.ndarray:
    """He et al.'s guided filter with a colour guide: ``src`` (h, w) float32 smoothed so that its edges follow
    the colour edges of ``guide`` (h, w, 3) float32 in [0, 1], over (2 radius + 1)-pixel boxes; ``eps`` sets how
    strong an edge must be to be followed. Each pixel's 3x3 covariance is inverted in closed form. With
    ``subsample`` s > 1 (He and Sun's fast guided filter) the linear coefficients are found on the guide and
    source shrunk s times and enlarged back before they are applied to the full guide: about s^2 times less
    work, the same edges to within a pixel or so."""
    h, w = src.shape
    small = subsample > 1 and min(h, w) >= 4 * subsample
    if small:
        size = (max(1, w // subsample), max(1, h // subsample))
        guide_s = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
        src_s = cv2.resize(src, size, interpolation=cv2.INTER_AREA)
        radius = max(1, round(radius / subsample))
    else:
        guide_s, src_s = guide, src
    box_size = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.blur(x, box_size)

    chans = [np.ascontiguousarray(guide_s[..., c]) for c in range(3)]
    mean = [box(c) for c in chans]
    mean_p = box(src_s)
    cov = [box(c * src_s) - m * mean_p for c, m in zip(chans, mean, strict=True)]
    rr = box(chans[0] * chans[0]) - mean[0] * mean[0] + eps
    rg = box(chans[0] * chans[1]) - mean[0] * mean[1]
    rb = box(chans[0] * chans[2]) - mean[0] * mean[2]
    gg = box(chans[1] * chans[1]) - mean[1] * mean[1] + eps
    gb = box(chans[1] * chans[2]) - mean[1] * mean[2]
    bb = box(chans[2] * chans[2]) - mean[2] * mean[2] + eps
    # the inverse of the symmetric covariance, by cofactors
    c00, c01, c02 = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    c11, c12, c22 = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    det = rr * c00 + rg * c01 + rb * c02
    a0 = (c00 * cov[0] + c01 * cov[1] + c02 * cov[2]) / det
    a1 = (c01 * cov[0] + c11 * cov[1] + c12 * cov[2]) / det
    a2 = (c02 * cov[0] + c12 * cov[1] + c22 * cov[2]) / det
    b = mean_p - a0 * mean[0] - a1 * mean[1] - a2 * mean[2]
    coefficients = np.dstack([box(a0), box(a1), box(a2), box(b)])
    if small:
        coefficients = cv2.resize(coefficients, (w, h), interpolation=cv2.INTER_LINEAR)
    a, b = coefficients[..., :3], coefficients[..., 3]
    return (a * guide).sum(axis=2) + b
