"""`--alpha matte`: soft alpha by image matting around the mask's edge, colours cleaned of the old background.

Accuracy is checked against exact alpha: a drawn soft-edged disc, and real Ren'Py sprites pasted onto real
backgrounds (``bench/composites.py`` keeps every character's exact visible alpha), cut out along the masks the
shared YOLOv8n-seg COCO ONNX model predicts, as ``predict`` does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli as cli
from PIL import Image

from animeseg.io import read_rgba
from animeseg.masks import decode_rle, mask_iou
from animeseg.matte import default_radius, matte, trimap
from animeseg.writers import cutout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.matte import edge_band  # noqa: E402


def _soft_disc(h: int = 72, w: int = 96) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red disc with a 3-pixel soft edge over a green | blue background: (image, exact alpha, red)."""
    yy, xx = np.mgrid[:h, :w]
    dist = np.sqrt((yy - h / 2) ** 2 + (xx - w / 2) ** 2)
    alpha = np.clip((24 - dist) / 3 + 0.5, 0, 1)
    bg = np.where(xx[..., None] < w // 2, [30, 170, 60], [40, 60, 200]).astype(np.float64)
    red = np.array([220, 30, 40], np.float64)
    image = alpha[..., None] * red + (1 - alpha[..., None]) * bg
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), alpha, red


def test_matte_recovers_a_soft_edge_and_its_colour(capsys):
    image, exact, red = _soft_disc()
    mask = exact >= 0.5
    m = matte(image, mask, radius=4)
    assert m.alpha.shape == mask.shape and m.alpha.dtype == np.float32 and m.radius == 4
    assert m.alpha.min() >= 0 and m.alpha.max() <= 1
    band = edge_band(exact, 4)
    sad_binary = np.abs(mask - exact)[band].sum()
    sad_matte = np.abs(m.alpha - exact)[band].sum()
    assert sad_matte < 0.5 * sad_binary, (sad_matte, sad_binary)
    assert mask_iou(m.alpha >= 0.5, mask) > 0.98
    # the edge's colours lose the green and blue they were mixed with
    soft = (exact > 0.2) & (exact < 0.8)
    before = np.abs(image[soft].astype(float) - red).mean()
    after = np.abs(m.foreground[soft].astype(float) - red).mean()
    assert after < 0.5 * before, (after, before)
    # inside and outside the band nothing changes
    assert np.array_equal(m.foreground[m.alpha == 1], image[m.alpha == 1])
    assert (m.alpha[trimap(mask, 4) == 0] == 0).all() and (m.alpha[trimap(mask, 4) == 1] == 1).all()
    assert capsys.readouterr() == ("", "")  # the library prints nothing (PyMatting's warnings are swallowed)


def test_thin_or_empty_masks_keep_a_binary_alpha():
    image, _, _ = _soft_disc()
    thin = np.zeros(image.shape[:2], bool)
    thin[10:60, 40] = True  # one pixel wide: no sure foreground would survive the band
    m = matte(image, thin)
    assert m.radius == 0 and np.array_equal(m.alpha, thin.astype(np.float32))
    empty = matte(image, np.zeros_like(thin))
    assert not empty.alpha.any() and np.array_equal(empty.foreground, image)
    assert default_radius(240, 320) == 5 and default_radius(720, 1280) == 19 and default_radius(10, 10) == 3
    with pytest.raises(ValueError, match="alpha must be one of binary, matte"):
        cutout(image, thin, alpha="soft")
    with pytest.raises(ValueError, match="does not match"):
        matte(image, thin[:10])


def test_matted_cutouts_of_real_sprites_beat_binary_ones(renpy, shared_onnx, tmp_path, capsys):
    from animeseg.predict import Segmenter
    from bench.composites import make_composites

    comps = make_composites(renpy, 2, seed=42, size=(320, 240), max_sprites=2)  # 4 characters, all found
    src = tmp_path / "scenes"
    src.mkdir()
    for c in comps:
        Image.fromarray(c.image).save(src / f"{c.name}.png")
    out = tmp_path / "out"
    model = ["--model", shared_onnx, "--imgsz", "320", "--classes", "0"]
    code, err = cli(capsys, "predict", src, *model, "--out", out, "--save", "json,cutouts", "--alpha", "matte")
    assert code == 0, err
    doc = json.loads((out / "predictions.json").read_text())
    seg = Segmenter(shared_onnx, imgsz=320, classes=[0])

    sad = {"binary": 0.0, "matte": 0.0}
    iou = {"binary": [], "matte": []}
    characters = 0
    for c, im in zip(comps, doc["images"], strict=True):
        anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
        masks = [decode_rle(a["segmentation"]) for a in anns]
        union = np.any(masks, axis=0)
        band = edge_band(c.alpha, max(2, round(0.02 * 320)))
        # the whole-image cut-out the command wrote: soft alpha around the union of the predicted masks
        whole = read_rgba(out / "cutouts" / f"{c.name}.png")[..., 3] / 255.0
        for name, alpha in (("binary", union.astype(float)), ("matte", whole)):
            sad[name] += np.abs(alpha - c.alpha)[band].sum()
            iou[name].append(mask_iou(alpha >= 0.5, c.alpha >= 0.5))
        # each character's cut-out (full size, before the crop the command applies), matched by IoU
        direct = seg(c.image)
        assert all(np.array_equal(m, d) for m, d in zip(masks, direct.masks, strict=True))
        for truth, exact in zip(c.truth.masks, c.alphas, strict=True):
            ious = [mask_iou(truth, m) for m in masks]
            if not ious or max(ious) < 0.5:
                continue
            m = masks[int(np.argmax(ious))]
            band = edge_band(exact, max(2, round(0.02 * 320)))
            for name in ("binary", "matte"):
                alpha = cutout(c.image, m, alpha=name)[..., 3] / 255.0
                sad[name] += np.abs(alpha - exact)[band].sum()
                iou[name].append(mask_iou(alpha >= 0.5, exact >= 0.5))
            characters += 1
        # the per-character files hold the same soft alpha, cropped to where it is not zero
        for i, m in enumerate(masks):
            full = cutout(c.image, m, alpha="matte")
            ys, xs = np.nonzero(full[..., 3])
            written = read_rgba(out / "cutouts" / f"{c.name}_{i}.png")
            assert np.array_equal(written, full[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    assert characters == 4
    assert sad["matte"] <= 0.75 * sad["binary"], sad  # acceptance: at least 25 % less alpha error on the edges
    assert np.mean(iou["matte"]) >= np.mean(iou["binary"]), iou  # and no loss of the mask's IoU


def test_binary_stays_the_default(tmp_path):
    image, exact, _ = _soft_disc()
    mask = exact >= 0.5
    rgba = cutout(image, mask, (10, 5, 80, 70))
    assert rgba.shape == (65, 70, 4) and set(np.unique(rgba[..., 3])) == {0, 255}
    assert np.array_equal(rgba[..., :3], image[5:70, 10:80])
    assert cv2.countNonZero(rgba[..., 3]) == mask[5:70, 10:80].sum()
