"""Composites: masks re-made from provenance.jsonl + foreground alpha match the written RLE and YOLO polygons."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from animeseg.data import synth
from animeseg.data.build import build_dataset
from animeseg.data.sources.composite import remake
from animeseg.io import read_image, write_image
from animeseg.masks import decode_rle, mask_iou, polygon_to_mask


def make_sources(root: Path, n_fg: int = 6, n_bg: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n_fg):
        write_image(root / "fg" / f"char {i}.png", synth.character(rng, int(rng.integers(180, 260))))
    for i in range(n_bg):
        write_image(root / "bg" / f"bg {i}.jpg", synth.background(rng, 400 + 100 * i, 300), quality=90)
    return root


def write_config(root: Path, fg: Path, bg: Path, count: int = 12, imgsz: int = 256, extra: str = "") -> Path:
    cfg = root / "datasets.yaml"
    cfg.write_text(
        f"out: out\nseed: 5\nval_fraction: 0.25\nimgsz: {imgsz}\nsources:\n"
        f"  - name: comp\n    type: composite\n    foregrounds: '{fg}'\n    backgrounds: '{bg}'\n"
        f"    count: {count}\n    per_image: [2, 4]\n    min_visible: 0.3\n{extra}"
    )
    return cfg


def remake_masks(record: dict, fg_root: Path) -> list[np.ndarray]:
    """The documented recipe, written here with Pillow + OpenCV only (not the library's own code)."""
    w, h = record["size"]
    masks = []
    for fg in record["foregrounds"]:
        alpha = np.asarray(Image.open(fg_root / fg["file"]).convert("RGBA"))[..., 3]
        warped = cv2.warpAffine(alpha, np.array(fg["matrix"], np.float64), (w, h), flags=cv2.INTER_LINEAR)
        masks.append(warped >= 128)
    for i in range(len(masks)):
        for later in masks[i + 1 :]:
            masks[i] = masks[i] & ~later
    return masks


def written(root: Path) -> dict[str, dict]:
    """image path (relative) -> {"anns": [...], "lines": [...]} from the annotation files and labels."""
    out = {}
    for split in ("train", "val"):
        doc = json.loads((root / "annotations" / f"{split}.json").read_text())
        anns: dict[int, list] = {}
        for a in doc["annotations"]:
            anns.setdefault(a["image_id"], []).append(a)
        for im in doc["images"]:
            rel = f"images/{split}/{im['file_name']}"
            lines = (root / "labels" / split / (Path(im["file_name"]).stem + ".txt")).read_text().splitlines()
            out[rel] = {"anns": anns.get(im["id"], []), "lines": lines, "image": im}
    return out


def check_composites(out: Path, fg_root: Path, min_visible: float) -> int:
    data = written(out)
    records = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    n = 0
    for r in records:
        assert r["type"] == "composite"
        w, h = r["size"]
        masks = remake_masks(r, fg_root)
        entry = data[r["image"]]
        assert len(masks) == len(entry["anns"]) == len(entry["lines"])
        for mask, ann, line in zip(masks, entry["anns"], entry["lines"], strict=True):
            assert mask_iou(mask, decode_rle(ann["segmentation"])) >= 0.99
            poly = np.array(line.split()[1:], float).reshape(-1, 2)
            assert len(poly) >= 3 and poly.min() >= 0 and poly.max() <= 1
            assert mask_iou(mask, polygon_to_mask(poly * [w, h], h, w)) >= 0.95
            assert ann["area"] == int(mask.sum()) and ann["category_id"] == 1
            n += 1
        for fg in r["foregrounds"]:
            assert fg["visible"] >= min_visible
    return n


def test_composites_match_provenance_and_split_by_foreground(tmp_path):
    src = make_sources(tmp_path / "src")
    cfg = write_config(tmp_path, src / "fg", src / "bg")
    manifest = build_dataset(cfg)
    out = tmp_path / "out"
    assert manifest["out"] == str(out) and (out / "data.yaml").is_file() and (out / "preview.jpg").is_file()
    assert check_composites(out, src / "fg", 0.3) >= 12

    records = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    fgs = {s: {f["file"] for r in records if r["split"] == s for f in r["foregrounds"]} for s in ("train", "val")}
    assert fgs["train"] and fgs["val"] and not fgs["train"] & fgs["val"]  # one character never in both
    assert len(records) == 12 and sum(r["split"] == "val" for r in records) == 3
    # every record says how to re-make the image
    r = records[0]
    assert {"background", "foregrounds", "noise", "blur", "size"} <= set(r)
    assert {"file", "matrix", "flip", "z", "hsv", "rotation", "scale"} <= set(r["foregrounds"][0])
    image, masks = remake(r, src / "fg", src / "bg")
    on_disk = read_image(out / r["image"])
    assert np.abs(image.astype(int) - on_disk.astype(int)).mean() < 3  # only JPEG loss
    src_t = manifest["sources"][0]
    assert src_t["images"] == {"train": 9, "val": 3} and src_t["skipped_count"] == 0


def test_composites_are_identical_across_runs_and_workers(tmp_path):
    src = make_sources(tmp_path / "src", n_fg=4, n_bg=2)
    cfg = write_config(tmp_path, src / "fg", src / "bg", count=8, imgsz=160)
    build_dataset(cfg, out=tmp_path / "a")
    build_dataset(cfg, out=tmp_path / "b", workers=2)
    for rel in ("provenance.jsonl", "annotations/train.json", "annotations/val.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    labels_a = sorted((tmp_path / "a" / "labels").rglob("*.txt"))
    assert len(labels_a) == 8
    for p in labels_a:
        assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()
    for p in sorted((tmp_path / "a" / "images").rglob("*.jpg")):
        assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()


def test_broken_foreground_is_listed_and_build_goes_on(tmp_path):
    src = make_sources(tmp_path / "src", n_fg=3, n_bg=2)
    good = (src / "fg" / "char 0.png").read_bytes()
    (src / "fg" / "broken.png").write_bytes(good[: len(good) // 3])  # truncated
    (src / "fg" / "opaque.png").write_bytes((src / "bg" / "bg 0.jpg").read_bytes())  # no transparency
    cfg = write_config(tmp_path, src / "fg", src / "bg", count=10, imgsz=128, extra="    per_image: [3, 3]\n")
    cfg.write_text(cfg.read_text().replace("    per_image: [2, 4]\n", ""))
    manifest = build_dataset(cfg)
    t = manifest["sources"][0]
    reasons = {Path(s["file"]).name: s["reason"] for s in t["skipped"]}
    assert "truncated" in reasons["broken.png"] or "corrupt" in reasons["broken.png"]
    assert "no transparency" in reasons["opaque.png"]
    assert t["images"]["train"] + t["images"]["val"] == 10
    assert t["dropped"].get("unreadable foreground", 0) >= 1


def test_composites_from_renpy_sprites(renpy, tmp_path):
    cfg = write_config(tmp_path, renpy / "fg", renpy / "bg", count=6, imgsz=320)
    manifest = build_dataset(cfg)
    assert check_composites(tmp_path / "out", renpy / "fg", 0.3) >= 6
    t = manifest["sources"][0]
    assert t["stats"]["foregrounds train"] + t["stats"]["foregrounds val"] == 13


def test_distractors_change_pixels_not_labels(tmp_path):
    src = make_sources(tmp_path / "src", n_fg=4, n_bg=3)
    plain = write_config(tmp_path, src / "fg", src / "bg", count=6, imgsz=200)
    build_dataset(plain, out=tmp_path / "plain")
    cfg = write_config(tmp_path, src / "fg", src / "bg", count=6, imgsz=200, extra="    distractors: [1, 2]\n")
    build_dataset(cfg, out=tmp_path / "hard")
    assert check_composites(tmp_path / "hard", src / "fg", 0.3) >= 6
    records = [json.loads(line) for line in (tmp_path / "hard" / "provenance.jsonl").read_text().splitlines()]
    plain_records = [json.loads(line) for line in (tmp_path / "plain" / "provenance.jsonl").read_text().splitlines()]
    assert all(1 <= len(r["distractors"]) <= 2 for r in records)
    assert not any("distractors" in r for r in plain_records)
    # drawn after everything else: the same characters in the same places, so the same labels
    for p in sorted((tmp_path / "plain" / "labels").rglob("*.txt")):
        assert p.read_bytes() == (tmp_path / "hard" / p.relative_to(tmp_path / "plain")).read_bytes()
    changed = 0
    for r in records:
        image, masks = remake(r, src / "fg", src / "bg")
        on_disk = read_image(tmp_path / "hard" / r["image"]).astype(int)
        without, _ = remake({k: v for k, v in r.items() if k != "distractors"}, src / "fg", src / "bg")
        err, err_without = np.abs(image - on_disk).mean(), np.abs(without - on_disk).mean()
        assert err < 5 and err <= err_without  # JPEG loss only: the record re-makes its distractors
        diff = np.abs(image.astype(int) - without).max(axis=2) > 40
        changed += int(diff.sum() > 100)
        inside = cv2.erode(masks.any(axis=0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # edges blend
        assert not (diff & inside).any()  # never over a character
    assert changed >= len(records) // 2
