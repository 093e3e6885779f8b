"""``composite`` source: transparent characters pasted onto backgrounds, with exact instance masks.

Each composite is a pure function of (seed, source name, composite number): its random generators are seeded with
exactly those, so worker processes can make composites in any order and the result is the same. The looks added
for real art (close-ups, heavy overlaps, generated backdrops, effects, renderings, comic pages:
:mod:`animeseg.data.looks`, :mod:`animeseg.data.pages`) draw from a second generator, and only when asked for, so
a config without them makes the same composites byte for byte.

Provenance (one record per image) is enough to re-make it; :func:`remake` does that, with the short mask recipe
of :mod:`animeseg.data.painting` (warp each alpha, threshold at 128, later characters and effects in front hide
what they cover).

Characters are dropped *before* drawing when they would end up with less than ``min_visible`` of their area
visible (cut by the frame or covered by later characters or effects; in a close-up, of their area inside the
frame) or fewer than ``min_area`` pixels, so every character drawn in an image has a label.

``distractors`` (:mod:`animeseg.data.distractors`, off unless asked for) are pasted under the characters, so
the masks are unchanged by them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.data import looks, pages, renderings
from animeseg.data.distractors import draw_distractors
from animeseg.data.example import Example, SkipItem
from animeseg.data.geometry import cover_crop, placement_matrix, rotated_half_size
from animeseg.data.painting import MASK_THRESHOLD, drop_hidden, effects_cover, occlude, paint, premultiply, warp_masks
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


def remake(record: dict[str, Any], foregrounds: str | Path, backgrounds: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Re-make a composite from its provenance record: ``(image (H, W, 3) uint8, masks (N, H, W) bool)``, masks in
    ``z`` order (the order of the label file's lines). ``foregrounds``/``backgrounds`` are the source folders."""
    w, h = record["size"]
    if "page" in record:
        parts = [remake(p["record"], foregrounds, backgrounds) for p in record["page"]["panels"]]
        image, masks = pages.assemble((w, h), record["page"], parts)
        if record.get("render"):
            image = renderings.render(image, record["render"])
        return image, masks
    fgs = [read_rgba(Path(foregrounds) / fg["file"]) for fg in record["foregrounds"]]
    bg = None if "backdrop" in record["background"] else read_image(Path(backgrounds) / record["background"]["file"])
    others = [read_image(Path(backgrounds) / d["file"]) for d in record.get("distractors", [])]
    masks = occlude(warp_masks([f[..., 3] for f in fgs], [fg["matrix"] for fg in record["foregrounds"]], w, h))
    cover = effects_cover(record)
    if cover is not None:
        masks = [m & ~cover for m in masks]
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
        opts = self.options
        w, h = opts["canvas"]
        seeds = [self.ctx.seed, stable_hash(self.name) & 0xFFFFFFFF, int(task.payload)]
        rng = np.random.default_rng(seeds)
        style = np.random.default_rng([*seeds, 1]) if looks.wanted(opts) else None
        if style is not None and opts["page"] > 0 and style.random() < opts["page"]:
            return self._page(task, seeds, style)
        image, masks, record, stats = self._compose(rng, style, task.split, (w, h))
        cls = self.ctx.class_id(opts["class"])
        return Example(image=image, masks=masks, classes=np.full(len(masks), cls), provenance=record, **stats)

    def _page(self, task: Task, seeds: list[int], style: np.random.Generator) -> Example:
        """A comic page: panels, each its own composite (its own generators), then one rendering of the page."""
        w, h = self.options["canvas"]
        boxes = pages.layout(style, w, h, self.options["panels"])
        page_render = looks.draw_page_render(style, self.options)
        parts, specs = [], []
        stats: dict[str, Any] = {"dropped": Counter(), "files_read": 0, "bad_files": []}
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            sub = np.random.default_rng([*seeds, 2, k])
            sub_style = np.random.default_rng([*seeds, 3, k])
            image, masks, record, st = self._compose(sub, sub_style, task.split, (x1 - x0, y1 - y0), page_render)
            parts.append((image, masks))
            specs.append({"box": [x0, y0, x1, y1], "record": record})
            stats["dropped"].update(st["dropped"])
            stats["files_read"] += st["files_read"]
            stats["bad_files"] += st["bad_files"]
        page = {"panels": specs, "border": int(style.integers(1, 5)), "paper": int(style.integers(225, 256))}
        image, masks = pages.assemble((w, h), page, parts)
        record: dict[str, Any] = {"type": "composite", "size": [w, h], "page": page}
        if page_render:
            record["render"] = page_render
            image = renderings.render(image, page_render)
        cls = self.ctx.class_id(self.options["class"])
        return Example(image=image, masks=masks, classes=np.full(len(masks), cls), provenance=record, **stats)

    def _compose(
        self,
        rng: np.random.Generator,
        style: np.random.Generator | None,
        split: str,
        size: tuple[int, int],
        page_render: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, Any]]:
        """One composite of ``size`` (width, height): ``(image (H, W, 3) uint8, masks (N, H, W) bool, provenance
        record, Example statistics)``. ``style`` draws the looks for real art (None: none asked for);
        ``page_render``: the page this panel is in is rendered as a whole, so the panel is not."""
        pools, bgs = self.pools()
        opts, aug = self.options, self.options["augment"]
        w, h = size
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
        pool = pools[split] or pools["train"] or pools["val"]
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

        framed = ""
        if style is not None:
            framed = looks.place(style, opts, cands, [(fg.rgba.shape[1], fg.box) for fg in decoded], (w, h))
            del decoded[len(cands) :]  # a close-up keeps only the first one or two
        style_records = looks.draw_looks(style, opts, page_render is not None) if style is not None else {}
        if "backdrop" in style_records:
            record["background"] = {"backdrop": style_records["backdrop"]}

        # Drop, before drawing, characters that would be mostly hidden or cut off.
        warped = warp_masks([fg.rgba[..., 3] for fg in decoded], [c["matrix"] for c in cands], w, h)
        if framed == "closeup":  # a close-up is cut by the frame on purpose: visible share of what is in frame
            full = [float(np.count_nonzero(m)) for m in warped]
        else:
            dets = [abs(np.linalg.det(np.asarray(c["matrix"])[:, :2])) for c in cands]
            full = [fg.area * d for fg, d in zip(decoded, dets, strict=True)]
        cover = effects_cover({"size": [w, h], "effects": style_records.get("effects")})
        if cover is not None:
            warped = [m & ~cover for m in warped]
        keep, masks, shares, gone = drop_hidden(warped, full, opts["min_visible"], opts["min_area"])
        dropped.update(f"character {reason}" for _, _, reason in gone)
        fg_records = [
            {**cands[i], "z": z, "visible": round(min(s, 1.0), 4)}
            for z, (i, s) in enumerate(zip(keep, shares, strict=True))
        ]
        record["foregrounds"] = fg_records
        record["dropped"] = [
            {"file": cands[i]["file"], "visible": round(min(s, 1.0), 4), "reason": r} for i, s, r in gone
        ]
        record["noise"] = {"sigma": noise_sigma, "seed": noise_seed}
        record["blur"] = blur
        if jpeg is not None and jpeg < 100:
            record["jpeg"] = jpeg
        if patches:
            record["distractors"] = patches
        if framed:
            record["framing"] = framed
        for key in ("effects", "render"):
            if style_records.get(key):
                record[key] = style_records[key]
        image = paint(background, record, [decoded[i].premul for i in keep], patch_images)
        stats = {"dropped": dropped, "files_read": files_read, "bad_files": bad}
        return image, np.array(masks, bool).reshape(-1, h, w), record, stats
