"""ONNX export: a tiny YOLO and the TINY SAM exported here, run on ONNX Runtime and compared with PyTorch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from animeseg.errors import AnimesegError
from animeseg.export import (
    check_detector,
    check_sam,
    export_detector,
    export_sam,
    raise_if_failed,
    sample_image,
)
from animeseg.refine.base import Candidates, Refiner
from animeseg.refine.sam_onnx import OnnxSamRefiner, prepare_image, read_sam_json
from animeseg.sam import TINY, build_sam, save_sam
from animeseg.weights import sha256_file

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ fixtures
def _tiny_sam(seed: int):
    torch.manual_seed(seed)
    return build_sam(TINY)


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    save_sam(_tiny_sam(0), path)
    return path


@pytest.fixture(scope="module")
def sam_model(sam_checkpoint):
    from animeseg.sam import load_sam

    return load_sam(sam_checkpoint)


@pytest.fixture(scope="module")
def sam_folder(sam_checkpoint, sam_model, tmp_path_factory) -> Path:
    return export_sam(sam_checkpoint, out=tmp_path_factory.mktemp("export") / "sam_tiny", sam=sam_model)


def _tiny_yolo(path: Path, seed: int = 0) -> Path:
    """A random YOLOv8n-seg that detects and segments something, saved as a checkpoint.

    A freshly initialised head scores every anchor ~1e-4 and gives mask logits of ~1e-3 (near-empty masks),
    which any export reproduces trivially. Perturbed weights, class biases raised to -2 (scores ~0.12) and a
    stronger prototype layer give deterministic (garbage) detections with half-full masks worth comparing.
    """
    from animeseg._offline import import_ultralytics

    torch.manual_seed(seed)  # the architecture's own initialisation draws from the global generator too
    yolo = import_ultralytics().YOLO("yolov8n-seg.yaml")
    with torch.no_grad():
        for p in yolo.model.parameters():
            p.add_(torch.randn_like(p) * 0.03)
        head = yolo.model.model[-1]
        for seq in head.cv3:
            seq[-1].bias.fill_(-2.0)
        head.proto.cv3.bn.weight.mul_(100.0)
    yolo.model.names = {i: f"class{i}" for i in range(len(yolo.model.names))}
    yolo.save(path)
    return path


@pytest.fixture(scope="module")
def yolo_checkpoint(tmp_path_factory) -> Path:
    return _tiny_yolo(tmp_path_factory.mktemp("yolo") / "tiny-seg.pt")


@pytest.fixture(scope="module")
def yolo_onnx(yolo_checkpoint, tmp_path_factory) -> Path:
    return export_detector(yolo_checkpoint, imgsz=160, out=tmp_path_factory.mktemp("det"))


def _predictor_logits(sam, image: np.ndarray, boxes: np.ndarray):
    from segment_anything import SamPredictor

    predictor = SamPredictor(sam)
    predictor.set_image(image)
    with torch.no_grad():
        tb = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes), image.shape[:2])
        logits, iou, _ = predictor.predict_torch(None, None, boxes=tb, multimask_output=True, return_logits=True)
    return logits.numpy(), iou.numpy()


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random image (blurred noise), so SAM sees structure rather than white noise."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------------------- SAM
def test_sam_folder_describes_itself(sam_folder, sam_checkpoint):
    meta = read_sam_json(sam_folder)
    assert {p.name for p in sam_folder.iterdir()} == {"encoder.onnx", "decoder.onnx", "sam.json"}
    assert meta["config"] == TINY.name and meta["img_size"] == TINY.img_size == 256
    assert meta["precision"] == "fp32" and meta["opset"] == 17
    assert meta["source"]["sha256"] == sha256_file(sam_checkpoint)
    modes = {p.name: p.stat().st_mode & 0o777 for p in sam_folder.iterdir()}
    assert modes["sam.json"] == modes["encoder.onnx"]  # as readable as the models it describes
    assert [i["name"] for i in meta["encoder"]["inputs"]] == ["image", "input_size"]
    assert meta["encoder"]["inputs"][0]["shape"] == [1, 3, 256, 256]
    assert meta["encoder"]["outputs"][0]["shape"] == [1, 256, 16, 16]
    assert [i["name"] for i in meta["decoder"]["inputs"]] == ["image_embeddings", "boxes", "orig_im_size"]
    boxes_shape = meta["decoder"]["inputs"][1]["shape"]
    assert isinstance(boxes_shape[0], str) and boxes_shape[1] == 4  # a dynamic number of boxes
    assert [o["name"] for o in meta["decoder"]["outputs"]] == ["masks", "iou_predictions", "low_res_masks"]


def test_sam_parity_fp32_is_recorded(sam_folder, sam_model):
    report = check_sam(sam_folder, sam_model)
    assert report.passed, report.failures()
    assert report.metrics["mask IoU (min)"] >= 0.99
    assert report.metrics["decoder logit diff (max)"] <= 1e-3
    assert report.metrics["logit diff (max)"] <= 1e-3
    assert 0.01 < report.metrics["mask coverage"] < 0.99  # the masks compared are not trivially empty or full
    assert json.loads((sam_folder / "sam.json").read_text())["parity"]["passed"] is True


@pytest.mark.parametrize("size", [(150, 230), (300, 97), (256, 256), (600, 410)])
def test_onnx_refiner_matches_sam_predictor(sam_folder, sam_model, size):
    """Same candidates as segment_anything.SamPredictor: sizes below, at and above the model's 256 px side."""
    h, w = size
    image = _image(h, w, seed=h)
    rng = np.random.default_rng(w)
    xy = rng.uniform(0, 1, (5, 2, 2)) * [w, h]
    boxes = np.concatenate([xy.min(1), xy.max(1)], 1).astype(np.float32)
    refiner = OnnxSamRefiner(sam_folder, chunk=2)  # 5 boxes: three decoder calls
    assert isinstance(refiner, Refiner)
    cand = refiner.candidates(image, boxes, np.zeros((5, h, w), bool))
    assert isinstance(cand, Candidates)
    assert cand.masks.shape == (5, 3, h, w) and cand.masks.dtype == bool
    assert cand.scores.shape == (5, 3) and cand.scores.dtype == np.float32
    logits, iou = _predictor_logits(sam_model, image, boxes)
    ref = logits > 0
    for i in range(5):
        for k in range(3):
            union = (ref[i, k] | cand.masks[i, k]).sum()
            inter = (ref[i, k] & cand.masks[i, k]).sum()
            assert union == 0 or inter / union >= 0.99, (i, k, inter / union)
    np.testing.assert_allclose(cand.scores, iou, atol=1e-4)


