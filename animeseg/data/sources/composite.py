"""``composite`` source: transparent characters pasted onto backgrounds, with exact instance masks.

Each composite is a pure function of (seed, source name, composite number): its random generator is seeded with
exactly those, so worker processes can make composites in any order and the result is the same.

Provenance (one record per image) is enough to re-make it; :func:`remake` does that. The mask recipe is short on
purpose, so anyone can re-make masks with OpenCV alone:

1. ``warped = cv2.warpAffine(alpha, matrix, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)`` for each pasted
   foreground, with ``alpha`` the foreground file's alpha channel (the flip is part of ``matrix``);
2. ``mask = warped >= 128``;
3. later foregrounds (higher ``z``) occlude earlier ones: ``mask_k &= ~mask_j`` for every ``j > k``.

Characters are dropped *before* drawing when they would end up with less than ``min_visible`` of their area
visible (cut by the frame or covered by later characters) or fewer than ``min_area`` pixels, so every character
drawn in an image has a label.

``distractors`` (:mod:`animeseg.data.distractors`, off unless asked for) are pasted under the characters, so
the masks above are unchanged by them.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from animeseg._lazy import cv2
from animeseg.data.distractors import draw_distractors, paste_distractors
from animeseg.data.example import Example, SkipItem
from animeseg.data.sources.base import (
    VAL,
    BuildContext,
    Listing,
    LRUCache,
    Source,
    Task,
    choose_val,
    relative,
    stable_hash,
)
from animeseg.errors import ConfigError, InputError
from animeseg.io import list_files, read_image, read_rgba

MASK_THRESHOLD = 128


class _Foreground:
    """A decoded foreground: RGBA pixels, the box and pixel count of its mask (alpha >= 128)."""

    def __init__(self, path: Path):
        self.rgba = read_rgba(path)
        opaque = self.rgba[..., 3] >= MASK_THRESHOLD
        self.area = int(np.count_nonzero(opaque))
        if self.area == 0:
            raise InputError(path, "foreground has no visible pixels (alpha all below 128)")
        if self.area == opaque.size and self.rgba[..., 3].min() == 255:
            raise InputError(path, "foreground has no transparency (not an RGBA cut-out)")
        ys = np.flatnonzero(opaque.any(1))
        xs = np.flatnonzero(opaque.any(0))
        self.box = (float(xs[0]), float(ys[0]), float(xs[-1]), float(ys[-1]))  # pixel centres, inclusive
        self._premul: np.ndarray | None = None

    @property
    def premul(self) -> np.ndarray:
        """Premultiplied RGBA, computed once per decoded file."""
        if self._premul is None:
            self._premul = premultiply(self.rgba)
        return self._premul


# --------------------------------------------------------------------------------------------------- geometry
def placement_matrix(
    width: int,
    box: tuple[float, float, float, float],
    flip: bool,
    angle: float,
    scale: float,
    centre: tuple[float, float],
) -> np.ndarray:
    """2x3 affine from foreground pixel coordinates to the canvas.

    The foreground (``width`` wide) is mirrored when ``flip``, its mask box centre moved to the origin, scaled by
    ``scale``, rotated by ``angle`` degrees (counter-clockwise on screen) and moved to ``centre``.
    """
    x0, y0, x1, y1 = box
    f = np.eye(3)
    bcx = (x0 + x1) / 2
    if flip:
        f = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        bcx = width - 1.0 - bcx
    bcy = (y0 + y1) / 2
    t = math.radians(angle)
    c, s = math.cos(t) * scale, math.sin(t) * scale
    # rotation on screen (y down) counter-clockwise: x' = c x + s y, y' = -s x + c y
    rs = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    to_origin = np.array([[1.0, 0.0, -bcx], [0.0, 1.0, -bcy], [0.0, 0.0, 1.0]])
    to_centre = np.array([[1.0, 0.0, centre[0]], [0.0, 1.0, centre[1]], [0.0, 0.0, 1.0]])
    return (to_centre @ rs @ to_origin @ f)[:2]


def rotated_half_size(box_w: float, box_h: float, angle: float, scale: float) -> tuple[float, float]:
    """Half width and half height of the box (``box_w`` x ``box_h``) after scaling and rotating."""
    t = math.radians(angle)
    c, s = abs(math.cos(t)), abs(math.sin(t))
    a, b = box_w * scale / 2, box_h * scale / 2
    return c * a + s * b, s * a + c * b


def warp_masks(alphas: list[np.ndarray], matrices: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """Step 1-2 of the recipe: each alpha channel warped onto the canvas and thresholded, before occlusion."""
    out = []
    for alpha, m in zip(alphas, matrices, strict=True):
        warped = cv2.warpAffine(
            alpha, np.asarray(m, np.float64), (width, height), flags=cv2.INTER_LINEAR, borderValue=0
        )
        out.append(warped >= MASK_THRESHOLD)
    return out


def occlude(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Step 3 of the recipe: every mask loses the pixels of the masks above it (later in the list)."""
    out = []
    above = np.zeros_like(masks[0]) if masks else None
    for m in reversed(masks):
        out.append(m & ~above)
        above = above | m
    return out[::-1]


