"""coco source: polygons (multi-part, 4-number parts), RLE both ways, crowd policy, keep_empty, bad records."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from animeseg.data import synth
from animeseg.data.build import build_dataset
from animeseg.data.jsonstream import iter_elements, read_element
from animeseg.errors import InputError
from animeseg.io import write_image
from animeseg.masks import box_xyxy_to_xywh, decode_rle, encode_rle, mask_iou, mask_to_box, polygon_to_mask


def uncompressed(mask: np.ndarray) -> dict:
    flat = mask.astype(np.uint8).reshape(-1, order="F")
    edges = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(edges).tolist()
    return {"counts": ([0] + runs) if flat[0] else runs, "size": list(mask.shape)}


def rect(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def blob(h, w, cx, cy, r) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (cx, cy), r, 1, -1)
    return m.astype(bool)


def make_coco(root: Path) -> tuple[Path, dict]:
    """A COCO file covering every case; returns its path and the document."""
    rng = np.random.default_rng(0)
    images, anns = [], []

    def image(iid, name, w=320, h=240, write=True):
        if write:
            write_image(root / "images" / name, synth.background(rng, w, h))
        images.append({"id": iid, "file_name": name, "width": w, "height": h, "license": 1})

    def ann(aid, iid, seg, cat=1, crowd=0):
        anns.append(
            {
                "id": aid,
                "image_id": iid,
                "category_id": cat,
                "segmentation": seg,
                "iscrowd": crowd,
                "area": 0.0,
                "bbox": [0, 0, 1, 1],
            }
        )

    image(1, "a.jpg")
    ann(11, 1, [rect(10, 10, 60, 100), rect(80, 10, 120, 60)])  # two parts, one instance
    ann(12, 1, encode_rle(blob(240, 320, 200, 120, 40)))  # compressed RLE
    ann(13, 1, [rect(250, 150, 300, 200)], cat=18)  # a dog
    image(2, "b.jpg")
    ann(21, 2, uncompressed(blob(240, 320, 100, 100, 50)))  # uncompressed RLE, not crowd
    ann(22, 2, [[200.0, 50.0, 210.0, 60.0], rect(200, 50, 260, 120)])  # 4-number part + a real part
    image(3, "crowd.jpg")
    ann(31, 3, uncompressed(blob(240, 320, 60, 60, 30)), crowd=1)
    ann(32, 3, [rect(150, 40, 220, 200)])
    image(4, "only_dog.jpg")
    ann(41, 4, [rect(20, 20, 90, 90)], cat=18)
    image(5, "missing_file.jpg", write=False)
    ann(51, 5, [rect(20, 20, 90, 90)])
    image(6, "wrong_size.jpg")
    images[-1]["width"] = 300
    ann(61, 6, [rect(20, 20, 90, 90)])
    ann(71, 999, [rect(20, 20, 90, 90)])  # no such image
    image(8, "only_four_numbers.jpg")
    ann(81, 8, [[10.0, 10.0, 50.0, 50.0]])
    image(9, "人物_9.jpg")  # non-ASCII file name
    ann(91, 9, [rect(30, 30, 130, 200)])
    image(10, "big.jpg", w=640, h=480)
    ann(101, 10, [rect(100, 60, 400, 420)])
    doc = {
        "info": {"description": "test"},
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 18, "name": "dog", "supercategory": "animal"},
        ],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return path, doc


def reference_mask(a: dict, h: int, w: int) -> np.ndarray:
    """pycocotools' own reading of an annotation (4-number parts removed, as it would raise on them)."""
    seg = a["segmentation"]
    if isinstance(seg, list):
        rles = mask_utils.frPyObjects([p for p in seg if len(p) >= 6], h, w)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    if isinstance(seg["counts"], list):
        return mask_utils.decode(mask_utils.frPyObjects(seg, h, w)).astype(bool)
    return decode_rle(seg)


def load_out(out: Path) -> dict[str, list[np.ndarray]]:
    """original file name -> written masks, via provenance and the COCO files; checks that the label polygons,
    bbox and area agree with the RLE masks on the way."""
    prov = {json.loads(x)["image"]: json.loads(x) for x in (out / "provenance.jsonl").read_text().splitlines()}
    result = {}
    for split in ("train", "val"):
        doc = json.loads((out / "annotations" / f"{split}.json").read_text())
        for im in doc["images"]:
            anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
            masks = [decode_rle(a["segmentation"]) for a in anns]
            h, w = im["height"], im["width"]
            lines = (out / "labels" / split / (Path(im["file_name"]).stem + ".txt")).read_text().splitlines()
            assert len(lines) == len(masks)
            for m, a, line in zip(masks, anns, lines, strict=True):
                poly = np.array(line.split()[1:], float).reshape(-1, 2) * [w, h]
                assert mask_iou(m, polygon_to_mask(poly, h, w)) >= 0.95
                assert a["area"] == int(m.sum()) and a["bbox"] == box_xyxy_to_xywh(mask_to_box(m))
            result[prov[f"images/{split}/{im['file_name']}"]["original"]] = masks
    return result


