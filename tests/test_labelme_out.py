"""`predict --save labelme`: LabelMe 5.x files that `data build` (type `labelme`) reads back as the predicted
instances, that LabelMe's own loader opens, for images, video frames and embedded images, resumable."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, run_cli

from animeseg import labelme as L
from animeseg.data.build import build_dataset
from animeseg.instances import Instances
from animeseg.masks import decode_rle, mask_iou
from animeseg.weights import example_image

EXAMPLE = example_image()
REAL = SHARED / "data" / "real-pictures" / "peppercarrot"
#: Real pictures in which the packaged model at --conf 0.1 finds several characters with overlapping boxes.
CROWDED = [
    "print-book/2015-09-15_witches-of-chaosah-family_by-David-Revoy.jpg",  # 4 characters, 5 overlapping pairs
    "print-book/2015-02-17_shichimi-concept-art_by-David-Revoy.jpg",  # 2, overlapping
]


@pytest.fixture(autouse=True)
def _packaged(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMESEG_WEIGHTS", str(tmp_path / "no-weights"))  # the packaged model is the default


# ------------------------------------------------------------------------------------------------ polygons
def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _drawn(polygons: list[np.ndarray], h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), bool)
    for p in polygons:
        out |= L.shape_mask({"points": p.tolist()}, "polygon", h, w)
    return out


def test_polygons_give_the_mask_back_holes_and_parts_included():
    h, w = 200, 260
    ring = _disc(h, w, 100, 120, 80) & ~_disc(h, w, 100, 120, 30)
    two = _disc(h, w, 40, 40, 25) | _disc(h, w, 140, 200, 45)
    tiny = np.zeros((h, w), bool)
    tiny[5:8, 5:9] = True
    blobs = cv2.GaussianBlur(np.random.default_rng(0).random((h, w)).astype(np.float32), (0, 0), 6) > 0.5
    for name, mask, parts in (("ring", ring, 1), ("two", two, 2), ("tiny", tiny, 1), ("blobs", blobs, None)):
        polygons, iou = L.instance_polygons(mask)
        assert iou >= L.MIN_IOU and iou == pytest.approx(mask_iou(_drawn(polygons, h, w), mask)), name
        assert parts is None or len(polygons) == parts, name
    polygons, _ = L.instance_polygons(ring)
    assert not _drawn(polygons, h, w)[100, 120]  # the hole stays open, cut in by a slit
    assert len(polygons[0]) < 0.5 * np.count_nonzero(cv2.Canny(ring.astype(np.uint8) * 255, 1, 1))  # simplified
    assert L.instance_polygons(np.zeros((h, w), bool)) == ([], 0.0)

    # one shape per part; the parts of one instance share its index as group id, a one-part instance has none
    inst = Instances(np.zeros((2, 4)), [0.9, 0.8], [0, 0], np.stack([ring, two]), {0: "character"})
    inst.refine = [{"method": "none", "refined": np.bool_(False)}, {}]
    doc = L.document(inst, "a.png")
    assert [(s["label"], s["group_id"]) for s in doc["shapes"]] == [("character", None), *[("character", 1)] * 2]
    assert json.loads(doc["shapes"][0]["description"]) == {"score": 0.9, "refine": {"method": "none", "refined": False}}
    inst.track_ids = np.array([7, 3])
    assert json.loads(L.document(inst, "a.png")["shapes"][-1]["description"])["track_id"] == 3


# ------------------------------------------------------------------------------------------------ round trip
def _build(folder: Path, work: Path) -> dict[str, list[np.ndarray]]:
    """``data build`` of a folder of LabelMe files at full size: masks per JSON file (its path, no suffix)."""
    cfg = work / "datasets.yaml"
    cfg.write_text(
        f"out: built\nval_fraction: 0\nimgsz: 4096\nclasses: [character]\nsources:\n"
        f"  - name: lm\n    type: labelme\n    folder: {folder}\n    keep_empty: true\n"
    )
    build_dataset(cfg)
    built = work / "built"
    doc = json.loads((built / "annotations" / "train.json").read_text())
    prov = {json.loads(x)["image"]: json.loads(x) for x in (built / "provenance.jsonl").read_text().splitlines()}
    masks = {}
    for im in doc["images"]:
        stem = Path(prov[f"images/train/{im['file_name']}"]["json"]).with_suffix("").as_posix()
        masks[stem] = [decode_rle(a["segmentation"]) for a in doc["annotations"] if a["image_id"] == im["id"]]
    return masks


def _stem(file_name: str) -> str:
    """Where predict puts an input's LabelMe file, without suffix: ``a.jpg`` -> ``a``, ``clip.mp4#3`` ->
    ``clip/000003``."""
    name, _, frame = file_name.partition("#")
    stem = Path(name).with_suffix("").as_posix()
    return f"{stem}/{int(frame):06d}" if frame else stem


def _predicted(out: Path) -> dict[str, list[np.ndarray]]:
    pred = json.loads((out / "predictions.json").read_text())
    return {
        _stem(im["file_name"]): [
            decode_rle(a["segmentation"]) for a in pred["annotations"] if a["image_id"] == im["id"]
        ]
        for im in pred["images"]
    }


def _same_instances(predicted: dict, built: dict) -> list[float]:
    assert sorted(built) == sorted(predicted)
    ious = []
    for stem, masks in predicted.items():
        assert len(built[stem]) == len(masks), stem
        ious += [mask_iou(a, b) for a, b in zip(masks, built[stem], strict=True)]
    assert min(ious) >= 0.95, ious
    return ious


@pytest.fixture(scope="module")
def example_run(tmp_path_factory) -> Path:
    """``predict examples/renpy-meadow.jpg --save json,labelme`` (the packaged model, its defaults)."""
    out = tmp_path_factory.mktemp("example") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("ANIMESEG_WEIGHTS", str(out.parent / "no-weights"))
    from animeseg.cli import main

    try:
        main(["predict", str(EXAMPLE), "--save", "json,labelme", "--out", str(out)])
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        mp.undo()
    return out


def test_data_build_reads_back_the_predicted_instances(example_run, tmp_path):
    label_file = example_run / "labelme" / "renpy-meadow.json"
    copy = example_run / "labelme" / "renpy-meadow.jpg"
    assert copy.read_bytes() == EXAMPLE.read_bytes()  # the input itself, beside its file
    predicted = _predicted(example_run)
    assert len(predicted["renpy-meadow"]) == 3
    _same_instances(predicted, _build(label_file.parent, tmp_path))


def test_the_files_are_labelme_5_field_by_field(example_run):
    """LabelMe 5.x's fields, types and order (labelme/_label_file.py of 5.11.4: LabelFile.save, and its
    _load_shape_json_obj's checks on each shape)."""
    doc = json.loads((example_run / "labelme" / "renpy-meadow.json").read_text())
    assert list(doc) == ["version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"]
    assert doc["version"].startswith("5.") and doc["flags"] == {}
    assert (doc["imagePath"], doc["imageData"]) == ("renpy-meadow.jpg", None)
    assert (doc["imageHeight"], doc["imageWidth"]) == (540, 960)
    pred = json.loads((example_run / "predictions.json").read_text())["annotations"]
    assert len(doc["shapes"]) >= len(pred) == 3
    groups = {}
    for shape in doc["shapes"]:
        assert list(shape) == ["label", "points", "group_id", "description", "shape_type", "flags", "mask"]
        assert shape["label"] == "character" and shape["shape_type"] == "polygon"
        assert shape["flags"] == {} and shape["mask"] is None
        assert len(shape["points"]) >= 3
        assert all(len(p) == 2 and all(isinstance(v, float) and v >= 0 for v in p) for p in shape["points"])
        assert all(p[0] < 960 and p[1] < 540 for p in shape["points"])
        assert shape["group_id"] is None or isinstance(shape["group_id"], int)
        groups.setdefault(shape["description"], set()).add(shape["group_id"])
        described = json.loads(shape["description"])
        assert set(described) == {"score", "refine"} and 0 < described["score"] <= 1
        assert described["refine"]["method"] == "learned"
    # one description per instance, in predictions.json's order and scores
    assert [json.loads(d)["score"] for d in groups] == [pytest.approx(a["score"], abs=1e-4) for a in pred]