def drop_hidden(
    warped: list[np.ndarray], full: list[float], min_visible: float, min_area: int
) -> tuple[list[int], list[np.ndarray], list[float], list[tuple[int, float, str]]]:
    """Which pasted characters to keep: none may end up (after occlusion) with less than ``min_visible`` of its
    ``full`` area visible or fewer than ``min_area`` pixels.

    Removes one at a time, the smallest-in-pixels or else the least visible first, because removing one uncovers
    the ones below it. Returns (kept indices, their occluded masks, their visible shares, [(index, share,
    reason)] of the removed ones).
    """
    keep = list(range(len(warped)))
    gone: list[tuple[int, float, str]] = []
    while keep:
        visible = occlude([warped[i] for i in keep])
        areas = [int(np.count_nonzero(v)) for v in visible]
        shares = [a / max(full[i], 1e-9) for a, i in zip(areas, keep, strict=True)]
        small = [j for j, a in enumerate(areas) if a < min_area]
        worst = int(np.argmin(shares))
        if not small and shares[worst] >= min_visible:
            return keep, visible, shares, gone
        j = small[0] if small else worst
        gone.append((keep.pop(j), shares[j], "too small" if small else "mostly hidden or out of frame"))
    return [], [], [], gone


def cover_crop(bg_w: int, bg_h: int, width: int, height: int, zoom: float, fx: float, fy: float) -> list[int]:
    """An integer crop box ``[x0, y0, x1, y1]`` of a background with the canvas' aspect ratio, ``1 / zoom`` of the
    largest such box, at relative position (``fx``, ``fy``)."""
    s = max(width / bg_w, height / bg_h) * zoom
    cw = min(bg_w, max(1, round(width / s)))
    ch = min(bg_h, max(1, round(height / s)))
    x0 = round(fx * (bg_w - cw))
    y0 = round(fy * (bg_h - ch))
    return [x0, y0, x0 + cw, y0 + ch]


def jitter_hsv(rgb: np.ndarray, gains: list[float]) -> np.ndarray:
    """Multiply hue, saturation and value by ``gains`` (as Ultralytics' HSV augmentation does)."""
    if all(abs(g - 1.0) < 1e-9 for g in gains):
        return rgb
    hue, sat, val = cv2.split(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float64)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


# --------------------------------------------------------------------------------------------------- painting
def premultiply(rgba: np.ndarray) -> np.ndarray:
    """RGBA uint8 -> premultiplied RGBA uint8 (colour scaled by alpha), so resampling never bleeds the colour of
    transparent pixels into the edges."""
    return cv2.cvtColor(np.ascontiguousarray(rgba), cv2.COLOR_RGBA2mRGBA)


