"""The native runtime (animeseg.runtime): sessions on both backends, and YOLO-seg ONNX exports giving the same
instances as Ultralytics on the same file (boxes within 1 px, scores within 1e-3, mask IoU >= 0.99)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from animeseg.errors import AnimesegError, InputError
from animeseg.instances import Instances
from animeseg.io import read_image
from animeseg.runtime import session as rt_session
from animeseg.runtime.metadata import class_names, onnx_metadata
from animeseg.runtime.yolo import Letterbox, YoloOnnxDetector, letterbox, masks_in_boxes, nms
from animeseg.settings import DetectSettings
from animeseg.weights import packaged_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/ helpers, also under plain `pytest`
from bench.composites import make_composites  # noqa: E402

OPEN_SPRITES = REPO.parent / "shared" / "data" / "open-sprites"
BACKENDS = ["onnxruntime"] + (["openvino"] if rt_session.openvino_available() else [])
FP32_RUNTIMES = ["onnxruntime"] + (["openvino-fp32"] if rt_session.openvino_available() else [])


# ------------------------------------------------------------------------------------------------ helpers
def _ultralytics(model: Path, conf: float, imgsz: int = 640, **settings):
    from animeseg.detector import YoloDetector

    return YoloDetector(model, DetectSettings(conf=conf, imgsz=imgsz, contained=1.0, **settings))


def assert_same_instances(ours: Instances, theirs: Instances, where: str = "") -> None:
    """The issue's parity rule: same count and classes, boxes within 1 px, scores within 1e-3, mask IoU >= 0.99."""
    assert len(ours) == len(theirs), (where, ours.scores, theirs.scores)
    assert ours.masks.shape == theirs.masks.shape
    np.testing.assert_array_equal(ours.classes, theirs.classes, err_msg=where)
    np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1.0, err_msg=where)
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-3, err_msg=where)
    for i, (a, b) in enumerate(zip(ours.masks, theirs.masks, strict=True)):
        iou = (a & b).sum() / max((a | b).sum(), 1)
        assert iou >= 0.99, f"{where} instance {i}: mask IoU {iou:.4f}"
    assert all(r["method"] == "none" and not r["refined"] for r in ours.refine)


@pytest.fixture(scope="module")
def anime_images() -> list[np.ndarray]:
    """Held-out anime composites in three shapes (wide, tall, odd) plus the repository's example image."""
    images = [read_image(REPO / "examples" / "renpy-meadow.jpg")]
    if (OPEN_SPRITES / "fg" / "wanted-dragon").is_dir():
        for seed, size in ((1, (1280, 720)), (2, (497, 901)), (3, (1023, 1023))):
            images += [c.image for c in make_composites(OPEN_SPRITES, 2, seed, size, folder="wanted-dragon")]
    return images


# ------------------------------------------------------------------------------------------- parity tests
@pytest.mark.slow
@pytest.mark.parametrize("runtime", FP32_RUNTIMES)
def test_packaged_model_matches_ultralytics(anime_images, runtime):
    """The packaged model: every instance Ultralytics finds, the same, at a low threshold (more instances)."""
    model = packaged_model()
    theirs = _ultralytics(model, conf=0.1)
    ours = YoloOnnxDetector(model, DetectSettings(conf=0.1), runtime=runtime)
    total = 0
    for k, image in enumerate(anime_images):
        expected = theirs.detect(image)
        assert_same_instances(ours.detect(image), expected, f"image {k} {image.shape}")
        total += len(expected)
    assert total >= len(anime_images)  # the model does find the characters


@pytest.mark.slow
def test_coco_int8_model_matches_ultralytics(shared_onnx, anime_images):
    """An int8 (QDQ) COCO export at 320 px: 80 classes, class-aware NMS, a second input size."""
    theirs = _ultralytics(shared_onnx, conf=0.05, imgsz=320)
    ours = YoloOnnxDetector(shared_onnx, DetectSettings(conf=0.05), runtime="onnxruntime")
    assert ours.input_size() == (320, 320) and ours.names[0] == "person"
    for k, image in enumerate(anime_images):
        assert_same_instances(ours.detect(image), theirs.detect(image), f"image {k}")


