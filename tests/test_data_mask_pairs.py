"""mask_pairs: images + masks matched by name; instances by connected components; union IoU >= 0.97."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from animeseg.data import synth
from animeseg.data.build import build_dataset
from animeseg.data.sources.mask_pairs import split_instances
from animeseg.io import write_image
from animeseg.masks import decode_rle, mask_iou, polygon_to_mask


def two_characters(rng, w: int = 320, h: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """An image with two separate characters and its soft (0..255) foreground mask."""
    img = synth.background(rng, w, h)
    a = synth.paste(img, synth.character(rng, int(h * 0.8)), int(w * 0.05), int(h * 0.15), int(h * 0.8))
    b = synth.paste(img, synth.character(rng, int(h * 0.7)), int(w * 0.6), int(h * 0.25), int(h * 0.7))
    return img, np.maximum(a, b)


def make_pairs(root: Path) -> dict[str, np.ndarray]:
    """Pairs in every mask format; returns stem -> expected binary mask at the source size."""
    rng = np.random.default_rng(3)
    imgs, masks = root / "imgs", root / "masks"
    expected = {}

    img, soft = two_characters(rng)
    write_image(imgs / "soft.jpg", img)
    write_image(masks / "soft.png", soft)  # greyscale with soft edges
    expected["soft"] = soft > 127

    img, soft = two_characters(rng)
    write_image(imgs / "zero_one.png", img)
    Image.fromarray((soft > 127).astype(np.uint8)).save(masks / "zero_one.png")  # 0/1 values
    expected["zero_one"] = soft > 127

    img, soft = two_characters(rng)
    write_image(imgs / "rgba.jpg", img)
    rgba = np.dstack([np.zeros_like(img), soft])
    write_image(masks / "rgba.png", rgba)  # the mask in the alpha channel
    expected["rgba"] = soft > 127

    img, soft = two_characters(rng)
    write_image(imgs / "jpeg_mask.jpg", img)
    write_image(masks / "jpeg_mask.jpg", np.where(soft > 127, 255, 0).astype(np.uint8), quality=80)
    expected["jpeg_mask"] = soft > 127

    img, soft = two_characters(rng)
    soft[10:13, 150:153] = 255  # a 3x3 stray piece far from both: joins the nearest character, not dropped
    write_image(imgs / "stray.jpg", img)
    write_image(masks / "stray.png", soft)
    expected["stray"] = soft > 127

    img, soft = two_characters(rng, 640, 480)  # larger than imgsz: both downscaled
    write_image(imgs / "sub" / "big.jpg", img)
    write_image(masks / "sub" / "big.png", soft)
    expected["sub/big"] = soft > 127

    img, _ = two_characters(rng)
    write_image(imgs / "empty.jpg", img)
    write_image(masks / "empty.png", np.zeros((240, 320), np.uint8))
    write_image(imgs / "no_mask.jpg", img)
    write_image(masks / "no_image.png", np.zeros((240, 320), np.uint8))
    write_image(imgs / "wrong_size.jpg", img)
    write_image(masks / "wrong_size.png", np.zeros((100, 300), np.uint8))
    (imgs / "truncated.jpg").write_bytes((imgs / "soft.jpg").read_bytes()[:500])
    write_image(masks / "truncated.png", soft)
    return expected


def test_mask_pairs_instances_match_source_masks(tmp_path):
    expected = make_pairs(tmp_path)
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text(
        "out: out\nval_fraction: 0\nimgsz: 320\nsources:\n"
        "  - {name: real, type: mask_pairs, images: imgs, masks: masks, min_area: 50}\n"
    )
    manifest = build_dataset(cfg)
    t = manifest["sources"][0]
    out = tmp_path / "out"
    prov = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    doc = json.loads((out / "annotations" / "train.json").read_text())
    by_id = {im["id"]: im for im in doc["images"]}
    anns: dict[str, list] = {}
    for a in doc["annotations"]:
        anns.setdefault(by_id[a["image_id"]]["file_name"], []).append(a)
    seen = set()
    for r in prov:
        stem = Path(r["mask"]).with_suffix("").as_posix()
        name = Path(r["image"]).name
        exp = expected[stem]
        im = next(im for im in doc["images"] if im["file_name"] == name)
        h, w = im["height"], im["width"]
        if exp.shape != (h, w):
            exp = cv2.resize(exp.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_AREA) >= 128
        masks = [decode_rle(a["segmentation"]) for a in anns[name]]
        assert len(masks) == 2, stem  # two separate characters, the stray piece joined one of them
        union = np.logical_or.reduce(masks)
        assert mask_iou(union, exp) >= 0.97, stem
        lines = (out / "labels" / "train" / (Path(name).stem + ".txt")).read_text().splitlines()
        polys = [np.array(line.split()[1:], float).reshape(-1, 2) * [w, h] for line in lines]
        assert mask_iou(np.logical_or.reduce([polygon_to_mask(p, h, w) for p in polys]), exp) >= 0.95, stem
        seen.add(stem)
    assert seen == set(expected)
    assert max(im["width"] for im in doc["images"]) == 320  # the 640x480 pair was downscaled
    reasons = {Path(s["file"]).name: s["reason"] for s in t["skipped"]}
    assert "no mask named 'no_mask.*'" in reasons["no_mask.jpg"]
    assert "no image named 'no_image.*'" in reasons["no_image.png"]
    assert "mask is 300x100 but the image is 320x240" in reasons["wrong_size.png"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    assert t["empty_images_left_out"] == 1 and "empty.jpg" not in reasons
    # unchanged JPEG/PNG originals are copied byte for byte
    soft_out = next(r["image"] for r in prov if r["mask"] == "soft.png")
    assert (out / soft_out).read_bytes() == (tmp_path / "imgs" / "soft.jpg").read_bytes()


def test_split_instances_gives_small_pieces_to_the_nearest_instance():
    m = np.zeros((40, 60), bool)
    m[5:30, 2:20] = True
    m[5:30, 35:55] = True
    m[33:35, 50:52] = True  # small, nearest to the right block
    parts = split_instances(m, min_area=10)
    assert len(parts) == 2
    assert np.array_equal(np.logical_or.reduce(parts), m)
    assert parts[1][33:35, 50:52].all() and not parts[0][33:35, 50:52].any()
    assert split_instances(np.zeros((5, 5), bool), 1) == []
    assert split_instances(m, min_area=10_000) == []