def _shrink_for_warp(pm: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrinking a lot in one bilinear warp aliases line art: pre-shrink with area averaging to 1.5x the final
    scale, and return the image with the 3x3 matrix that maps *its* pixels to the canvas."""
    s = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    if s >= 0.6:
        return pm, m
    f = s * 1.5
    size = (max(1, round(pm.shape[1] * f)), max(1, round(pm.shape[0] * f)))
    fw, fh = size[0] / pm.shape[1], size[1] / pm.shape[0]
    small = cv2.resize(pm, size, interpolation=cv2.INTER_AREA)
    # pixel centre j of the shrunk image sits at (j + 0.5) / f - 0.5 in the original
    return small, m @ np.array([[1 / fw, 0, 0.5 / fw - 0.5], [0, 1 / fh, 0.5 / fh - 0.5], [0, 0, 1]])


def _roi(m: np.ndarray, fg_w: int, fg_h: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The canvas box a foreground of ``fg_w`` x ``fg_h`` lands in under ``m`` (None when off the canvas)."""
    corners = np.array([[-1, -1, 1], [fg_w, -1, 1], [-1, fg_h, 1], [fg_w, fg_h, 1]], np.float64) @ m[:2].T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def paint(
    background: np.ndarray,
    record: dict[str, Any],
    foregrounds: list[np.ndarray],
    distractors: list[np.ndarray] | None = None,
) -> np.ndarray:
    """The composite image of a provenance ``record``: (H, W, 3) uint8.

    ``background`` is the decoded background file (RGB); ``foregrounds`` are the foreground files of
    ``record["foregrounds"]``, in order, as *premultiplied* RGBA (:func:`premultiply`); ``distractors`` the
    decoded background files of ``record["distractors"]``, in order (needed only when the record has some).
    """
    w, h = record["size"]
    bg = record["background"]
    x0, y0, x1, y1 = bg["crop"]
    crop = background[y0:y1, x0:x1]
    canvas = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if crop.shape[1] > w else cv2.INTER_LINEAR)
    if bg.get("flip"):
        canvas = canvas[:, ::-1]
    canvas = canvas.astype(np.float32)
    paste_distractors(canvas, record.get("distractors", []), distractors or [])
    for pm, fg in zip(foregrounds, record["foregrounds"], strict=True):
        m = np.vstack([np.asarray(fg["matrix"], np.float64), [0.0, 0.0, 1.0]])
        pm, m = _shrink_for_warp(pm, m)
        gains = fg.get("hsv", [1.0, 1.0, 1.0])
        if any(abs(g - 1.0) > 1e-9 for g in gains):  # jitter the straight colour, then premultiply again
            straight = cv2.cvtColor(pm, cv2.COLOR_mRGBA2RGBA)
            straight[..., :3] = jitter_hsv(np.ascontiguousarray(straight[..., :3]), gains)
            pm = premultiply(straight)
        roi = _roi(m, pm.shape[1], pm.shape[0], w, h)
        if roi is None:
            continue
        rx0, ry0, rx1, ry1 = roi
        shifted = (np.array([[1.0, 0, -rx0], [0, 1.0, -ry0], [0, 0, 1]]) @ m)[:2]
        warped = cv2.warpAffine(pm, shifted, (rx1 - rx0, ry1 - ry0), flags=cv2.INTER_LINEAR, borderValue=(0,) * 4)
        warped = warped.astype(np.float32)
        a = warped[..., 3:] / 255.0
        region = canvas[ry0:ry1, rx0:rx1]
        canvas[ry0:ry1, rx0:rx1] = region * (1.0 - a) + warped[..., :3]
    blur = record.get("blur", 0.0)
    if blur > 0.05:
        canvas = cv2.GaussianBlur(canvas, (0, 0), blur)
    noise = record.get("noise", {"sigma": 0.0})
    if noise["sigma"] > 0:
        rng = np.random.default_rng(noise["seed"])
        canvas = canvas + rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(noise["sigma"])
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    quality = record.get("jpeg")
    if quality is not None:  # compression artefacts as screenshots and re-posted art carry them
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        image = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]) if ok else image
    return image


def visible_alphas(record: dict[str, Any], foregrounds: list[np.ndarray]) -> np.ndarray:
    """The exact soft alpha of each character of a composite as it shows in the image: (N, H, W) float32 in [0, 1].

    Each foreground's alpha is warped the way :func:`paint` warps it, then covered by the characters above it
    (``a_i * prod(1 - a_j)`` over later ``j``), so the alphas of a composite add up to its foreground coverage.
    ``foregrounds`` are the RGBA files of ``record["foregrounds"]``, in order.
    """
    w, h = record["size"]
    out = np.zeros((len(foregrounds), h, w), np.float32)
    for i, (rgba, fg) in enumerate(zip(foregrounds, record["foregrounds"], strict=True)):
        m = np.vstack([np.asarray(fg["matrix"], np.float64), [0.0, 0.0, 1.0]])
        alpha, m = _shrink_for_warp(np.ascontiguousarray(rgba[..., 3]), m)
        out[i] = cv2.warpAffine(alpha, m[:2], (w, h), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32)
    out /= 255.0
    cover = np.ones((h, w), np.float32)  # what the characters above let through
    for i in range(len(out) - 1, -1, -1):
        own = out[i].copy()
        out[i] *= cover
        cover *= 1.0 - own
    return out