@pytest.fixture(scope="module")
def random_dynamic_onnx(tmp_path_factory) -> Path:
    """A perturbed random YOLOv8n-seg (80 classes, hundreds of garbage detections) exported with dynamic axes."""
    from test_export import _tiny_yolo

    from animeseg.export import export_detector

    folder = tmp_path_factory.mktemp("random")
    return export_detector(_tiny_yolo(folder / "random-seg.pt"), imgsz=160, dynamic=True, out=folder)


@pytest.mark.slow
def test_many_classes_and_instances_on_a_dynamic_export(random_dynamic_onnx):
    """Class-aware NMS over many overlapping boxes of many classes, ``classes`` and ``max_det``, and a dynamic
    input (the letterbox side then comes from ``imgsz``)."""
    image = np.random.default_rng(0).integers(0, 255, (150, 257, 3), np.uint8)
    for conf, classes, max_det in ((0.1, None, 300), (0.1, tuple(range(0, 80, 2)), 5)):
        theirs = _ultralytics(random_dynamic_onnx, conf=conf, imgsz=160, classes=classes, max_det=max_det)
        settings = DetectSettings(imgsz=160, conf=conf, classes=classes, max_det=max_det)
        ours = YoloOnnxDetector(random_dynamic_onnx, settings, runtime="onnxruntime")
        assert ours.input_size() == (160, 160)
        expected = theirs.detect(image)
        assert len(expected) == 5 if classes else len(expected) > 50
        assert classes is not None or len(set(expected.classes.tolist())) > 2
        assert classes is None or set(expected.classes.tolist()) <= set(classes)
        assert_same_instances(ours.detect(image), expected, f"conf {conf} classes {classes}")


# ---------------------------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("shape", [(720, 1280), (901, 497), (33, 640), (640, 640), (1, 5), (1000, 999)])
def test_letterbox_is_ultralytics_letterbox(shape):
    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(1).integers(0, 255, (*shape, 3), np.uint8)
    ours, box = letterbox(image, (640, 640))
    theirs = LetterBox((640, 640), auto=False)(image=image)
    np.testing.assert_array_equal(ours, theirs)
    assert box == Letterbox.fit(shape, (640, 640))
    # rect: the smallest rectangle of stride multiples (Ultralytics' auto letterbox), at the square's scale
    ours, box = letterbox(image, (640, 640), stride=32)
    theirs = LetterBox((640, 640), auto=True, stride=32)(image=image)
    np.testing.assert_array_equal(ours, theirs)
    assert box.size[0] % 32 == 0 and box.size[1] % 32 == 0 and max(box.size) == 640
    assert box.new == Letterbox.fit(shape, (640, 640)).new


def test_nms_is_torchvision_nms():
    import torch
    import torchvision

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (400, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (400, 2)).astype(np.float32)], 1)
    scores = rng.uniform(0, 1, 400).astype(np.float32)
    scores[10:20] = scores[0]  # ties keep their input order
    for iou in (0.3, 0.5, 0.7):
        expected = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou), expected)