def test_labelmes_own_loader_opens_them(example_run, monkeypatch):
    """LabelMe's own LabelFile (needs PyQt5, hence not a dependency: skipped where labelme is absent)."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    labelme = pytest.importorskip("labelme", reason="labelme (the annotation tool) is not installed")
    from labelme.utils import shape_to_mask

    path = example_run / "labelme" / "renpy-meadow.json"
    loaded = labelme.LabelFile(str(path))
    doc = json.loads(path.read_text())
    assert loaded.imagePath == "renpy-meadow.jpg" and len(loaded.shapes) == len(doc["shapes"])
    for ours, theirs in zip(doc["shapes"], loaded.shapes, strict=True):
        assert theirs["points"] == ours["points"] and theirs["group_id"] == ours["group_id"]
        drawn = shape_to_mask((540, 960), theirs["points"], theirs["shape_type"])
        assert (drawn == L.shape_mask(ours, "polygon", 540, 960)).all()  # LabelMe rasterises as data build does


def test_real_pictures_with_overlapping_characters(tmp_path, capsys):
    """Acceptance: on real anime pictures with several overlapping characters, every instance comes back."""
    if not REAL.is_dir():
        pytest.skip(f"real pictures not found at {REAL} (only present in the team's workspace)")
    art = tmp_path / "art"
    art.mkdir()
    for name in CROWDED:
        (art / Path(name).name).symlink_to(REAL / name)  # linked, never copied
    out = tmp_path / "run"
    code, err = run_cli(capsys, "predict", art, "--conf", "0.1", "--save", "json,labelme", "--out", out)
    assert code == 0, err
    predicted = _predicted(out)
    overlapping = 0
    for masks in predicted.values():
        boxes = [cv2.boundingRect(m.astype(np.uint8)) for m in masks]
        overlapping += any(
            max(a[0], b[0]) < min(a[0] + a[2], b[0] + b[2]) and max(a[1], b[1]) < min(a[1] + a[3], b[1] + b[3])
            for i, a in enumerate(boxes)
            for b in boxes[i + 1 :]
        )
    assert overlapping == 2 and sum(map(len, predicted.values())) >= 6
    _same_instances(predicted, _build(out / "labelme", tmp_path))


# ------------------------------------------------------------------------------------------------ other inputs
def test_embedded_images_video_frames_and_resume(tmp_path, capsys):
    small = cv2.resize(cv2.imread(str(EXAMPLE)), (480, 270))
    video = tmp_path / "in" / "clip.mp4"
    video.parent.mkdir()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (480, 270))
    for t in range(2):
        writer.write(np.roll(small, 20 * t, axis=1))
    writer.release()
    png = tmp_path / "in" / "meadow.webp"
    cv2.imwrite(str(png), small)
    out = tmp_path / "run"
    args = ("predict", tmp_path / "in", "--save", "json,labelme", "--labelme-image-data", "--out", out)
    code, err = run_cli(capsys, *args)
    assert code == 0, err
    files = sorted(p.relative_to(out).as_posix() for p in (out / "labelme").rglob("*"))
    assert files == [
        "labelme/clip",
        "labelme/clip/000000.jpg",
        "labelme/clip/000000.json",
        "labelme/clip/000001.jpg",
        "labelme/clip/000001.json",
        "labelme/meadow.json",
        "labelme/meadow.png",  # a WebP input: its pixels as PNG
    ]
    for stem in ("clip/000001", "meadow"):
        doc = json.loads((out / "labelme" / f"{stem}.json").read_text())
        copy = (out / "labelme" / stem).parent / doc["imagePath"]
        assert base64.b64decode(doc["imageData"]) == copy.read_bytes() and len(doc["shapes"]) >= 1
    assert (cv2.imread(str(out / "labelme" / "meadow.png")) == small).all()

    # resume: complete inputs are skipped; a LabelMe file gone is written again
    before = (out / "labelme" / "meadow.json").stat().st_mtime_ns
    (out / "labelme" / "clip" / "000001.json").unlink()
    code, err = run_cli(capsys, *args, "--resume")
    assert code == 0, err
    assert (out / "labelme" / "clip" / "000001.json").is_file()
    assert (out / "labelme" / "meadow.json").stat().st_mtime_ns == before

    # the embedded images alone (the copies gone) give every image's and frame's instances back
    for p in [*(out / "labelme").rglob("*.jpg"), *(out / "labelme").rglob("*.png")]:
        p.unlink()
    _same_instances(_predicted(out), _build(out / "labelme", tmp_path))
