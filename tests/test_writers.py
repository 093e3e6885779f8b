"""Prediction outputs and input expansion, on constructed Instances and files made in the test (no model)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from animeseg.cocojson import plain
from animeseg.instances import Instances
from animeseg.io import read_image, read_mask, read_rgba
from animeseg.masks import decode_rle, mask_iou, polygon_to_mask
from animeseg.media import expand_sources, iter_frames, video_fps
from animeseg.overlay import render_overlay
from animeseg.writers import (
    PredictionsBuilder,
    VideoOutput,
    image_annotations,
    parse_save,
    write_image_outputs,
    yolo_seg_lines,
)


# ------------------------------------------------------------------------------------------------ fixtures
def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def scene() -> tuple[np.ndarray, Instances]:
    """A 72 x 96 RGB gradient with two characters: a disc and an L shape (two instances, classes 0 and 1)."""
    yy, xx = np.mgrid[:72, :96]
    image = np.dstack([xx * 2 + 20, yy * 3, 255 - xx * 2]).astype(np.uint8)  # smooth: JPEG keeps it closely
    a = _disc(72, 96, 30, 28, 14)
    b = np.zeros((72, 96), bool)
    b[40:70, 55:62] = True
    b[62:70, 55:90] = True
    inst = Instances(np.zeros((2, 4)), [0.9, 0.6], [0, 1], np.stack([a, b]), {0: "person", 1: "cat"})
    inst.boxes = inst.boxes_from_masks()
    inst.refine = [{"method": "none", "refined": False, "agreement": np.float32(0.5)}, {}]
    return image, inst


# ------------------------------------------------------------------------------------------------ --save
def test_parse_save():
    assert parse_save("masks,json") == ["json", "masks"]
    assert parse_save(" Masks , overlays ,") == ["masks", "overlays"]
    assert parse_save("all") == [
        "json", "masks", "cutouts", "overlays", "semantic", "txt", "labelme", "video", "layers", "frame-layers"
    ]  # fmt: skip
    assert parse_save(["json", "txt,video"]) == ["json", "txt", "video"]
    with pytest.raises(ValueError, match="unknown output kind 'mask'"):
        parse_save("json,mask")


# ------------------------------------------------------------------------------------------------ per image
def test_every_image_output_matches_the_instances(tmp_path, scene):
    image, inst = scene
    files = write_image_outputs(tmp_path, "sub/pic", image, inst, ["masks", "semantic", "cutouts", "overlays", "txt"])
    assert files == [
        "masks/sub/pic_0.png",
        "masks/sub/pic_1.png",
        "semantic/sub/pic.png",
        "cutouts/sub/pic_0.png",
        "cutouts/sub/pic_1.png",
        "cutouts/sub/pic.png",
        "overlays/sub/pic.jpg",
        "labels/sub/pic.txt",
    ]
    # masks: 0/255, exactly the instance masks
    for i in range(2):
        raw = np.asarray(Image.open(tmp_path / f"masks/sub/pic_{i}.png"))
        assert raw.dtype == np.uint8 and set(np.unique(raw)) == {0, 255}
        assert np.array_equal(raw == 255, inst.masks[i])
    assert np.array_equal(read_mask(tmp_path / "semantic/sub/pic.png"), inst.masks.any(0))

    # cut-outs: cropped to the mask's box; alpha is the mask, colour is the image's
    for i in range(2):
        rgba = read_rgba(tmp_path / f"cutouts/sub/pic_{i}.png")
        x1, y1, x2, y2 = (int(v) for v in inst.boxes[i])
        assert rgba.shape == (y2 - y1, x2 - x1, 4)
        assert np.array_equal(rgba[..., 3] == 255, inst.masks[i][y1:y2, x1:x2])
        assert set(np.unique(rgba[..., 3])) <= {0, 255}
        inside = rgba[..., 3] == 255
        assert np.array_equal(rgba[..., :3][inside], image[y1:y2, x1:x2][inside])
    whole = read_rgba(tmp_path / "cutouts/sub/pic.png")
    assert whole.shape == (72, 96, 4)
    assert np.array_equal(whole[..., 3] == 255, inst.masks.any(0))

    # overlay: same size, tinted inside the masks, untouched far from every instance
    over = read_image(tmp_path / "overlays/sub/pic.jpg")
    assert over.shape == image.shape
    inner = _disc(72, 96, 30, 28, 8)
    assert np.abs(over[inner].astype(int) - image[inner].astype(int)).mean() > 20
    far = np.zeros((72, 96), bool)
    far[56:70, 2:40] = True  # clear of masks, boxes and labels
    assert np.abs(over[far].astype(int) - image[far].astype(int)).mean() < 12  # JPEG noise only

    # YOLO-seg labels: class, normalised polygon that rasterises back to the mask
    lines = (tmp_path / "labels/sub/pic.txt").read_text().splitlines()
    assert len(lines) == 2
    for line, mask, cls in zip(lines, inst.masks, (0, 1), strict=True):
        vals = line.split()
        assert int(vals[0]) == cls
        xy = np.array(vals[1:], float).reshape(-1, 2)
        assert (xy >= 0).all() and (xy <= 1).all()
        poly = xy * [96, 72]
        assert mask_iou(polygon_to_mask(poly, 72, 96), mask) > 0.9


def test_no_instances_gives_empty_outputs(tmp_path, scene):
    image, _ = scene
    empty = Instances.empty(72, 96, {0: "person"})
    files = write_image_outputs(tmp_path, "e", image, empty, ["masks", "semantic", "cutouts", "overlays", "txt"])
    assert files == ["semantic/e.png", "cutouts/e.png", "overlays/e.jpg", "labels/e.txt"]
    assert not read_mask(tmp_path / "semantic/e.png").any()
    assert (read_rgba(tmp_path / "cutouts/e.png")[..., 3] == 0).all()
    assert (tmp_path / "labels/e.txt").read_text() == ""
    assert yolo_seg_lines(empty) == []


def test_overlay_draws_labels_even_at_the_top_edge(scene):
    image, inst = scene
    inst.boxes[0] = [0, 0, 40, 40]  # label cannot go above the box
    out = render_overlay(image, inst)
    assert out.shape == image.shape and out.dtype == np.uint8
    # the label sits just inside the box's top edge: a block of the instance's own colour with white text in
    # it (a tint alone only blends colours, it never paints the exact palette colour over a whole block)
    import cv2

    from animeseg.overlay import PALETTE

    label = f"{inst.class_names()[0]} {float(inst.scores[0]):.2f}"
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    block = out[2 : th + base, 2 : min(tw, out.shape[1])]
    assert (block == PALETTE[0]).all(-1).mean() > 0.4
    assert (block == 255).all(-1).any()


def test_empty_mask_cutout_uses_the_box(tmp_path, scene):
    image, inst = scene
    inst.masks[1] = False
    inst.boxes[1] = [10, 5, 20, 25]
    write_image_outputs(tmp_path, "x", image, inst, ["cutouts"])
    rgba = read_rgba(tmp_path / "cutouts/x_1.png")
    assert rgba.shape == (20, 10, 4) and (rgba[..., 3] == 0).all()


# ------------------------------------------------------------------------------------------------ predictions.json
def test_predictions_json_loads_in_pycocotools(tmp_path, scene):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from animeseg import cocojson

    image, inst = scene
    builder = PredictionsBuilder(inst.names)
    builder.add_error("broken.png", "not an image (unrecognised format)")
    builder.add_ok("sub/pic.png", 72, 96, image_annotations(inst))
    builder.add_ok("clip.mp4#3", 72, 96, image_annotations(inst[[1]]))
    path = builder.write(tmp_path / "predictions.json")
    doc = json.loads(path.read_text())

    assert [im["id"] for im in doc["images"]] == [1, 2, 3]
    assert doc["images"][0] == {
        "id": 1,
        "file_name": "broken.png",
        "width": 0,
        "height": 0,
        "status": "error",
        "error": "not an image (unrecognised format)",
    }
    assert doc["images"][1]["status"] == "ok" and doc["images"][1]["error"] is None
    assert [a["id"] for a in doc["annotations"]] == [1, 2, 3]
    assert [a["image_id"] for a in doc["annotations"]] == [2, 2, 3]
    assert doc["categories"] == [
        {"id": 1, "name": "person", "supercategory": "character"},
        {"id": 2, "name": "cat", "supercategory": "character"},
    ]
    a0 = doc["annotations"][0]
    assert set(a0) >= {"id", "image_id", "category_id", "category_name", "bbox", "score", "area", "segmentation"}
    assert a0["category_name"] == "person" and a0["category_id"] == 1 and a0["refine"]["agreement"] == 0.5
    assert isinstance(a0["segmentation"]["counts"], str)
    assert np.array_equal(decode_rle(a0["segmentation"]), inst.masks[0])
    assert a0["bbox"] == [float(v) for v in (inst.boxes[0][0], inst.boxes[0][1], 29.0, 29.0)]

    # pycocotools loads the annotations as results; scored against themselves as truth they give AP 1
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        ok = [im for im in doc["images"] if im["status"] == "ok"]
        truth = [{**a, "iscrowd": 0} for a in doc["annotations"]]
        gt.dataset = {"images": ok, "annotations": truth, "categories": cocojson.categories(inst.names)}
        gt.createIndex()
        dt = gt.loadRes(doc["annotations"])
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert len(dt.anns) == 3
    assert ev.stats[0] == pytest.approx(1.0)


def test_plain_makes_refine_records_json_ready():
    rec = {"a": np.float32(0.123456789), "b": np.int64(3), "c": np.bool_(True), "d": np.arange(2), "e": (1, 2.0)}
    assert json.loads(json.dumps(plain(rec))) == {"a": 0.12346, "b": 3, "c": True, "d": [0, 1], "e": [1, 2.0]}


# ------------------------------------------------------------------------------------------------ video output
def test_video_output_writes_every_frame(tmp_path):
    frames = [np.full((48, 64, 3), (i * 40, 100, 200 - i * 40), np.uint8) for i in range(5)]
    with VideoOutput(tmp_path / "v" / "clip.mp4", fps=12) as vo:
        for f in frames:
            vo.write(f)
    cap = cv2.VideoCapture(str(tmp_path / "v" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (48, 64, 3)
    assert np.abs(first[..., ::-1].astype(int) - frames[0].astype(int)).mean() < 10
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["clip.mp4"]


def test_video_output_discards_a_failed_video(tmp_path):
    with pytest.raises(RuntimeError), VideoOutput(tmp_path / "clip.mp4", fps=10) as vo:
        vo.write(np.zeros((16, 16, 3), np.uint8))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ inputs
def _png(path: Path, size=(24, 16), colour=(10, 200, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _mp4(path: Path, n: int = 4, size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, size)
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), 30 * i, np.uint8))
    w.release()
    return path


def test_folders_are_searched_recursively_and_names_mirror_them(tmp_path):
    root = tmp_path / "art"
    _png(root / "a.png")
    _png(root / "sub" / "a.png")
    _png(root / "sub" / "deeper" / "b.webp")
    _png(root / ".hidden" / "c.png")
    _png(root / ".d.png")
    (root / "notes.txt").write_text("not media")
    (root / "folder.png").mkdir()
    items = expand_sources([root])
    assert [(i.name, i.key, i.kind) for i in items] == [
        ("a.png", "a", "image"),
        ("folder.png", "folder", "error"),
        ("sub/a.png", "sub/a", "image"),
        ("sub/deeper/b.webp", "sub/deeper/b", "image"),
    ]
    assert items[1].error == "is a folder, not an image"
    assert len({i.key.lower() for i in items}) == len(items)


def test_colliding_names_get_their_source_folder(tmp_path):
    _png(tmp_path / "one" / "a.png")
    _png(tmp_path / "two" / "a.png")
    _png(tmp_path / "two" / "b.png")
    items = expand_sources([tmp_path / "one", tmp_path / "two"])
    assert [i.name for i in items] == ["one/a.png", "two/a.png", "b.png"]
    items = expand_sources([tmp_path / "one" / "a.png", tmp_path / "two" / "a.png"])
    assert [i.name for i in items] == ["one/a.png", "two/a.png"]
    # same folder name on both sides
    _png(tmp_path / "x" / "same" / "a.png")
    _png(tmp_path / "y" / "same" / "a.png")
    items = expand_sources([tmp_path / "x" / "same", tmp_path / "y" / "same"])
    assert len({i.name for i in items}) == 2 and len({i.key for i in items}) == 2


def test_keys_keep_the_extension_only_when_needed(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "a.jpg")
    _png(tmp_path / "b.png")
    items = expand_sources([tmp_path])
    assert [(i.name, i.key) for i in items] == [("a.jpg", "a_jpg"), ("a.png", "a_png"), ("b.png", "b")]


def test_globs_missing_paths_duplicates_and_the_output_folder(tmp_path, monkeypatch):
    _png(tmp_path / "in" / "x" / "a.png")
    _png(tmp_path / "in" / "y" / "b.png")
    _png(tmp_path / "in" / "y" / "c.jpg")
    _png(tmp_path / "in" / "out" / "old.png")  # the output folder inside the input folder: never an input
    monkeypatch.chdir(tmp_path)
    items = expand_sources(["in/**/*.png"], exclude="in/out")
    assert [i.name for i in items] == ["x/a.png", "y/b.png"]
    items = expand_sources(["in", "in/x/a.png", "nothing/*.png", "missing.png"], exclude=tmp_path / "in" / "out")
    assert [(i.name, i.kind, i.error) for i in items] == [
        ("x/a.png", "image", None),
        ("y/b.png", "image", None),
        ("y/c.jpg", "image", None),
        ("nothing/*.png", "error", "no image or video files match this pattern"),
        ("missing.png", "error", "no such file or folder"),
    ]


def test_videos_and_gifs(tmp_path):
    _mp4(tmp_path / "clips" / "c.mp4", n=4)
    still = tmp_path / "clips" / "still.gif"
    Image.new("P", (20, 10), 3).save(still)
    anim = tmp_path / "clips" / "anim.gif"
    frames = [Image.new("RGB", (20, 10), (c, c, c)) for c in (0, 120, 240)]
    frames[0].save(anim, save_all=True, append_images=frames[1:], duration=40, loop=0)
    items = {i.name: i for i in expand_sources([tmp_path / "clips"])}
    assert items["c.mp4"].kind == "video" and items["c.mp4"].frames == 4
    assert items["anim.gif"].kind == "video" and items["anim.gif"].frames == 3
    assert items["still.gif"].kind == "image"
    assert items["c.mp4"].frame_name(3) == "c.mp4#3" and items["c.mp4"].frame_key(3) == "c#000003"

    got = list(iter_frames(tmp_path / "clips" / "c.mp4"))
    assert [i for i, _ in got] == [0, 1, 2, 3]
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for _, f in got)
    assert abs(int(got[3][1].mean()) - 90) <= 6
    assert video_fps(tmp_path / "clips" / "c.mp4") == pytest.approx(8)
    gif = list(iter_frames(anim))
    assert [int(f.mean()) for _, f in gif] == [0, 120, 240]
    assert video_fps(anim) == pytest.approx(25)


def test_broken_videos_raise_one_line(tmp_path):
    from animeseg.errors import InputError

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(InputError, match=r"bad\.mp4: .*(cannot open|no frames)"):
        list(iter_frames(bad))
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        list(iter_frames(empty))
