"""The learned refiner: geometry, batched runtime calls, fusion of its alphas, cut-outs, its training pieces.

The network here is tiny and made by hand (``onnx.helper``): a 1x1 convolution whose logit is ``12 * own - 6``,
so its alpha is the coarse mask itself. That pins down the plumbing (crops, batching, pasting, fusion) exactly;
the packaged network's quality is measured by ``bench/learned.py`` on held-out art, not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from animeseg.fusion import fuse
from animeseg.instances import Instances
from animeseg.refine.base import Candidates
from animeseg.refine.learned import (
    CHANNELS,
    SIZE,
    LearnedRefiner,
    colour_prior,
    crop_boxes,
    crop_inputs,
    paste_alpha,
)


def tiny_network(path: Path, channel: int = 3) -> Path:
    """An ONNX 'refiner' whose alpha copies input ``channel`` (3: the instance's own coarse mask)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((1, CHANNELS, 1, 1), np.float32)
    w[0, channel] = 12.0
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-6.0], np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def scene(h: int = 240, w: int = 320) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image with two overlapping 'characters': (image, boxes (2, 4), masks (2, H, W))."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    masks = np.zeros((2, h, w), bool)
    masks[0, 40:200, 60:160] = True
    masks[1, 60:220, 140:260] = True
    masks[0] &= ~masks[1]  # the second stands in front
    boxes = np.array([[60, 40, 160, 200], [140, 60, 260, 220]], np.float32)
    return image, boxes, masks


def test_crop_boxes_pad_and_clip():
    crops = crop_boxes(np.array([[10, 20, 110, 220], [-5, -5, 400, 300]]), 240, 320)
    assert crops[0].tolist() == [0, 0, 125, 240]  # 15% of 100 / 200 on each side, clipped at the image
    assert crops[1].tolist() == [0, 0, 320, 240]


def test_inputs_show_own_and_other_masks(tmp_path):
    image, boxes, masks = scene()
    crops = crop_boxes(boxes, *image.shape[:2])
    x = crop_inputs(image, masks, crops)
    assert x.shape == (2, CHANNELS, SIZE, SIZE) and x.dtype == np.float32
    for i in range(2):
        x1, y1, x2, y2 = crops[i]
        own = paste_alpha(x[i, 3], crops[i], *image.shape[:2]) >= 128
        other = paste_alpha(x[i, 4], crops[i], *image.shape[:2]) >= 128
        region = np.zeros(image.shape[:2], bool)
        region[y1:y2, x1:x2] = True
        assert (own ^ masks[i]).sum() <= 0.03 * masks[i].sum()
        assert (other ^ (masks[1 - i] & region)).sum() <= 0.03 * masks[1 - i].sum()
        assert not (own & other).sum() > 0.01 * masks[i].sum()


def test_colour_prior_says_which_colours_the_coarse_mask_holds():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32] = (200, 40, 40)  # the character's red, left half
    rgb[:, 32:] = (40, 200, 40)  # green background
    rgb[:8, 40:48] = (200, 40, 40)  # a red part the coarse mask missed (a hat's tip)
    own = np.zeros((64, 64), np.float32)
    own[:, :32] = 1.0
    prior = colour_prior(rgb, own)
    assert prior.shape == (64, 64) and prior.dtype == np.float32
    assert prior[:8, 40:48].min() > 0.9 and prior[20:, 40:].max() < 0.1 and prior[:, :32].min() > 0.9
    assert np.all(colour_prior(rgb, np.zeros((64, 64))) == 0.5)  # nothing inside: no evidence either way
    image, boxes, masks = scene()
    crops = crop_boxes(boxes, *image.shape[:2])
    assert crop_inputs(image, masks, crops, channels=5).shape == (2, 5, SIZE, SIZE)  # networks before the prior