def test_onnx_refiner_batches_like_single_calls_and_handles_no_boxes(sam_folder):
    image = _image(120, 200)
    boxes = np.array([[10, 10, 90, 100], [50, 20, 190, 110], [0, 0, 200, 120]], np.float32)
    refiner = OnnxSamRefiner(sam_folder)
    together = refiner.candidates(image, boxes, None)
    for i in range(3):  # order kept, and a box's masks do not depend on the other boxes of the batch
        alone = refiner.candidates(image, boxes[i : i + 1], None)
        assert (alone.masks[0] == together.masks[i]).mean() > 0.9999
    empty = refiner.candidates(image, np.zeros((0, 4), np.float32), np.zeros((0, 120, 200), bool))
    assert empty.masks.shape == (0, 3, 120, 200) and empty.scores.shape == (0, 3)


def test_prepare_image_resizes_like_sam_predictor():
    from segment_anything.utils.transforms import ResizeLongestSide

    image = _image(97, 300)
    x, input_size = prepare_image(image, 256)
    expected = ResizeLongestSide(256).apply_image(image)
    assert tuple(input_size) == expected.shape[:2] == (83, 256)
    assert x.shape == (1, 3, 256, 256) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :, :83, :].transpose(1, 2, 0), expected)
    assert not x[0, :, 83:, :].any()


def test_onnx_refiner_needs_no_torch(sam_folder):
    """The ONNX refiner imports and runs with torch made unimportable."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import numpy as np
        from animeseg.refine.sam_onnx import OnnxSamRefiner
        refiner = OnnxSamRefiner({str(sam_folder)!r})
        c = refiner.candidates(np.full((64, 96, 3), 128, np.uint8), np.array([[4, 4, 60, 50]], np.float32), None)
        assert c.masks.shape == (1, 3, 64, 96), c.masks.shape
        print("ok")
        """
    )
    env_path = f"{REPO}"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": env_path, "PATH": ""}
    )
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]


def test_sam_parity_check_fails_for_other_weights(sam_folder):
    report = check_sam(sam_folder, _tiny_sam(1))
    assert not report.passed
    with pytest.raises(AnimesegError, match="parity check failed"):
        raise_if_failed(report)
    assert json.loads((sam_folder / "sam.json").read_text())["parity"]["passed"] is False