@pytest.mark.parametrize(("h", "w"), [(720, 1280), (901, 497), (37, 41), (640, 640), (160, 160), (1, 300)])
def test_masks_in_boxes_is_process_mask_native(h, w):
    """Masks computed inside the boxes only equal Ultralytics' full-image ones, letterbox shapes odd and even."""
    import torch

    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.utils.ops import process_mask_native

    rng = np.random.default_rng(h * w)
    protos = rng.normal(0, 1, (32, 40, 40)).astype(np.float32)
    coeffs = rng.normal(0, 0.3, (6, 32)).astype(np.float32)
    xy = rng.uniform(-0.2, 0.9, (6, 2)) * (w, h)
    boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.8, (6, 2)) * (w, h)], 1).astype(np.float32)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    boxes[0] = [0, 0, w, h]
    theirs = process_mask_native(torch.from_numpy(protos), torch.from_numpy(coeffs), torch.from_numpy(boxes), (h, w))
    ours = masks_in_boxes(protos, coeffs, boxes, (h, w))
    theirs = theirs.numpy().astype(bool)
    assert ours.shape == theirs.shape
    differ = (ours != theirs).sum((1, 2))
    assert (differ <= np.maximum(theirs.sum((1, 2)) // 1000, 2)).all(), differ  # float rounding at the threshold


@pytest.mark.skipif(
    not (rt_session.openvino_available() and rt_session.bf16_supported()), reason="this CPU has no bf16 in OpenVINO"
)
def test_bf16_finds_the_same_characters():
    """bf16 inference is not bit-exact; it finds the same characters with nearly the same masks (its held-out AP
    is in docs/benchmarks.md)."""
    image = read_image(REPO / "examples" / "renpy-meadow.jpg")
    fp32 = YoloOnnxDetector(packaged_model(), runtime="onnxruntime").detect(image)
    bf16 = YoloOnnxDetector(packaged_model(), runtime="openvino-bf16")
    assert bf16.session.precision == "bf16"
    found = bf16.detect(image)
    assert len(found) == len(fp32) > 0
    # near-equal scores may come in another order: pair the characters left to right
    found, fp32 = found[np.argsort(found.boxes[:, 0])], fp32[np.argsort(fp32.boxes[:, 0])]
    np.testing.assert_allclose(found.boxes, fp32.boxes, atol=8)
    for a, b in zip(found.masks, fp32.masks, strict=True):
        assert (a & b).sum() / (a | b).sum() > 0.95


def test_detect_settings_and_errors(tmp_path):
    """Per-call settings replace the detector's; a non-RGB image, a GPU device, a non-ONNX file: one line each."""
    model = packaged_model()
    detector = YoloOnnxDetector(model, runtime="onnxruntime")
    assert detector.settings.conf == 0.5  # the packaged model's own default (its sidecar)
    assert detector.names == {0: "character"}
    image = read_image(REPO / "examples" / "renpy-meadow.jpg")
    low = detector.detect(image, DetectSettings(conf=0.1))
    high = detector.detect(image)
    assert len(low) >= len(high) > 0
    assert (np.diff(low.scores) <= 0).all() and low.masks.shape[1:] == image.shape[:2]
    assert len(detector.detect(image, DetectSettings(conf=0.1, classes=(5,)))) == 0
    # the packaged export is dynamic: a 960x540 image gets the 640x384 rectangle, or the square without rect
    assert detector.dynamic and detector.infer(image)[1].size == (384, 640)
    square = detector.detect(image, DetectSettings(rect=False))
    assert detector.infer(image, DetectSettings(rect=False))[1].size == (640, 640)
    assert len(square) == len(high) and np.abs(square.scores - high.scores).max() < 0.05
    with pytest.raises(ValueError, match="RGB"):
        detector.detect(image[..., 0])
    with pytest.raises(AnimesegError, match="CPU"):
        YoloOnnxDetector(model, device="cuda:0")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff not a model")
    with pytest.raises(InputError, match="bad.onnx"):
        YoloOnnxDetector(bad)


def test_load_detector_routes_onnx_to_the_native_runtime(tmp_path):
    from animeseg.detector import load_detector

    detector = load_detector(packaged_model(), DetectSettings(conf=0.3, runtime="onnxruntime"))
    assert isinstance(detector, YoloOnnxDetector) and detector.settings.conf == 0.3
    assert detector.session.backend == "onnxruntime"
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "model.onnx").symlink_to(packaged_model())
    assert isinstance(load_detector(folder), YoloOnnxDetector)


# ------------------------------------------------------------------------------------------------ sessions
_WEIGHT = np.random.default_rng(0).normal(0, 1, (8, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def dynamic_batch_onnx(tmp_path_factory) -> Path:
    """y = relu(x @ W) + 1 with a dynamic batch axis, and two pieces of metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["m"]),
            helper.make_node("Relu", ["m"], ["r"]),
            helper.make_node("Add", ["r", "one"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(_WEIGHT, "W"), numpy_helper.from_array(np.ones(4, np.float32), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'a', 1: 'b'}", "task": "segment"})
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_runs_a_dynamic_batch(dynamic_batch_onnx, backend):
    session = rt_session.create_session(dynamic_batch_onnx, backend=backend, precision="fp32", threads=1, cache=False)
    assert session.backend == backend and session.precision == "fp32" and session.threads == 1
    assert session.input_names == ["x"] and session.output_names == ["y"]
    assert session.inputs[0].shape == (None, 8)
    weight = _WEIGHT
    for batch in (1, 3, 5):
        x = np.random.default_rng(batch).normal(0, 1, (batch, 8)).astype(np.float32)
        (y,) = session.run({"x": x})
        np.testing.assert_allclose(y, np.maximum(x @ weight, 0) + 1, rtol=1e-5, atol=1e-5)


def test_session_choices_and_errors(dynamic_batch_onnx, tmp_path, monkeypatch):
    expected = "openvino" if rt_session.openvino_available() else "onnxruntime"
    assert rt_session.resolve_backend("auto") == expected
    assert rt_session.parse_runtime("openvino-bf16") == ("openvino", "bf16")
    with pytest.raises(AnimesegError, match="--runtime tensorrt: choose one of auto, openvino"):
        rt_session.parse_runtime("tensorrt")
    with pytest.raises(AnimesegError, match="unknown backend"):
        rt_session.create_session(dynamic_batch_onnx, backend="tensorrt")
    with pytest.raises(AnimesegError, match="bf16 needs the openvino backend"):
        rt_session.create_session(dynamic_batch_onnx, backend="onnxruntime", precision="bf16")
    with pytest.raises(InputError, match="not found"):
        rt_session.create_session(tmp_path / "missing.onnx")
    monkeypatch.setattr(rt_session, "openvino_available", lambda: False)
    assert rt_session.resolve_backend("auto") == "onnxruntime"
    with pytest.raises(AnimesegError, match="openvino package is not installed"):
        rt_session.resolve_backend("openvino")
    monkeypatch.setattr(rt_session, "onnxruntime_available", lambda: False)  # neither: a broken install
    with pytest.raises(AnimesegError, match="no ONNX runtime is installed"):
        rt_session.resolve_backend("auto")
    with pytest.raises(AnimesegError, match=r"pip install 'animeseg\[onnxruntime\]'"):
        rt_session.resolve_backend("onnxruntime")


def test_onnx_metadata_without_onnx(dynamic_batch_onnx, tmp_path):
    import onnx

    for path in (dynamic_batch_onnx, packaged_model()):
        expected = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        assert onnx_metadata(path) == expected
    assert class_names(onnx_metadata(dynamic_batch_onnx)) == {0: "a", 1: "b"}
    assert class_names({}) == {} and class_names({"names": "not python"}) == {}
    text = tmp_path / "text.onnx"
    text.write_text("hello, not protobuf\n" * 3)
    with pytest.raises(InputError, match="text.onnx"):
        onnx_metadata(text)


# ------------------------------------------------------------------------------------------- batch loop
def test_read_ahead_reads_the_next_image_in_the_background(tmp_path):
    """Each read starts the next image's; a read error belongs to its own item; skipped items waste one read."""
    import threading

    from animeseg.errors import InputError as BadInput
    from animeseg.media import MediaItem
    from animeseg.readahead import ReadAhead

    calls: list[tuple[str, str]] = []

    def read(path: Path) -> np.ndarray:
        calls.append((path.name, threading.current_thread().name))
        if path.name == "bad.png":
            raise BadInput(path, "not an image")
        return np.full((2, 2, 3), len(calls), np.uint8)

    names = ["a.png", "b.png", "bad.png", "c.png", "d.png", "e.png"]
    items = [MediaItem(tmp_path / n, n, Path(n).stem, "image") for n in names]
    with ReadAhead(items, read) as reader:
        assert reader.read(items[0]).shape == (2, 2, 3)
        reader.read(items[1])
        with pytest.raises(BadInput, match="not an image"):
            reader.read(items[2])
        reader.read(items[4])  # c skipped (resume): its read ahead is wasted; d is read here, e ahead
        reader.read(items[5])
    assert sorted(n for n, _ in calls) == sorted(names)  # each image read exactly once
    assert dict(calls)["b.png"].startswith("animeseg-read") and dict(calls)["a.png"] == "MainThread"


def test_openvino_sessions_leave_its_telemetry_off(tmp_path):
    """Importing openvino starts its usage telemetry (files under ~/intel, events to Google Analytics) unless it
    believes it runs in CI: animeseg's sessions must leave it off, with CI unset as on a user's machine."""
    pytest.importorskip("openvino")
    import os
    import subprocess
    import sys

    code = (
        "import os; from animeseg.runtime.session import create_session; from animeseg.weights import packaged_model; "
        "create_session(packaged_model(), backend='openvino'); import openvino_telemetry as t; "
        "assert not t.Telemetry().consent; assert 'CI' not in os.environ"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (tmp_path / "intel").exists()