def test_one_batched_call_per_image_and_candidates_follow_the_network(tmp_path):
    image, boxes, masks = scene()
    ref = LearnedRefiner(tiny_network(tmp_path / "tiny.onnx"))
    cands = ref.candidates(image, boxes, masks)
    assert ref.calls == 1  # all instances of the image in one batch
    assert cands.masks.shape == (2, 1, *image.shape[:2]) and cands.alphas.shape == cands.masks.shape
    assert cands.alphas.dtype == np.uint8
    for i in range(2):
        iou = (cands.masks[i, 0] & masks[i]).sum() / (cands.masks[i, 0] | masks[i]).sum()
        assert iou > 0.97
    assert np.all((cands.scores > 0.9) & (cands.scores <= 1.0))  # the tiny network is sure everywhere

    # a network that follows the *other* instances' channel proposes the neighbour: fusion must reject it
    wrong = LearnedRefiner(tiny_network(tmp_path / "wrong.onnx", channel=4))
    inst = Instances(boxes, [0.9, 0.8], [0, 0], masks)
    out = fuse(inst, wrong.candidates(image, boxes, masks), method="learned")
    assert not any(r["refined"] for r in out.refine)
    assert np.array_equal(out.masks, masks)


def test_no_instances_and_missing_network(tmp_path):
    image, _, _ = scene()
    ref = LearnedRefiner(tiny_network(tmp_path / "tiny.onnx"))
    cands = ref.candidates(image, np.zeros((0, 4)), np.zeros((0, *image.shape[:2]), bool))
    assert cands.masks.shape == (0, 1, *image.shape[:2]) and ref.calls == 0
    from animeseg.errors import AnimesegError

    with pytest.raises(AnimesegError, match="missing"):
        LearnedRefiner(tmp_path / "nope.onnx")


def test_fusion_carries_the_accepted_alpha_and_clears_lost_pixels():
    h, w = 60, 80
    masks = np.zeros((2, h, w), bool)
    masks[0, 10:50, 10:40] = True
    masks[1, 10:50, 35:70] = True
    inst = Instances([[10, 10, 40, 50], [35, 10, 70, 50]], [0.9, 0.8], [0, 0], masks)
    alphas = np.where(masks, 200, 0).astype(np.uint8)[:, None]
    cands = Candidates(masks[:, None].copy(), np.ones((2, 1), np.float32), alphas=alphas)
    out = fuse(inst, cands, method="learned")
    assert out.alphas is not None and out.alphas.shape == (2, h, w)
    assert out.alphas[0, 20, 20] == 200
    lost = masks[1] & ~out.masks[1]  # the shared columns went to the more confident instance
    assert lost.any() and not out.alphas[1][lost].any()
    assert out[[1]].alphas.shape == (1, h, w)  # indexing keeps them aligned


def test_cutout_uses_the_refiners_alpha_snapped_to_the_art():
    from animeseg.writers import cutout

    image = np.full((80, 80, 3), 40, np.uint8)
    image[20:60, 20:60] = 220  # the character: a bright square
    mask = np.zeros((80, 80), bool)
    mask[22:62, 20:60] = True  # the refiner's mask and alpha, 2 px too low
    soft = np.where(mask, 255, 0).astype(np.uint8)
    rgba = cutout(image, mask, alpha="matte", soft=soft)
    truth = image[..., 0] > 128
    wrong = (np.abs(rgba[..., 3] / 255.0 - truth) > 0.5).sum()
    assert wrong < 0.75 * (mask ^ truth).sum()  # the edges moved towards the art's
    assert rgba[21, 40, 3] > 60  # the row the refiner missed is partly taken back
    assert rgba[40, 40, 3] == 255 and rgba[5, 5, 3] == 0
    assert np.array_equal(cutout(image, mask, alpha="binary", soft=soft)[..., 3], np.where(mask, 255, 0))


def test_visible_alphas_cover_lower_characters():
    from animeseg.data.painting import visible_alphas

    a = np.zeros((10, 10, 4), np.uint8)
    a[..., 3] = 255
    b = a.copy()
    b[..., 3] = 128
    record = {"size": [10, 10], "foregrounds": [{"matrix": [[1, 0, 0], [0, 1, 0]]}, {"matrix": [[1, 0, 5], [0, 1, 0]]}]}
    out = visible_alphas(record, [a, b])
    assert out.shape == (2, 10, 10)
    assert np.allclose(out[1, :, 5:], 128 / 255)  # the top one shows whole
    assert np.allclose(out[0, :, 5:], 1 - 128 / 255, atol=1e-6)  # the lower one shows through what is left
    assert np.allclose(out[0, :, :5], 1.0) and np.all(out.sum(0) <= 1 + 1e-6)


