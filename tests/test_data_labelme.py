"""labelme source: files as LabelMe 3.x / 4.x / 5.x write them; group_id parts are one instance."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from animeseg.data import synth
from animeseg.data.build import build_dataset
from animeseg.io import encode_image, write_image
from animeseg.masks import decode_rle

W, H = 160, 120


def draw(shape_type: str, points) -> np.ndarray:
    """What LabelMe's own shape_to_mask gives (Pillow, outline included)."""
    im = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(im)
    xy = [tuple(p) for p in points]
    if shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        d.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), outline=1, fill=1)
    elif shape_type == "circle":
        (cx, cy), (px, py) = xy
        r = math.hypot(cx - px, cy - py)
        d.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)
    else:
        d.polygon(xy, outline=1, fill=1)
    return np.asarray(im, bool)


def png_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


TRI = [[10.5, 10.25], [70.0, 15.0], [40.0, 90.75]]
QUAD = [[90.0, 20.0], [150.0, 25.0], [145.0, 100.0], [95.0, 95.0]]
TOP = [[20.0, 20.0], [60.0, 20.0], [60.0, 50.0], [20.0, 50.0]]
BOTTOM = [[25.0, 60.0], [55.0, 60.0], [55.0, 110.0], [25.0, 110.0]]


def v3_old(label: str, points) -> dict:  # before shape_type (early 3.x)
    return {"label": label, "line_color": None, "fill_color": None, "points": points}


def v3(label: str, points, shape_type="polygon") -> dict:
    return {
        "label": label,
        "line_color": None,
        "fill_color": None,
        "points": points,
        "shape_type": shape_type,
        "flags": {"occluded": False},
    }


def v4(label: str, points, shape_type="polygon", group_id=None) -> dict:
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}}


def v5(label: str, points, shape_type="polygon", group_id=None, mask=None) -> dict:
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "description": "",
        "shape_type": shape_type,
        "flags": {},
        "mask": mask,
    }


def doc(version: str | None, shapes, image_path, image_data=None, size=True) -> dict:
    d: dict = {} if version is None else {"version": version, "flags": {}}
    d["shapes"] = shapes
    if version is None or version.startswith("3."):
        d |= {"lineColor": [0, 255, 0, 128], "fillColor": [255, 0, 0, 128]}
    d |= {"imagePath": image_path, "imageData": image_data}
    if size:
        d |= {"imageHeight": H, "imageWidth": W}
    return d


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """LabelMe files of every version; returns the folder and file stem -> expected instance masks."""
    rng = np.random.default_rng(1)
    lm = tmp_path / "lm"
    lm.mkdir()
    expected: dict[str, list[np.ndarray]] = {}

    def image(name: str | None) -> np.ndarray:
        img = synth.background(rng, W, H)
        if name:
            write_image(lm / name, img)
        return img

    def save(stem: str, d: dict) -> None:
        (lm / f"{stem}.json").write_text(json.dumps(d, indent=2, ensure_ascii=False), encoding="utf-8")

    # 3.x without shape_type, image only embedded (base64 JPEG)
    img = image(None)
    data = base64.b64encode(encode_image(img, ".jpg")).decode()
    save("v3old", doc(None, [v3_old("person", TRI), v3_old("person", QUAD)], "v3old.jpg", data, size=False))
    expected["v3old"] = [draw("polygon", TRI), draw("polygon", QUAD)]

    # 3.x instance labels: person-2 drawn as two polygons is one instance; an unmapped 2-point 'line'
    image("v3.jpg")
    shapes = [v3("person-1", TRI), v3("person-2", TOP), v3("person-2", BOTTOM), v3("bottle", [[1, 1], [5, 5]], "line")]
    save("v3", doc("3.16.7", shapes, "v3.jpg"))
    expected["v3"] = [draw("polygon", TRI), draw("polygon", TOP) | draw("polygon", BOTTOM)]

    # 4.x group_id: TOP + BOTTOM are one character; a rectangle, a circle, and a point (not a region)
    image("v4.png")
    shapes = [
        v4("character", TOP, group_id=1),
        v4("character", [[100, 30], [140.5, 80]], "rectangle"),
        v4("character", BOTTOM, group_id=1),
        v4("character", [[120, 100], [130, 100]], "circle"),
        v4("character", [[5, 5]], "point"),
    ]
    save("v4", doc("4.5.13", shapes, "v4.png", base64.b64encode((lm / "v4.png").read_bytes()).decode()))
    expected["v4"] = [
        draw("polygon", TOP) | draw("polygon", BOTTOM),
        draw("rectangle", [[100, 30], [140.5, 80]]),
        draw("circle", [[120, 100], [130, 100]]),
    ]

    # 5.x: a mask shape (PNG of the 0/1 box crop, placed at the first point) and a Windows imagePath
    (lm / "pics").mkdir()
    image("pics/v5.jpg")
    crop = np.zeros((30, 40), np.uint8)
    crop[5:25, 8:35] = 1
    crop[12:18, 15:20] = 0  # a hole
    full = np.zeros((H, W), bool)
    full[50:80, 100:140] = crop.astype(bool)
    shapes = [v5("character", [[100.0, 50.0], [139.0, 79.0]], "mask", mask=png_b64(crop)), v5("character", TRI)]
    save("v5", doc("5.4.1", shapes, "pics\\v5.jpg"))
    expected["v5"] = [full, draw("polygon", TRI)]

    # 5.x: imagePath from elsewhere, no imageData: the sibling image is used
    image("sibling.png")
    save("sibling", doc("5.2.1", [v5("character", QUAD)], "D:\\shots\\elsewhere.png"))
    expected["sibling"] = [draw("polygon", QUAD)]

    # an __ignore__ region (crowd-like)
    image("ignore.jpg")
    save("ignore", doc("5.4.1", [v5("character", TRI), v5("__ignore__", QUAD)], "ignore.jpg"))

    # bad files: broken JSON, a mapped polygon with 2 points, no image anywhere, a file that is not LabelMe
    (lm / "broken.json").write_text('{"version": "5.4.1", "shapes": [')
    image("two_points.jpg")
    save("two_points", doc("5.4.1", [v5("character", [[1, 1], [9, 9]])], "two_points.jpg"))
    save("no_image", doc("5.4.1", [v5("character", TRI)], "nowhere.jpg"))
    (lm / "other.json").write_text('{"hello": "world"}')
    return lm, expected


