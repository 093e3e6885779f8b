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


# ----------------------------------------------------------------------------------------------- refiners
@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> Path:
    """A randomly initialised TINY SAM checkpoint (256 px input, 32-dim encoder)."""
    import torch

    from animeseg.sam import TINY, build_sam, save_sam

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    save_sam(build_sam(TINY), path)
    return path


def _boxes(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, w * 0.5, n), rng.uniform(0, h * 0.5, n)
    return np.stack([x1, y1, x1 + rng.uniform(8, w * 0.5, n), y1 + rng.uniform(8, h * 0.5, n)], 1).astype(np.float32)


def test_build_refiner_names_and_errors(tiny_sam, tmp_path, monkeypatch):
    import types

    from animeseg.errors import AnimesegError, MissingWeightsError
    from animeseg.refine import build_refiner
    from animeseg.refine.grabcut import GrabCutRefiner
    from animeseg.refine.sam import SamRefiner

    assert build_refiner("none") is None
    assert isinstance(build_refiner("grabcut"), GrabCutRefiner)
    sam = build_refiner("sam", tiny_sam, device="cpu")
    assert isinstance(sam, SamRefiner) and sam.name == "sam"
    with pytest.raises(AnimesegError, match="unknown refiner"):
        build_refiner("magic")
    with pytest.raises(AnimesegError, match="checkpoint"):
        build_refiner("sam")
    with pytest.raises(MissingWeightsError):
        build_refiner("sam", tmp_path / "nope.pth")
    with pytest.raises(AnimesegError, match="vit_h"):
        build_refiner("sam", tiny_sam, sam_type="vit_h")
    with pytest.raises(AnimesegError, match="sam.json"):
        build_refiner("sam", tmp_path)
    # an exported SAM folder goes to the ONNX refiner (its module belongs to the export helper; stand in for it)
    (tmp_path / "sam.json").write_text("{}")
    fake = types.ModuleType("animeseg.refine.sam_onnx")
    fake.OnnxSamRefiner = lambda folder: ("onnx", Path(folder))
    monkeypatch.setitem(sys.modules, "animeseg.refine.sam_onnx", fake)
    assert build_refiner("sam", tmp_path) == ("onnx", tmp_path)


def test_sam_batched_candidates_match_per_box_predictor(tiny_sam):
    import torch
    from segment_anything import SamPredictor

    from animeseg.refine.sam import SamRefiner
    from animeseg.sam import load_sam

    image, boxes = _image(70, 100, seed=3), _boxes(5, 70, 100)
    refiner = SamRefiner(load_sam(tiny_sam), chunk=2)
    cands = refiner.candidates(image, boxes, np.zeros((5, 70, 100), bool))
    assert refiner.encoder_calls == 1 and refiner.decoder_calls == 3  # 5 boxes in chunks of 2, one encoding
    assert cands.masks.shape == (5, 3, 70, 100) and cands.masks.dtype == bool
    assert cands.scores.shape == (5, 3) and cands.scores.dtype == np.float32
    # the same model through segment-anything's own predictor, one box at a time
    predictor = SamPredictor(load_sam(tiny_sam))
    predictor.set_image(image)
    for i, box in enumerate(boxes):
        with torch.inference_mode():
            m, s, _ = predictor.predict(box=box, multimask_output=True)
        assert (m != cands.masks[i]).mean() < 1e-3  # float noise may flip a logit sitting right at 0
        np.testing.assert_allclose(s, cands.scores[i], atol=1e-4)
    assert cands.masks.any()  # random weights still produce some mask pixels: the comparison meant something