def test_sam_int8_export_runs_and_is_close(sam_checkpoint, sam_model, sam_folder, tmp_path):
    folder = export_sam(sam_checkpoint, out=tmp_path / "sam_int8", int8=True, sam=sam_model)
    meta = read_sam_json(folder)
    assert meta["precision"] == "int8"
    assert (folder / "encoder.onnx").stat().st_size < 0.5 * (sam_folder / "encoder.onnx").stat().st_size
    report = check_sam(folder, sam_model)
    assert report.passed, report.failures()
    assert report.metrics["mask IoU (mean)"] >= 0.9
    cand = OnnxSamRefiner(folder).candidates(_image(100, 80), np.array([[5, 5, 70, 90]], np.float32), None)
    assert cand.masks.shape == (1, 3, 100, 80)


def test_read_sam_json_rejects_other_folders(tmp_path):
    with pytest.raises(AnimesegError, match="not an exported SAM folder"):
        read_sam_json(tmp_path)
    (tmp_path / "sam.json").write_text('{"format": "something-else"}')
    with pytest.raises(AnimesegError, match="not an animeseg SAM export"):
        OnnxSamRefiner(tmp_path)


# ---------------------------------------------------------------------------------------------- detector
def test_detector_export_keeps_metadata_and_explicit_size(yolo_onnx):
    import onnx

    model = onnx.load(str(yolo_onnx))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["task"] == "segment" and meta["stride"] == "32"
    assert meta["imgsz"] == "[160, 160]"  # what was asked for, not the checkpoint's training size
    assert "'class0'" in meta["names"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], *dims[2:]))  # dynamic by default


def test_static_detector_export(yolo_checkpoint, tmp_path):
    import onnx

    static = export_detector(yolo_checkpoint, imgsz=160, dynamic=False, out=tmp_path)
    dims = [d.dim_value for d in onnx.load(str(static)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 160, 160]


def test_detector_parity_fp32(yolo_checkpoint, yolo_onnx):
    report = check_detector(yolo_checkpoint, yolo_onnx, imgsz=160)
    assert report.passed, report.failures()
    assert report.metrics["mask IoU (min)"] >= 0.99
    assert report.metrics["mask coverage"] > 0.01  # the compared masks are not all empty


def _same_predictions(a: dict, b: dict) -> tuple[float, float, int]:
    """(smallest per-instance mask IoU, largest score difference, instances) of two predictions.json documents
    with the same images; instances are paired in their written order (descending score)."""
    from animeseg.masks import decode_rle, mask_iou

    assert [i["file_name"] for i in a["images"]] == [i["file_name"] for i in b["images"]]
    assert all(i["status"] == "ok" for i in a["images"] + b["images"])
    worst_iou, worst_score = 1.0, 0.0
    for image in a["images"]:
        ann_a = [x for x in a["annotations"] if x["image_id"] == image["id"]]
        ann_b = [x for x in b["annotations"] if x["image_id"] == image["id"]]
        assert len(ann_a) == len(ann_b), image["file_name"]
        for x, y in zip(ann_a, ann_b, strict=True):
            assert x["category_id"] == y["category_id"]
            worst_iou = min(worst_iou, mask_iou(decode_rle(x["segmentation"]), decode_rle(y["segmentation"])))
            worst_score = max(worst_score, abs(x["score"] - y["score"]))
    return worst_iou, worst_score, len(a["annotations"])


def test_checkpoint_and_export_give_the_same_predictions_at_any_aspect_ratio(yolo_checkpoint, yolo_onnx, tmp_path):
    """One letterbox rule for every backend: the checkpoint and its (default, dynamic) export both see the smallest
    rectangle of stride multiples around each image, so masks and scores agree whatever the aspect ratio."""
    from animeseg.io import write_image

    folder = tmp_path / "in"
    for i, (h, w) in enumerate([(96, 200), (200, 96), (150, 150), (120, 310)]):
        write_image(folder / f"{i}.png", _image(h, w, seed=i))
    docs = []
    for name, model in (("pt", yolo_checkpoint), ("onnx", yolo_onnx)):
        out = tmp_path / name
        args = ["predict", str(folder), "--model", str(model), "--imgsz", "160", "--conf", "0.05", "--max-det", "8"]
        args += ["--runtime", "onnxruntime"]  # fp32 against fp32 (OpenVINO bf16 would differ by design)
        assert _cli([*args, "--device", "cpu", "--out", str(out), "--save", "json"]) == 0
        docs.append(json.loads((out / "predictions.json").read_text()))
    worst_iou, worst_score, n = _same_predictions(*docs)
    assert n >= 4, "the perturbed model finds something on these images"
    assert worst_iou >= 0.99 and worst_score <= 1e-3, (worst_iou, worst_score)


def test_static_export_sees_the_square_the_checkpoint_sees_with_rect_off(yolo_checkpoint, tmp_path):
    """A static export's input is the fixed square; the checkpoint with ``rect=False`` gives the same instances."""
    from animeseg.detector import YoloDetector
    from animeseg.runtime.yolo import YoloOnnxDetector
    from animeseg.settings import DetectSettings

    static = export_detector(yolo_checkpoint, imgsz=160, dynamic=False, out=tmp_path)
    settings = DetectSettings(imgsz=160, conf=0.05, max_det=8, rect=False)
    pt, onnx_run = YoloDetector(yolo_checkpoint, settings), YoloOnnxDetector(static, settings, runtime="onnxruntime")
    assert not onnx_run.dynamic
    n = 0
    for i, (h, w) in enumerate([(96, 200), (200, 96), (120, 310)]):
        image = _image(h, w, seed=i)
        theirs, ours = pt.detect(image), onnx_run.detect(image)
        assert len(ours) == len(theirs)
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-3)
        for a, b in zip(ours.masks, theirs.masks, strict=True):
            assert (a & b).sum() / max((a | b).sum(), 1) >= 0.99
        n += len(ours)
    assert n >= 3, "the perturbed model finds something on these images"