def build(tmp_path: Path, extra: str = "") -> tuple[dict, dict[str, list[np.ndarray]]]:
    cfg = tmp_path / "datasets.yaml"
    cfg.write_text(
        "out: out\nval_fraction: 0\nimgsz: 320\nsources:\n"
        "  - name: lm\n    type: labelme\n    folder: lm\n"
        f"    classes: {{person: character, character: character}}\n{extra}"
    )
    manifest = build_dataset(cfg)
    out = tmp_path / "out"
    doc_ = json.loads((out / "annotations" / "train.json").read_text())
    prov = {json.loads(x)["image"]: json.loads(x) for x in (out / "provenance.jsonl").read_text().splitlines()}
    masks: dict[str, list[np.ndarray]] = {}
    for im in doc_["images"]:
        stem = Path(prov[f"images/train/{im['file_name']}"]["json"]).stem
        masks[stem] = [decode_rle(a["segmentation"]) for a in doc_["annotations"] if a["image_id"] == im["id"]]
    return manifest, masks


def test_labelme_versions_become_exact_instances(tmp_path, folder):
    lm, expected = folder
    manifest, masks = build(tmp_path)
    assert set(masks) == set(expected)
    for stem, exp in expected.items():
        assert len(masks[stem]) == len(exp), stem
        for got, want in zip(masks[stem], exp, strict=True):
            assert np.array_equal(got, want), stem
    t = manifest["sources"][0]
    assert t["crowd_images_skipped"] == 1  # ignore.json, not a warning
    assert t["dropped"]["label 'bottle' not mapped"] == 1
    assert t["dropped"]["'point' shape (not a region)"] == 1
    reasons = {Path(s["file"]).name: s["reason"] for s in t["skipped"]}
    assert reasons.keys() == {"broken.json", "two_points.json", "no_image.json", "other.json"}
    assert "JSON does not parse" in reasons["broken.json"]
    assert "shape 0 ('character'): polygon with 2 points (needs at least 3)" in reasons["two_points.json"]
    assert "imagePath 'nowhere.jpg' not found" in reasons["no_image.json"]
    assert "not a LabelMe file" in reasons["other.json"]
    prov = [json.loads(x) for x in (tmp_path / "out" / "provenance.jsonl").read_text().splitlines()]
    by_json = {p["json"]: p for p in prov}
    assert by_json["v3old.json"]["original"] == "(imageData)"
    assert by_json["v5.json"]["original"] == "pics/v5.jpg" and by_json["v5.json"]["labelme_version"] == "5.4.1"
    assert by_json["sibling.json"]["original"] == "sibling.png"


def test_labelme_ignore_region_drop_policy(tmp_path, folder):
    manifest, masks = build(tmp_path, "    crowd: drop\n")
    assert len(masks["ignore"]) == 1
    t = manifest["sources"][0]
    assert t["crowd_images_skipped"] == 0 and t["crowd_regions_dropped"] == 1