def config(root: Path, ann: Path, extra: str = "") -> Path:
    cfg = root / "datasets.yaml"
    cfg.write_text(
        "out: out\nval_fraction: 0\nimgsz: 320\nsources:\n"
        f"  - name: coco\n    type: coco\n    annotations: {ann.name}\n    images: images\n"
        f"    classes: {{person: character}}\n{extra}"
    )
    return cfg


def test_coco_source_skip_image_policy(tmp_path):
    path, doc = make_coco(tmp_path)
    manifest = build_dataset(config(tmp_path, path))
    written = load_out(tmp_path / "out")
    assert set(written) == {"a.jpg", "b.jpg", "人物_9.jpg", "big.jpg"}
    anns = {a["id"]: a for a in doc["annotations"]}
    for name, ids in {"a.jpg": [11, 12], "b.jpg": [21, 22], "人物_9.jpg": [91]}.items():
        masks = written[name]
        assert len(masks) == len(ids)  # the two-part polygon is one instance; the dog is gone
        for m, i in zip(masks, ids, strict=True):
            assert mask_iou(m, reference_mask(anns[i], 240, 320)) >= 0.99
    big = reference_mask(anns[101], 480, 640)
    big = cv2.resize(big.astype(np.uint8) * 255, (320, 240), interpolation=cv2.INTER_AREA) >= 128
    assert written["big.jpg"][0].shape == (240, 320) and mask_iou(written["big.jpg"][0], big) >= 0.97

    t = manifest["sources"][0]
    assert t["crowd_images_skipped"] == 1 and t["crowd_regions_dropped"] == 0
    assert t["empty_images_left_out"] == 1  # only_dog.jpg
    assert t["dropped"]["label 'dog' not mapped"] == 2
    assert t["dropped"]["polygon parts with fewer than 3 points"] == 1
    reasons = [(Path(s["file"]).name, s["reason"]) for s in t["skipped"]]
    assert ("instances.json", "annotation 71: image_id 999 is not in 'images'") in reasons
    assert any(f == "missing_file.jpg" and "no such file" in r for f, r in reasons)
    assert any(f == "wrong_size.jpg" and "is 320x240 but the annotations say 300x240" in r for f, r in reasons)
    assert any(
        f == "only_four_numbers.jpg" and "annotation 81: polygon with fewer than 3 points" in r for f, r in reasons
    )
    assert t["images"]["train"] == 4 and t["instances"]["train"] == 6


def test_coco_source_drop_policy_and_keep_empty(tmp_path):
    path, _ = make_coco(tmp_path)
    manifest = build_dataset(config(tmp_path, path, "    crowd: drop\n    keep_empty: true\n"))
    written = load_out(tmp_path / "out")
    assert len(written["crowd.jpg"]) == 1  # crowd region dropped, the person kept
    assert written["only_dog.jpg"] == []  # kept as a negative
    t = manifest["sources"][0]
    assert t["crowd_regions_dropped"] == 1 and t["crowd_images_skipped"] == 0
    assert t["dropped"]["crowd region"] == 1
    label = tmp_path / "out" / "labels" / "train"
    assert any(p.read_text() == "" for p in label.glob("*.txt"))  # the negative has an empty label file


def test_coco_file_that_does_not_parse_is_listed_and_build_goes_on(tmp_path):
    (tmp_path / "images").mkdir()
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "a.jpg"},\n {"id": 2, "file_name": }]}')
    manifest = build_dataset(config(tmp_path, bad))
    t = manifest["sources"][0]
    assert t["skipped_count"] == 1 and "JSON does not parse" in t["skipped"][0]["reason"]
    assert "line 2" in t["skipped"][0]["reason"]
    assert manifest["images"] == {"train": 0, "val": 0}


def test_json_stream_offsets_survive_tiny_chunks(tmp_path):
    doc = {
        "info": {"year": 2017, "note": "é ü"},
        "images": [{"id": i, "file_name": f"画像_{i}.jpg"} for i in range(30)],
        "annotations": [{"id": i, "image_id": i % 30, "segmentation": [[1.5, 2.25, 3, 4, 5, 6e-3]]} for i in range(50)],
        "categories": [],
        "empty": [],
    }
    path = tmp_path / "x.json"
    path.write_text("\ufeff" + json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    seen: dict[str, list] = {}
    with open(path, "rb") as f:
        for key, index, value, off, n in iter_elements(path, chunk=37):
            exact = read_element(f, off, n)
            if key == "annotations":
                assert value == exact  # ASCII elements come out of the scan exactly
            if index >= 0:
                assert exact == doc[key][index]
                seen.setdefault(key, []).append(exact)
            else:
                assert exact == doc[key]
    assert seen["images"] == doc["images"] and seen["annotations"] == doc["annotations"]
    path.write_text('{"a": [1, 2,\n\n 3 4]}')
    with pytest.raises(InputError, match="JSON does not parse.*line 3"):
        list(iter_elements(path, chunk=4))
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="does not hold a JSON object"):
        list(iter_elements(path))