def test_detector_runs_in_ultralytics(yolo_onnx):
    from animeseg.yolo import load_yolo

    result = load_yolo(yolo_onnx)(sample_image()[0], imgsz=160, conf=0.01, verbose=False)[0]
    assert result.names[0] == "class0"
    assert result.orig_shape == (360, 480)


def test_detector_int8_and_wrong_model(yolo_checkpoint, yolo_onnx, tmp_path):
    int8 = export_detector(yolo_checkpoint, imgsz=160, int8=True, out=tmp_path)
    assert int8.name == "tiny-seg.int8.onnx"
    assert int8.stat().st_size < 0.5 * yolo_onnx.stat().st_size
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert meta["imgsz"] == "[160, 160]" and meta["task"] == "segment"  # Ultralytics' metadata survives
    report = check_detector(yolo_checkpoint, int8, imgsz=160, precision="int8")
    assert report.passed, report.failures()
    # a check against weights the file was not exported from must fail
    other = _tiny_yolo(tmp_path / "other.pt", seed=2)
    assert not check_detector(other, yolo_onnx, imgsz=160).passed


def test_detector_export_refuses_bad_input(tmp_path, yolo_checkpoint):
    with pytest.raises(AnimesegError, match="model file not found"):
        export_detector(tmp_path / "missing.pt", out=tmp_path)
    with pytest.raises(AnimesegError, match=".pt checkpoint"):
        export_detector(tmp_path / "model.onnx", out=tmp_path)
    with pytest.raises(AnimesegError, match="multiple of 32"):
        export_detector(yolo_checkpoint, imgsz=100, out=tmp_path)
    with pytest.raises(AnimesegError, match="not both"):
        export_detector(yolo_checkpoint, half=True, int8=True, out=tmp_path)


