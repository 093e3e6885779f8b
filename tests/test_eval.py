"""`animeseg eval`: metrics checked on cases computable by hand, and against pycocotools on real anime art."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from animeseg import cocojson
from animeseg.cli import app
from animeseg.errors import AnimesegError
from animeseg.evaluate import evaluate
from animeseg.ground_truth import class_map
from animeseg.instances import Instances
from animeseg.io import write_image, write_json
from animeseg.metrics import foreground_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ helpers, also under plain `pytest`
from bench.composites import make_composites  # noqa: E402

runner = CliRunner()
NAMES = {0: "character"}
H = W = 64


def square(x: int, y: int, size: int = 20) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y : y + size, x : x + size] = True
    return m


def instances(masks: list[np.ndarray], scores: list[float] | None = None) -> Instances:
    if not masks:
        return Instances.empty(H, W, NAMES)
    inst = Instances(np.zeros((len(masks), 4)), scores or [0.9] * len(masks), [0] * len(masks), np.stack(masks), NAMES)
    inst.boxes = inst.boxes_from_masks()
    return inst


class FakeSegmenter:
    """Stands in for Segmenter: returns given instances per image (in image-id order)."""

    def __init__(self, raw: list[Instances], refined: list[Instances] | None = None):
        self.names = dict(NAMES)
        self.raw, self.refined = list(raw), list(refined or [])
        self.refiner = object() if refined else None

    def detect(self, image: np.ndarray) -> Instances:
        return self.raw.pop(0)

    def refine(self, image: np.ndarray, inst: Instances) -> Instances:
        return self.refined.pop(0)


def ground_truth(tmp_path: Path, masks_per_image: list[list[np.ndarray]]) -> Path:
    images, anns = [], []
    for i, masks in enumerate(masks_per_image, start=1):
        write_image(tmp_path / "images" / f"im{i}.png", np.full((H, W, 3), 128, np.uint8))
        images.append(cocojson.image_record(i, f"im{i}.png", H, W))
        anns += cocojson.instance_annotations(instances(masks), i, len(anns) + 1, with_scores=False)
    path = tmp_path / "gt.json"
    write_json(path, {"images": images, "annotations": anns, "categories": cocojson.categories(NAMES)})
    return path


def run(tmp_path: Path, gt: Path, seg: FakeSegmenter, **kw) -> dict:
    return evaluate("fake.pt", gt, images=tmp_path / "images", out=tmp_path / "out", segmenter=seg, **kw)


def test_perfect_prediction_scores_one(tmp_path):
    gt = ground_truth(tmp_path, [[square(10, 10)], [square(30, 20), square(5, 40, 15)]])
    seg = FakeSegmenter([instances([square(10, 10)]), instances([square(30, 20), square(5, 40, 15)])])
    r = run(tmp_path, gt, seg)["results"]["raw"]
    assert r["mask"]["AP"] == pytest.approx(1.0) and r["mask"]["AP75"] == pytest.approx(1.0)
    assert r["box"]["AP"] == pytest.approx(1.0)
    assert r["foreground"] == pytest.approx({"IoU": 1.0, "F": 1.0, "MAE": 0.0})
    assert r["instances"] == {"ground_truth": 3, "predicted": 3, "matched": 3, "missed": 0, "spurious": 0}


def test_empty_prediction_scores_zero(tmp_path):
    gt = ground_truth(tmp_path, [[square(10, 10)]])
    r = run(tmp_path, gt, FakeSegmenter([instances([])]))["results"]["raw"]
    assert r["mask"]["AP"] == 0.0 and r["box"]["AP"] == 0.0
    assert r["foreground"]["IoU"] == 0.0 and r["foreground"]["F"] == 0.0
    assert r["foreground"]["MAE"] == pytest.approx(400 / (H * W))
    assert r["instances"]["missed"] == 1 and r["instances"]["spurious"] == 0
    pred = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert pred["annotations"] == [] and pred["images"][0]["status"] == "ok"


def test_shifted_mask_known_iou(tmp_path):
    # a 20x20 square moved 4 px right: intersection 16x20 = 320, union 480 -> IoU 2/3; precision = recall = 0.8
    gt = ground_truth(tmp_path, [[square(10, 10)]])
    r = run(tmp_path, gt, FakeSegmenter([instances([square(14, 10)])]))["results"]["raw"]
    # matched at IoU thresholds 0.50, 0.55, 0.60, 0.65 of the ten -> AP 0.4
    assert r["mask"]["AP"] == pytest.approx(0.4)
    assert r["mask"]["AP50"] == pytest.approx(1.0) and r["mask"]["AP75"] == 0.0
    assert r["box"]["AP"] == pytest.approx(0.4)
    assert r["foreground"]["IoU"] == pytest.approx(2 / 3)
    assert r["foreground"]["F"] == pytest.approx(0.8)
    assert r["foreground"]["MAE"] == pytest.approx(160 / (H * W))
    assert r["instances"]["missed"] == 0 and r["instances"]["spurious"] == 0


def test_spurious_and_threshold(tmp_path):
    gt = ground_truth(tmp_path, [[square(10, 10)]])
    # one right, one wrong above the threshold, one wrong below it (ignored by the counts and foreground)
    pred = instances([square(10, 10), square(40, 40, 10), square(0, 50, 10)], [0.9, 0.6, 0.1])
    r = run(tmp_path, gt, FakeSegmenter([pred]), threshold=0.5)["results"]["raw"]
    assert r["instances"] == {"ground_truth": 1, "predicted": 2, "matched": 1, "missed": 0, "spurious": 1}
    assert r["mask"]["AP"] == pytest.approx(1.0)  # the false positives rank below the true one
    assert r["foreground"]["IoU"] == pytest.approx(400 / 500)


def test_raw_and_refined_side_by_side(tmp_path):
    gt = ground_truth(tmp_path, [[square(10, 10)]])
    seg = FakeSegmenter([instances([square(14, 10)])], refined=[instances([square(10, 10)])])
    m = run(tmp_path, gt, seg)
    assert m["results"]["raw"]["mask"]["AP"] == pytest.approx(0.4)
    assert m["results"]["refined"]["mask"]["AP"] == pytest.approx(1.0)
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert "| metric | raw | refined |" in table and "| mask AP | 0.4000 | 1.0000 |" in table
    assert (tmp_path / "out" / "predictions-refined.json").is_file()


def test_unreadable_image_is_reported_and_skipped(tmp_path):
    gt = ground_truth(tmp_path, [[square(10, 10)], [square(10, 10)]])
    (tmp_path / "images" / "im2.png").write_bytes(b"not a png")
    m = run(tmp_path, gt, FakeSegmenter([instances([square(10, 10)])]))
    assert m["images"]["evaluated"] == 1 and "im2.png" in m["images"]["failed"][0]["file"]
    assert m["results"]["raw"]["mask"]["AP"] == pytest.approx(1.0)  # the unread image is not counted as missed
    pred = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [i["status"] for i in pred["images"]] == ["ok", "error"] and pred["images"][1]["error"]


def test_foreground_metrics_edge_cases():
    empty = np.zeros((4, 4), bool)
    assert foreground_metrics(empty, empty) == {"IoU": 1.0, "F": 1.0, "MAE": 0.0}
    full = np.ones((4, 4), bool)
    assert foreground_metrics(full, empty) == {"IoU": 0.0, "F": 0.0, "MAE": 1.0}
    half = np.zeros((4, 4), bool)
    half[:2] = True
    # precision 1, recall 0.5: F = 1.3 * 0.5 / (0.3 + 0.5)
    assert foreground_metrics(half, full)["F"] == pytest.approx(1.3 * 0.5 / 0.8)


def test_class_map():
    model = {0: "person", 1: "dog"}
    gt = {1: "character", 2: "Dog"}
    assert class_map(model, gt) == {1: 2}  # equal names, case-insensitive
    assert class_map(model, gt, ["person=character"]) == {0: 1}
    assert class_map(model, gt, ["0=1", "dog=dog"]) == {0: 1, 1: 2}
    assert class_map(model, gt, ["person=character,dog=2"]) == {0: 1, 1: 2}
    with pytest.raises(AnimesegError, match="share no name"):
        class_map({0: "person"}, {1: "character"})
    with pytest.raises(AnimesegError, match="cat"):
        class_map(model, gt, ["cat=character"])


def composite(renpy: Path, out: Path) -> Path:
    """Ren'Py sprites on real backgrounds (exact masks from the alpha), saved as JPEGs + a COCO ground truth
    whose one category is 'character' (so the COCO model's 'person' has to be mapped)."""
    images, anns = [], []
    for i, c in enumerate(make_composites(renpy, 4, seed=5, size=(480, 270)), start=1):
        write_image(out / "images" / f"{c.name} art.jpg", c.image)  # a space, as real file names have
        truth = c.truth
        truth.names = dict(NAMES)
        images.append(cocojson.image_record(i, f"{c.name} art.jpg", *c.image.shape[:2]))
        anns += cocojson.instance_annotations(truth, i, len(anns) + 1, with_scores=False)
    path = out / "gt.json"
    write_json(path, {"images": images, "annotations": anns, "categories": cocojson.categories(NAMES)})
    return path


def test_eval_real_art_matches_pycocotools(tmp_path, renpy, shared_onnx, network_attempts):
    gt = composite(renpy, tmp_path)
    out = tmp_path / "eval"
    res = runner.invoke(
        app,
        ["eval", "--model", str(shared_onnx), "--data", str(gt), "--images", str(tmp_path / "images"),
         "--classes", "person=character", "--imgsz", "320", "--device", "cpu", "--out", str(out),
         "--refine", "grabcut"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    pred = json.loads((out / "predictions.json").read_text())
    assert [c["name"] for c in pred["categories"]] == ["character"]
    assert {a["category_id"] for a in pred["annotations"]} == {1}
    assert all(i["status"] == "ok" for i in pred["images"]) and len(pred["images"]) == 4

    refined = json.loads((out / "predictions-refined.json").read_text())
    # one detection pass: the same detections and scores, only masks differ
    assert [a["score"] for a in refined["annotations"]] == [a["score"] for a in pred["annotations"]]
    assert any(a["refined"] for a in refined["annotations"])

    coco = COCO(str(gt))
    for variant, doc in (("raw", pred), ("refined", refined)):
        for iou_type, key in (("segm", "mask"), ("bbox", "box")):
            ev = COCOeval(coco, coco.loadRes(doc["annotations"]), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            got = metrics["results"][variant][key]
            assert got["AP"] == pytest.approx(ev.stats[0], abs=1e-4)
            assert got["AP50"] == pytest.approx(ev.stats[1], abs=1e-4)
            assert got["AP75"] == pytest.approx(ev.stats[2], abs=1e-4)
    # the COCO person model does find these characters: a real signal, not an empty run
    assert metrics["results"]["raw"]["mask"]["AP50"] > 0.5
    assert metrics["results"]["raw"]["foreground"]["IoU"] > 0.3
    # no --threshold: the model's default --conf in predict (0.25 here, 0.5 for the packaged model)
    assert metrics["settings"]["threshold"] == 0.25
    from animeseg.settings import model_defaults
    from animeseg.weights import packaged_model

    out2 = tmp_path / "eval-packaged"
    res = runner.invoke(
        app,
        ["eval", "--model", str(packaged_model()), "--data", str(gt), "--images", str(tmp_path / "images"),
         "--device", "cpu", "--out", str(out2)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    packaged = json.loads((out2 / "metrics.json").read_text())
    assert packaged["settings"]["threshold"] == model_defaults(packaged_model()).detect.conf == 0.5
    assert "| metric | raw | refined |" in (out / "metrics.md").read_text()
    assert network_attempts() == []


def test_eval_errors_are_one_line(tmp_path, shared_onnx):
    gt = ground_truth(tmp_path, [[square(10, 10)]])
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "missing.pt"), "--data", str(gt)])
    assert res.exit_code != 0 and "missing.pt" in str(res.exception)
    res = runner.invoke(app, ["eval", "--model", str(shared_onnx), "--data", str(gt), "--imgsz", "320"])
    assert isinstance(res.exception, AnimesegError) and "--classes" in str(res.exception)  # person vs character


def test_refine_confident_refines_only_found_instances():
    from animeseg.evaluate import refine_confident

    class Grow:
        refiner = type("R", (), {"name": "grow"})()

        def refine(self, image, inst):
            out = inst[np.arange(len(inst))]
            out.masks = np.ones_like(inst.masks)
            out.refine = [{"method": "grow", "refined": True} for _ in range(len(inst))]
            return out

    raw = instances([square(0, 0), square(10, 10), square(20, 20)], [0.9, 0.1, 0.5])
    out = refine_confident(Grow(), np.zeros((H, W, 3), np.uint8), raw, threshold=0.25)
    assert out.scores.tolist() == pytest.approx([0.9, 0.1, 0.5])  # same instances, same order
    assert [m.all() for m in out.masks] == [True, False, True]
    assert (out.masks[1] == raw.masks[1]).all()
    assert [r["refined"] for r in out.refine] == [True, False, True] and "below" in out.refine[1]["reason"]
