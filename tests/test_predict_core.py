"""Prediction core: the Segmenter wrapper, the SAM and GrabCut refiners, and refiner selection."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from animeseg.instances import Instances
from animeseg.io import read_image, write_image
from animeseg.predict import Segmenter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ helpers, also under plain `pytest`
from bench.composites import coco_mask_ap, make_composites  # noqa: E402


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    """A random-init YOLOv8n-seg architecture file (Ultralytics reads the scale 'n' from the file name)."""
    from animeseg._offline import import_ultralytics

    src = Path(import_ultralytics().__file__).parent / "cfg" / "models" / "v8" / "yolov8-seg.yaml"
    dst = tmp_path_factory.mktemp("cfg") / "yolov8n-seg.yaml"
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="module")
def tiny_pt(tiny_yaml, tmp_path_factory) -> Path:
    """The random tiny model saved as a ``.pt`` checkpoint (seeded: this one finds several classes at conf 0)."""
    import torch

    torch.manual_seed(0)
    seg = Segmenter(tiny_yaml)
    path = tmp_path_factory.mktemp("w") / "tiny-seg.pt"
    seg.model.save(path)
    return path


@pytest.fixture(scope="module")
def composites():
    """A few held-out anime composites (several seeds), or a skip where ../shared is absent."""
    from conftest import RENPY

    if not (RENPY / "fg").is_dir():
        pytest.skip(f"shared sprites not found at {RENPY}")
    return make_composites(RENPY, 4, seed=11) + make_composites(RENPY, 4, seed=12)


def _image(h: int = 90, w: int = 130, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)


def test_detect_pt_full_resolution_and_model_loaded_once(tiny_pt, monkeypatch):
    seg = Segmenter(tiny_pt, imgsz=64, conf=0.0, max_det=4)
    model = seg.model
    loads = []
    import ultralytics

    monkeypatch.setattr(ultralytics.YOLO, "__init__", lambda *a, **k: loads.append(a))
    img = _image()
    first = seg.detect(img)
    second = seg(img)  # no refiner: __call__ is detect
    assert loads == [] and seg.model is model
    assert isinstance(first, Instances) and 0 < len(first) <= 4
    assert first.masks.shape == (len(first), 90, 130) and first.masks.dtype == bool
    assert first.boxes.shape == (len(first), 4) and first.boxes.dtype == np.float32
    assert (first.boxes[:, 2] <= 130 + 1e-3).all() and (first.boxes[:, 3] <= 90 + 1e-3).all()
    assert np.all(np.diff(first.scores) <= 0)
    assert set(first.classes.tolist()) <= set(first.names) and len(first.names) == 80
    assert all(r["refined"] is False and r["method"] == "none" for r in first.refine)
    np.testing.assert_array_equal(first.masks, second.masks)


def test_detect_classes_filter_and_empty(tiny_pt):
    img = _image(seed=1)
    every = Segmenter(tiny_pt, imgsz=64, conf=0.0, max_det=50).detect(img)
    wanted = int(every.classes[-1])
    only = Segmenter(tiny_pt, imgsz=64, conf=0.0, max_det=50, classes=[wanted]).detect(img)
    assert len(only) > 0 and set(only.classes.tolist()) == {wanted}
    none = Segmenter(tiny_pt, imgsz=64, conf=0.99).detect(img)  # a random model is never that sure
    assert len(none) == 0 and none.masks.shape == (0, 90, 130) and none.names == every.names


def test_detect_rejects_non_rgb(tiny_pt):
    seg = Segmenter(tiny_pt, imgsz=64)
    with pytest.raises(ValueError, match="RGB"):
        seg.detect(np.zeros((10, 10), np.uint8))


def test_segmenter_matches_plain_ultralytics_mask_ap(shared_onnx, composites, tmp_path):
    """Acceptance 1: the wrapper loses nothing against Ultralytics' own predict with full-size masks."""
    from animeseg._offline import import_ultralytics

    yolo = import_ultralytics().YOLO(str(shared_onnx), task="segment")
    seg = Segmenter(shared_onnx, imgsz=320, classes=[0])
    ours, plain = [], []
    for c in composites:
        path = tmp_path / f"{c.name}.png"
        write_image(path, c.image)
        ours.append(seg(read_image(path)))
        r = yolo.predict(str(path), imgsz=320, classes=[0], retina_masks=True, verbose=False)[0]
        h, w = c.image.shape[:2]
        if r.masks is None:
            plain.append(Instances.empty(h, w, {0: "person"}))
        else:
            plain.append(
                Instances(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy(), r.masks.data.numpy() > 0.5)
            )
    assert sum(len(p) for p in ours) >= len(composites)  # the real model does find the characters
    ap_ours, ap_plain = coco_mask_ap(composites, ours), coco_mask_ap(composites, plain)
    assert ap_plain > 0.3
    assert abs(ap_ours - ap_plain) <= 0.005, (ap_ours, ap_plain)