# --------------------------------------------------------------------------------------------------- CLI
def _cli(args: list[str]) -> int:
    from animeseg.cli import main

    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_cli_exports_both_and_checks(yolo_checkpoint, sam_checkpoint, tmp_path, capsys, network_attempts):
    image = tmp_path / "check image.png"
    from animeseg.io import write_image

    write_image(image, _image(140, 190))
    code = _cli(
        [
            "export", "onnx", "--model", str(yolo_checkpoint), "--imgsz", "160", "--out", str(tmp_path / "out"),
            "--sam-checkpoint", str(sam_checkpoint), "--check-image", str(image),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert (tmp_path / "out" / "tiny-seg.onnx").is_file()
    folder = tmp_path / "out" / "sam_custom"
    assert {p.name for p in folder.iterdir()} == {"encoder.onnx", "decoder.onnx", "sam.json"}
    assert "detector fp32 ONNX vs PyTorch: passed" in err and "sam fp32 ONNX vs PyTorch: passed" in err
    assert (
        "6 boxes x 3 candidates on a 190x140 image" in json.loads((folder / "sam.json").read_text())["parity"]["detail"]
    )
    assert network_attempts() == []


@pytest.mark.slow
def test_packaged_model_int8_export_passes_its_check(tmp_path, capsys):
    """No --model: the packaged model, statically quantised (calibrated), passes its own int8 parity check and
    runs on the native runtime."""
    from animeseg.io import read_image
    from animeseg.runtime.yolo import YoloOnnxDetector
    from animeseg.settings import model_defaults
    from animeseg.weights import packaged_model

    code = _cli(["export", "onnx", "--int8", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "detector int8 ONNX vs PyTorch: passed" in err
    int8 = tmp_path / "anime-yolov8n-seg.int8.onnx"
    image = read_image(REPO / "examples" / "renpy-meadow.jpg")
    found = YoloOnnxDetector(int8, runtime="onnxruntime", conf=0.5).detect(image)
    assert len(found) >= 2 and found.names == {0: "character"}
    # the export predicts with the packaged model's defaults (conf, NMS IoU, refiner), not the generic ones
    assert model_defaults(int8) == model_defaults(packaged_model())
    if importlib.util.find_spec("openvino") is not None:
        # OpenVINO computed this dynamic int8 graph wrongly (no detections) until it was compiled per shape
        on_openvino = YoloOnnxDetector(int8, runtime="openvino-fp32", conf=0.5).detect(image)
        assert len(on_openvino) == len(found)
        assert np.abs(on_openvino.boxes - found.boxes).max() < 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "x.pt", "--half", "--int8"], "not both"),
        (["--sam-checkpoint", "x.pth", "--sam-type", "vit_q"], "--sam-type vit_q"),
        (["--sam-checkpoint", "missing.pth"], "missing.pth: model file not found"),
    ],
)
def test_cli_errors_are_one_line(args, message, capsys, tmp_path):
    code = _cli(["export", "onnx", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------------ predict: ONNX path vs PyTorch path
def _predict(folder: Path, out: Path, model: Path, imgsz: int, sam: Path, *extra: str) -> dict:
    args = ["predict", str(folder), "--model", str(model), "--imgsz", str(imgsz), "--refine", "sam"]
    args += ["--runtime", "onnxruntime"]  # fp32 ONNX against fp32 PyTorch (OpenVINO bf16 would differ by design)
    code = _cli([*args, "--sam-checkpoint", str(sam), "--out", str(out), "--save", "json", "--device", "cpu", *extra])
    assert code == 0
    return json.loads((out / "predictions.json").read_text())


@pytest.fixture
def accept_any_candidate(monkeypatch):
    """Fusion that takes SAM's best-agreeing candidate whatever it is, so the final masks are SAM's.

    Random SAM weights give arbitrary masks that the default checks reject (YOLO's masks would then be
    compared, which says nothing about SAM); accepting them makes the masks in predictions.json SAM's own.
    """
    import animeseg.fusion

    permissive = {"min_agreement": 0.0, "max_growth": 1e9, "min_coverage": 0.0, "max_outside": 1.0}
    monkeypatch.setattr(animeseg.fusion, "DEFAULTS", {**animeseg.fusion.DEFAULTS, **permissive})


def _assert_same_predictions(a: dict, b: dict) -> int:
    """Same images and instances; masks IoU >= 0.99 and SAM's records equal. Returns the instance count."""
    from animeseg.masks import decode_rle, mask_iou

    assert [(i["file_name"], i["status"]) for i in a["images"]] == [(i["file_name"], i["status"]) for i in b["images"]]
    assert len(a["annotations"]) == len(b["annotations"])
    for x, y in zip(a["annotations"], b["annotations"], strict=True):
        assert (x["image_id"], x["category_id"]) == (y["image_id"], y["category_id"])
        assert x["score"] == pytest.approx(y["score"], abs=1e-3)
        mx, my = decode_rle(x["segmentation"]), decode_rle(y["segmentation"])
        assert mx.any() and mask_iou(mx, my) >= 0.99
        rx, ry = x.get("refine"), y.get("refine")
        assert (rx is None) == (ry is None)
        if rx is not None:  # SAM's candidates drive these, refined or not
            assert (rx["method"], rx["refined"], rx["candidate"]) == (ry["method"], ry["refined"], ry["candidate"])
            assert rx["agreement"] == pytest.approx(ry["agreement"], abs=0.01)
            assert rx["candidate_score"] == pytest.approx(ry["candidate_score"], abs=1e-3)
    return len(a["annotations"])


def test_predict_with_exported_sam_matches_pytorch_sam(
    renpy, shared_onnx, sam_checkpoint, sam_folder, tmp_path, accept_any_candidate
):
    """`animeseg predict --refine sam` on real anime composites: the exported folder gives PyTorch's results."""
    sys.path.insert(0, str(REPO))
    from animeseg.io import write_image
    from bench.composites import make_composites

    src = tmp_path / "scenes"
    for c in make_composites(renpy, 2, seed=5, size=(320, 240), max_sprites=2):
        write_image(src / f"{c.name} scene.png", c.image)
    common = (shared_onnx, 320)
    torch_run = _predict(src, tmp_path / "torch", *common, sam_checkpoint, "--classes", "0")
    onnx_run = _predict(src, tmp_path / "onnx", *common, sam_folder, "--classes", "0")
    assert _assert_same_predictions(torch_run, onnx_run) >= 2
    assert all(a["refine"]["method"] == "sam" and a["refine"]["refined"] for a in onnx_run["annotations"])


def test_predict_all_onnx_matches_all_pytorch(sam_checkpoint, sam_folder, tmp_path, accept_any_candidate):
    """Detector and SAM both exported: `animeseg predict` on ONNX Runtime gives the PyTorch run's instances.

    The detector is the random YOLOv8n-seg of ``_tiny_yolo``, which detects garbage but deterministic boxes,
    exported with dynamic axes (the default; the static export is checked by
    ``test_static_export_sees_the_square_the_checkpoint_sees_with_rect_off``).
    """
    from animeseg.io import write_image

    pt = _tiny_yolo(tmp_path / "det.pt")
    onnx_path = export_detector(pt, imgsz=160, dynamic=True, out=tmp_path / "export")
    src = tmp_path / "images"
    image = sample_image()[0]
    write_image(src / "wide.png", image)
    write_image(src / "tall.png", np.ascontiguousarray(image[:, 100:300]))
    extra = ("--conf", "0.1", "--max-det", "3")
    torch_run = _predict(src, tmp_path / "torch", pt, 160, sam_checkpoint, *extra)
    onnx_run = _predict(src, tmp_path / "onnx", onnx_path, 160, sam_folder, *extra)
    # 6 detections, 3 of which lie inside another and are suppressed as duplicates on either runtime
    assert _assert_same_predictions(torch_run, onnx_run) == 3
    assert all(a["refine"]["refined"] for a in onnx_run["annotations"])


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_openvino_export_runs_natively_like_its_onnx(yolo_checkpoint, tmp_path, capsys):
    """export openvino: ONNX + IR, both checked against PyTorch; the IR gives the ONNX file's instances."""
    from animeseg.errors import InputError
    from animeseg.runtime.metadata import model_metadata
    from animeseg.runtime.session import create_session
    from animeseg.runtime.yolo import YoloOnnxDetector
    from animeseg.settings import DetectSettings

    code = _cli(["export", "openvino", "--model", str(yolo_checkpoint), "--imgsz", "160", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "detector fp32 OpenVINO vs PyTorch: passed" in err and "detector fp32 ONNX vs PyTorch: passed" in err
    xml, onnx_file = tmp_path / "tiny-seg.xml", tmp_path / "tiny-seg.onnx"
    assert xml.with_suffix(".bin").is_file() and onnx_file.is_file()
    assert model_metadata(xml)["names"] == model_metadata(onnx_file)["names"]  # metadata travels in rt_info
    ir = YoloOnnxDetector(xml, DetectSettings(imgsz=160, conf=0.1), runtime="openvino-fp32")
    assert ir.names == {i: f"class{i}" for i in range(80)} and len(ir.detect(sample_image()[0])) > 0
    # the same function as the ONNX file (this random model's near-equal scores make NMS itself fragile)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 160, 160)).astype(np.float32)
    ours = ir.session.run({ir.session.input_names[0]: x})
    onnx_session = create_session(onnx_file, backend="onnxruntime")
    for a, b in zip(ours, onnx_session.run({onnx_session.input_names[0]: x}), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)
    with pytest.raises(InputError, match="runs on the openvino backend"):
        create_session(xml, backend="onnxruntime")