def remake(record: dict[str, Any], foregrounds: str | Path, backgrounds: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Re-make a composite from its provenance record: ``(image (H, W, 3) uint8, masks (N, H, W) bool)``, masks in
    ``z`` order (the order of the label file's lines). ``foregrounds``/``backgrounds`` are the source folders."""
    w, h = record["size"]
    fgs = [read_rgba(Path(foregrounds) / fg["file"]) for fg in record["foregrounds"]]
    bg = read_image(Path(backgrounds) / record["background"]["file"])
    others = [read_image(Path(backgrounds) / d["file"]) for d in record.get("distractors", [])]
    masks = occlude(warp_masks([f[..., 3] for f in fgs], [fg["matrix"] for fg in record["foregrounds"]], w, h))
    image = paint(bg, record, [premultiply(f) for f in fgs], others)
    return image, np.array(masks, bool).reshape(-1, h, w)


# ------------------------------------------------------------------------------------------------------ source
class CompositeSource(Source):
    type = "composite"

    def __init__(self, config, ctx: BuildContext):
        super().__init__(config, ctx)
        self.fg_root: Path = self.options["foregrounds"]
        self.bg_root: Path = self.options["backgrounds"]
        self._pools: dict[str, list[Path]] | None = None
        self._bgs: list[Path] = []
        self._fg_cache = LRUCache(12)
        self._bg_cache = LRUCache(6)

    def pools(self) -> tuple[dict[str, list[Path]], list[Path]]:
        """Foreground files per split (a character file is in train or val, never both) and background files."""
        if self._pools is None:
            fgs = list_files(self.fg_root)
            keys = [relative(p, self.fg_root) for p in fgs]
            val = choose_val(keys, self.ctx.val_fraction, self.salt())
            self._pools = {
                "train": [p for i, p in enumerate(fgs) if i not in val],
                "val": [p for i, p in enumerate(fgs) if i in val],
            }
            self._bgs = list_files(self.bg_root)
        return self._pools, self._bgs

    def tasks(self) -> Listing:
        pools, bgs = self.pools()
        key = self.config.key
        if not pools["train"] and not pools["val"]:
            raise ConfigError(self.ctx.config_file, f"{key}.foregrounds", f"no image files in {self.fg_root}")
        if not bgs:
            raise ConfigError(self.ctx.config_file, f"{key}.backgrounds", f"no image files in {self.bg_root}")
        count = max(1, round(self.options["count"] * self.config.weight))
        if self.config.max_images is not None:
            count = min(count, self.config.max_images)
        n_val = 0
        if pools["val"] and self.ctx.val_fraction > 0 and count >= 2:
            n_val = min(count - 1, max(1, round(count * self.ctx.val_fraction)))
        tasks = [Task(f"{i:07d}", i, VAL if i < n_val else "train") for i in range(count)]
        stats = Counter(
            {"foregrounds train": len(pools["train"]), "foregrounds val": len(pools["val"]), "backgrounds": len(bgs)}
        )
        return Listing(tasks, stats=stats)

    def _foreground(self, path: Path) -> _Foreground:
        return self._fg_cache.get_or(path, lambda: _Foreground(path))

    def _background(self, path: Path) -> np.ndarray:
        return self._bg_cache.get_or(path, lambda: read_image(path))

    def load(self, task: Task) -> Example:
        pools, bgs = self.pools()
        opts, aug = self.options, self.options["augment"]
        w, h = opts["canvas"]
        rng = np.random.default_rng([self.ctx.seed, stable_hash(self.name) & 0xFFFFFFFF, int(task.payload)])
        bad: list[tuple[str, str]] = []
        dropped: Counter = Counter()
        files_read = 0

        # Background: a random crop with the canvas' aspect; an unreadable file hands over to the next one.
        first = int(rng.integers(len(bgs)))
        zoom, fx, fy = float(rng.uniform(1.0, 1.3)), float(rng.random()), float(rng.random())
        bg_flip = bool(rng.random() < 0.5)
        background = bg_path = None
        for k in range(min(3, len(bgs))):
            bg_path = bgs[(first + k) % len(bgs)]
            files_read += 1
            try:
                background = self._background(bg_path)
                break
            except InputError as e:
                bad.append((str(bg_path), e.problem))
        if background is None:
            raise SkipItem(bg_path, "no readable background for this composite")
        record: dict[str, Any] = {
            "type": "composite",
            "size": [w, h],
            "background": {
                "file": relative(bg_path, self.bg_root),
                "crop": cover_crop(background.shape[1], background.shape[0], w, h, zoom, fx, fy),
                "flip": bg_flip,
            },
        }

        # Characters: every random number is drawn whether or not the file loads, so one broken file does not
        # change the other characters.
        pool = pools[task.split] or pools["train"] or pools["val"]
        lo, hi = opts["per_image"]
        n = int(rng.integers(lo, hi + 1))
        picks = rng.choice(len(pool), size=n, replace=n > len(pool))
        cands: list[dict[str, Any]] = []
        decoded: list[_Foreground] = []
        for idx in picks:
            flip = bool(rng.random() < aug["flip"])
            angle = float(rng.uniform(-aug["rotation"], aug["rotation"]))
            height_share = float(rng.uniform(*aug["scale"]))
            gains = (1.0 + rng.uniform(-1, 1, 3) * np.asarray(aug["hsv"])).tolist()
            px, py = float(rng.random()), float(rng.random())
            path = pool[int(idx)]
            files_read += 1
            try:
                fg = self._foreground(path)
            except InputError as e:
                bad.append((str(path), e.problem))
                dropped["unreadable foreground"] += 1
                continue
            x0, y0, x1, y1 = fg.box
            bw, bh = x1 - x0 + 1, y1 - y0 + 1
            scale = height_share * h / bh
            hw, hh = rotated_half_size(bw, bh, angle, scale)
            # the box may leave the frame by up to `shift` of its size
            lo_x, lo_y = hw - 2 * hw * aug["shift"], hh - 2 * hh * aug["shift"]
            centre = (lo_x + px * (w - 2 * lo_x), lo_y + py * (h - 2 * lo_y))
            m = placement_matrix(fg.rgba.shape[1], fg.box, flip, angle, scale, centre)
            cands.append(
                {
                    "file": relative(path, self.fg_root),
                    "matrix": m.tolist(),
                    "flip": flip,
                    "rotation": angle,
                    "scale": scale,
                    "hsv": gains,
                }
            )
            decoded.append(fg)
        noise_sigma = float(rng.uniform(0, aug["noise"]))
        noise_seed = int(rng.integers(2**31))
        blur = float(rng.uniform(0, aug["blur"]))
        # drawn only when asked for, so configs without it keep their composites byte for byte
        jpeg = int(round(rng.uniform(*aug["jpeg"]))) if aug["jpeg"][0] < 100 else None
        # drawn last and only when asked for, for the same reason
        patches, patch_images = draw_distractors(rng, opts, bgs, self.bg_root, (w, h), self._background, bad)
        files_read += len(patches)

        # Drop, before drawing, characters that would be mostly hidden or cut off.
        full = [
            fg.area * abs(np.linalg.det(np.asarray(c["matrix"])[:, :2])) for fg, c in zip(decoded, cands, strict=True)
        ]
        warped = warp_masks([fg.rgba[..., 3] for fg in decoded], [c["matrix"] for c in cands], w, h)
        keep, masks, shares, gone = drop_hidden(warped, full, opts["min_visible"], opts["min_area"])
        dropped.update(f"character {reason}" for _, _, reason in gone)
        record["foregrounds"] = [
            {**cands[i], "z": z, "visible": round(min(s, 1.0), 4)}
            for z, (i, s) in enumerate(zip(keep, shares, strict=True))
        ]
        record["dropped"] = [
            {"file": cands[i]["file"], "visible": round(min(s, 1.0), 4), "reason": r} for i, s, r in gone
        ]
        record["noise"] = {"sigma": noise_sigma, "seed": noise_seed}
        record["blur"] = blur
        if jpeg is not None and jpeg < 100:
            record["jpeg"] = jpeg
        if patches:
            record["distractors"] = patches
        image = paint(background, record, [decoded[i].premul for i in keep], patch_images)
        cls = self.ctx.class_id(opts["class"])
        return Example(
            image=image,
            masks=np.array(masks, bool).reshape(-1, h, w),
            classes=np.full(len(masks), cls),
            provenance=record,
            dropped=dropped,
            files_read=files_read,
            bad_files=bad,
        )