def test_sam_refine_encodes_once_per_image(tiny_pt, tiny_sam):
    from animeseg.refine import build_refiner

    refiner = build_refiner("sam", tiny_sam, device="cpu")
    seg = Segmenter(tiny_pt, refine=refiner, imgsz=64, conf=0.0, max_det=20, contained=1.0)
    images = [_image(80, 120, seed=s) for s in range(3)]
    counts = []
    for img in images:
        detected = seg.detect(img)
        out = seg.refine(img, detected)
        counts.append(len(detected))
        assert len(out) == len(detected) and out.masks.shape == detected.masks.shape
        np.testing.assert_array_equal(out.classes, detected.classes)
        np.testing.assert_array_equal(out.scores, detected.scores)
        assert all(r["method"] == "sam" and isinstance(r["refined"], bool) and r["reason"] for r in out.refine)
        assert all(r["candidate"] in (0, 1, 2) and r["agreement"] is not None for r in out.refine)
        for i, r in enumerate(out.refine):
            if not r["refined"]:  # YOLO's mask kept, less the pixels settled in favour of another instance
                assert not (out.masks[i] & ~detected.masks[i]).any()
                assert detected.masks[i].sum() - out.masks[i].sum() == r["contested"]
    assert sum(counts) > 6
    assert refiner.chunk == 4  # the CPU default
    # one encoder pass per image; boxes in batches of `chunk`
    assert refiner.encoder_calls == 3 and refiner.decoder_calls == sum(-(-n // refiner.chunk) for n in counts)


def _synthetic_character(h: int, w: int, seed: int = 0):
    """A flat-coloured 'character' with a dark outline on a noisy background; truth and a blocky YOLO-like mask."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 170, (h, w, 3), np.uint8)
    image = (0.5 * image + 0.5 * image.mean(axis=(0, 1))).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    body = ((xx - w * 0.5) / (w * 0.18)) ** 2 + ((yy - h * 0.6) / (h * 0.3)) ** 2 <= 1
    head = (xx - w * 0.5) ** 2 + (yy - h * 0.25) ** 2 <= (min(h, w) * 0.12) ** 2
    truth = body | head
    image[truth] = (230, 120, 160)
    import cv2

    edge = truth & ~cv2.erode(truth.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    image[edge] = (30, 20, 40)
    cell = max(h, w) // 16
    small = cv2.resize(truth.astype(np.float32), (w // cell, h // cell), interpolation=cv2.INTER_AREA)
    yolo = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    return image, truth, yolo


@pytest.mark.parametrize("size,max_side", [((120, 160), 400), ((480, 640), 96)])
def test_grabcut_candidates_improve_a_blocky_mask(size, max_side):
    from animeseg.fusion import fuse
    from animeseg.masks import mask_iou, mask_to_box
    from animeseg.refine.grabcut import GrabCutRefiner

    h, w = size
    image, truth, yolo = _synthetic_character(h, w)
    refiner = GrabCutRefiner(max_side=max_side)
    box = np.array([mask_to_box(yolo)], np.float32)
    cands = refiner.candidates(image, box, yolo[None])
    k = len(refiner.bands)
    assert cands.masks.shape == (1, k, h, w) and cands.scores.shape == (1, k)
    assert ((cands.scores >= 0) & (cands.scores <= 1)).all()
    before = mask_iou(yolo, truth)
    assert all(mask_iou(m, truth) > before + 0.02 for m in cands.masks[0]), before
    inst = Instances(box, [0.9], [0], yolo[None], {0: "character"})
    out = fuse(inst, cands, refiner.name)
    assert out.refine[0]["refined"] and mask_iou(out.masks[0], truth) > max(0.9, before)


def test_grabcut_initial_models_are_opencv_gmms_of_each_side():
    """The sampled k-means start: OpenCV's (1, 65) layout, weights summing to 1, means on the side's colours,
    positive-definite covariances; GrabCut accepts them and cuts the same as its own start on a clear image."""
    import cv2

    from animeseg.refine.grabcut import _initial_models

    image, truth, yolo = _synthetic_character(240, 320)
    bgr = np.ascontiguousarray(image[..., ::-1])
    trimap = np.where(yolo, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    trimap[cv2.erode(yolo.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0] = cv2.GC_FGD
    bgd, fgd = _initial_models(bgr, trimap)
    for model, side in ((bgd, ~yolo), (fgd, yolo)):
        assert model.shape == (1, 65) and model.dtype == np.float64
        weights, means, covs = model[0, :5], model[0, 5:20].reshape(5, 3), model[0, 20:].reshape(5, 3, 3)
        assert abs(weights.sum() - 1) < 1e-9
        lo, hi = bgr[side].min(0), bgr[side].max(0)
        assert ((means >= lo - 1e-6) & (means <= hi + 1e-6))[weights > 0].all()
        assert all(np.linalg.eigvalsh(c).min() > 0 for c, wt in zip(covs, weights, strict=True) if wt > 0)
    ours, theirs = trimap.copy(), trimap.copy()
    cv2.setRNGSeed(0)
    cv2.grabCut(bgr, ours, None, bgd, fgd, 2, cv2.GC_EVAL)
    cv2.setRNGSeed(0)
    cv2.grabCut(bgr, theirs, None, np.zeros((1, 65)), np.zeros((1, 65)), 2, cv2.GC_INIT_WITH_MASK)
    fg = [(t == cv2.GC_FGD) | (t == cv2.GC_PR_FGD) for t in (ours, theirs)]
    assert (fg[0] != fg[1]).mean() < 0.002
    assert (fg[0] != truth).mean() < (yolo != truth).mean()
    # a side with too few pixels to cluster: None, and GrabCut starts from its own k-means
    assert _initial_models(bgr, np.full(trimap.shape, cv2.GC_PR_FGD, np.uint8)) is None


def test_grabcut_degenerate_inputs():
    from animeseg.fusion import fuse
    from animeseg.refine.grabcut import GrabCutRefiner

    image = _image(40, 50)
    full = np.ones((1, 40, 50), bool)  # the mask is the whole image: nothing to learn background from
    empty = np.zeros((1, 40, 50), bool)
    tiny = np.zeros((1, 40, 50), bool)
    tiny[0, 10:12, 10:12] = True
    refiner = GrabCutRefiner()
    for mask, box in ((full, [0, 0, 50, 40]), (empty, [5, 5, 20, 20]), (tiny, [10, 10, 12, 12])):
        c = refiner.candidates(image, np.array([box], np.float32), mask)
        assert c.masks.shape == (1, len(refiner.bands), 40, 50)
        out = fuse(Instances(np.array([box]), [0.9], [0], mask), c, "grabcut")
        assert len(out) == 1 and out.refine[0]["reason"]
    c = refiner.candidates(image, np.array([[0, 0, 50, 40]], np.float32), full)
    assert not c.masks.any() and not c.scores.any()  # no background to learn from: nothing proposed
    out = fuse(Instances(np.array([[0, 0, 50, 40]]), [0.9], [0], full), c, "grabcut")
    assert out.refine[0]["refined"] is False and "empty" in out.refine[0]["reason"]
    np.testing.assert_array_equal(out.masks, full)
    none = refiner.candidates(image, np.zeros((0, 4), np.float32), np.zeros((0, 40, 50), bool))
    assert none.masks.shape == (0, len(refiner.bands), 40, 50)


def test_grabcut_raises_mask_ap_on_anime_composites(shared_onnx, composites):
    """Acceptance 2: --refine grabcut raises COCO mask AP by at least +0.06 and loses no instance."""
    from animeseg.refine import build_refiner

    seg = Segmenter(shared_onnx, imgsz=320, classes=[0], refine=build_refiner("grabcut"))
    plain, refined = [], []
    for c in composites:
        detected = seg.detect(c.image)
        plain.append(detected)
        refined.append(seg.refine(c.image, detected))
        assert len(refined[-1]) == len(detected)
        np.testing.assert_array_equal(refined[-1].scores, detected.scores)
    ap_plain, ap_refined = coco_mask_ap(composites, plain), coco_mask_ap(composites, refined)
    assert ap_refined >= ap_plain + 0.06, (ap_plain, ap_refined)
    assert sum(r["refined"] for p in refined for r in p.refine) >= 0.8 * sum(len(p) for p in refined)


def test_a_new_refiner_is_one_class(tiny_pt):
    """The documented extension point: any object with ``name`` and ``candidates`` plugs into the Segmenter."""
    import cv2

    from animeseg.refine.base import Candidates, Refiner

    class DilateRefiner:
        name = "dilate"

        def candidates(self, image, boxes, masks):
            grown = [
                [cv2.dilate(m.astype(np.uint8), np.ones((2 * r + 1,) * 2, np.uint8)) > 0 for r in (1, 2)] for m in masks
            ]
            return Candidates(np.array(grown, bool).reshape(len(masks), 2, *masks.shape[1:]), np.ones((len(masks), 2)))

    assert isinstance(DilateRefiner(), Refiner)
    seg = Segmenter(tiny_pt, refine=DilateRefiner(), imgsz=64, conf=0.0, max_det=3)
    img = _image(seed=5)
    out = seg(img)
    assert len(out) == len(seg.detect(img)) > 0
    assert all(r["method"] == "dilate" and r["candidate"] in (0, 1) for r in out.refine)


def test_segmenter_keeps_torch_multithreaded(tiny_pt):
    """Importing Ultralytics first would leave torch (and SAM) on one thread; the Segmenter must not."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    code = (
        f"from animeseg.predict import Segmenter; Segmenter({str(tiny_pt)!r}); "
        "import os, torch; print(torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    threads, omp = out.stdout.decode().split()
    default = (
        subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env, capture_output=True
        )
        .stdout.decode()
        .strip()
    )
    assert omp == "1"  # Ultralytics did set it...
    assert threads == default  # ...but torch kept its own default