def test_samples_from_detections_and_truth():
    from animeseg.train.refiner_data import ALPHA, KINDS, OWN, Composite, image_samples

    image, boxes, masks = scene()
    comp = Composite("x", image, masks.astype(np.float32))
    found = Instances(boxes, [0.9, 0.3], [0, 0], masks)
    samples, kinds = image_samples(comp, found, np.random.default_rng(0))
    assert [KINDS[k] for k in kinds] == ["detected", "detected", "true", "true"]
    assert all(s.shape == (7, SIZE, SIZE) and s.dtype == np.uint8 for s in samples)
    assert samples[0][OWN].max() == 255 and samples[2][OWN].max() == 0  # made-up masks come at training time
    assert samples[0][ALPHA].mean() > 50


def test_training_pieces_make_a_network_the_refiner_runs(tmp_path):
    pytest.importorskip("torch")
    from animeseg.train.refiner import export, fit, made_up_mask, training_pair

    rng = np.random.default_rng(0)
    alpha = np.zeros((SIZE, SIZE), np.uint8)
    alpha[40:220, 80:180] = 255
    others = np.zeros((SIZE, SIZE), bool)
    others[100:200, 150:250] = True
    wrong = made_up_mask(alpha, others, rng)
    assert wrong.shape == (SIZE, SIZE) and wrong.dtype == bool and wrong.any()

    sample = np.zeros((7, SIZE, SIZE), np.uint8)
    sample[:3] = 120
    sample[5] = alpha
    sample[6] = others * 255
    x, y = training_pair(sample, 1, rng)
    assert x.shape == (CHANNELS, SIZE, SIZE) and y.shape == (SIZE, SIZE) and 0 <= y.min() <= y.max() <= 1

    data = tmp_path / "samples"
    data.mkdir()
    np.save(data / "samples.npy", np.stack([sample, sample]))
    np.save(data / "kinds.npy", np.array([1, 1], np.int8))
    ckpt = fit([data], tmp_path / "fit", steps=2, batch=2, log=lambda m: None)
    onnx_file = export(ckpt, tmp_path / "refiner.onnx")
    image, boxes, masks = scene()
    cands = LearnedRefiner(onnx_file).candidates(image, boxes, masks)
    assert cands.masks.shape == (2, 1, *image.shape[:2])

    # the half-resolution network: a second stage keeps the first one's architecture, and the export follows it
    half = fit([data], tmp_path / "half1", steps=1, batch=2, stem=2, log=lambda m: None)
    half = fit([data], tmp_path / "half2", steps=1, batch=2, init=half, log=lambda m: None)
    import torch

    state = torch.load(half, map_location="cpu")
    assert state["stem"] == 2 and any(k.startswith("full.") for k in state["state_dict"])
    cands = LearnedRefiner(export(half, tmp_path / "half.onnx")).candidates(image, boxes, masks)
    assert cands.masks.shape == (2, 1, *image.shape[:2]) and cands.alphas is not None


def test_packaged_model_refines_with_the_learned_refiner_by_default(tmp_path):
    """The default switch: predict without --refine uses the packaged network; --refine none turns it off."""
    import json

    from animeseg.cli import main
    from animeseg.settings import model_defaults
    from animeseg.weights import example_image, packaged_model

    assert model_defaults(packaged_model()).refine == "learned"
    runs = {}
    for name, extra in (("default", []), ("none", ["--refine", "none"])):
        out = tmp_path / name
        with pytest.raises(SystemExit) as done:
            main(["predict", str(example_image()), "--save", "json", "--out", str(out), *extra])
        assert done.value.code == 0
        runs[name] = json.loads((out / "predictions.json").read_text())["annotations"]
    assert runs["default"] and len(runs["default"]) == len(runs["none"])
    assert {a["refine"]["method"] for a in runs["default"]} == {"learned"}
    assert any(a["refine"]["refined"] for a in runs["default"])
    assert {a["refine"]["method"] for a in runs["none"]} == {"none"}
