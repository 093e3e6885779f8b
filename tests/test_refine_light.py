"""The light SAM family behind `--refine sam` (MobileSAM, SAM 2 / 2.1) and the cheap GrabCut.

SAM checkpoints here are randomly initialised with Ultralytics' own ``ultralytics.models.sam.build`` functions
and saved as the official files are, then loaded the way users load theirs (``--sam-checkpoint FILE``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from animeseg.io import write_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ helpers, also under plain `pytest`
from conftest import run_cli as _cli  # noqa: E402

from bench.composites import make_composites  # noqa: E402
from bench.refine import segment_anything_mobile_sam  # noqa: E402


def _ultralytics_build():
    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.models.sam import build

    return build


@pytest.fixture(scope="module")
def mobile_sam(tmp_path_factory) -> Path:
    """A random MobileSAM saved as a plain state dict (the layout of the official ``mobile_sam.pt``)."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mobile") / "my_checkpoint.pt"  # the name says nothing: read from the weights
    torch.save(_ultralytics_build().build_mobile_sam().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def sam21_tiny(tmp_path_factory) -> Path:
    """A random SAM 2.1 tiny saved as ``{"model": state_dict}`` (the layout of Meta's ``sam2.1_hiera_tiny.pt``)."""
    import torch

    build = _ultralytics_build()
    torch.manual_seed(0)
    # Ultralytics builds SAM 2.1 (not 2.0) when the checkpoint's name holds "sam2.1", and then loads that file;
    # with no file to load, its loader is skipped
    loader = build._load_checkpoint
    build._load_checkpoint = lambda model, checkpoint: model
    try:
        model = build.build_sam2_t("sam2.1_t.pt")
    finally:
        build._load_checkpoint = loader
    assert model.no_obj_embed_spatial is not None  # really 2.1
    path = tmp_path_factory.mktemp("sam21") / "sam2.1_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Path:
    """Two held-out anime composites (1280x720 and 640x360) with several characters each, as PNG files."""
    from conftest import RENPY

    if not (RENPY / "fg").is_dir():
        pytest.skip(f"shared sprites not found at {RENPY}")
    folder = tmp_path_factory.mktemp("crowd")
    a = make_composites(RENPY, 1, seed=21, size=(1280, 720), max_sprites=4)[0]
    b = make_composites(RENPY, 1, seed=22, size=(640, 360), max_sprites=4)[0]
    write_image(folder / "a.png", a.image)
    write_image(folder / "b.png", b.image)
    return folder


# ------------------------------------------------------------------------------------------ architectures
def _fake_state(kind: str) -> dict:
    """Just the tensors an architecture is recognised by."""
    import torch

    if kind == "mobile_sam":
        return {"image_encoder.patch_embed.seq.0.c.weight": torch.zeros(32, 3, 3, 3)}
    version, size = kind.split("_")
    width, depth = {"t": (96, 12), "s": (96, 16), "b": (112, 24), "l": (144, 48)}[size]
    state = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(width, 3, 7, 7)}
    state.update({f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(width) for i in range(depth)})
    if version == "sam2.1":
        state["no_obj_embed_spatial"] = torch.zeros(1, 64)
    return state


def test_every_light_type_is_read_from_the_weights():
    from animeseg.errors import AnimesegError
    from animeseg.sam import LIGHT, SAM_TYPES, TINY, build_sam, sam_type_of

    assert list(LIGHT) == ["mobile_sam", *(f"{v}_{s}" for v in ("sam2", "sam2.1") for s in "tsbl")]
    assert ("auto", "vit_b", "vit_l", "vit_h", *LIGHT) == SAM_TYPES
    for kind in LIGHT:
        assert sam_type_of(_fake_state(kind)) == kind
    assert sam_type_of(build_sam(TINY).state_dict()) == TINY.name  # ViT SAMs as before
    odd = _fake_state("sam2_t")
    odd["image_encoder.trunk.blocks.12.norm1.weight"] = odd["image_encoder.trunk.blocks.0.norm1.weight"]
    with pytest.raises(AnimesegError, match="SAM 2 checkpoint of no known size .Hiera width 96, 13 blocks"):
        sam_type_of(odd)
    with pytest.raises(AnimesegError, match="not a Segment Anything checkpoint"):
        sam_type_of({"backbone.weight": np.zeros(3)})


def test_light_checkpoints_load_as_users_load_them(mobile_sam, sam21_tiny, tmp_path):
    import torch

    from animeseg.errors import AnimesegError
    from animeseg.refine import build_refiner
    from animeseg.refine.sam_light import LightSamRefiner
    from animeseg.sam import load_sam

    refiner = build_refiner("sam", mobile_sam, device="cpu")
    assert isinstance(refiner, LightSamRefiner) and refiner.sam_type == "mobile_sam" and not refiner.sam2
    assert build_refiner("sam", mobile_sam, sam_type="mobile_sam", device="cpu").sam_type == "mobile_sam"
    sam2 = build_refiner("sam", sam21_tiny, device="cpu")
    assert isinstance(sam2, LightSamRefiner) and sam2.sam_type == "sam2.1_t" and sam2.sam2
    # the weights really are the file's, not a fresh random model
    saved = torch.load(mobile_sam, weights_only=True)
    for key in ("image_encoder.patch_embed.seq.0.c.weight", "mask_decoder.iou_token.weight"):
        assert torch.equal(refiner.model.state_dict()[key], saved[key])
    with pytest.raises(AnimesegError, match=r"--sam-type sam2_t does not match the checkpoint, which is sam2.1_t"):
        load_sam(sam21_tiny, model_type="sam2_t")
    with pytest.raises(AnimesegError, match=r"--sam-type vit_b does not match the checkpoint, which is mobile_sam"):
        load_sam(mobile_sam, model_type="vit_b")
    broken = tmp_path / "broken.pt"
    state = dict(saved)
    state.pop("mask_decoder.iou_token.weight")
    torch.save(state, broken)
    with pytest.raises(AnimesegError, match=r"broken.pt: checkpoint does not fit mobile_sam"):
        load_sam(broken)


# ------------------------------------------------------------------------------------------ candidates
def _smooth_logits(k: int, g: int, seed: int) -> np.ndarray:
    """(k, g, g) float32 logits with a few blobs above zero and large negative regions, like a decoder's."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (k, g // 8, g // 8)).astype(np.float32)
    return np.stack([cv2.resize(n, (g, g), interpolation=cv2.INTER_CUBIC) * 4 - 2.5 for n in noise])


@pytest.mark.parametrize(("h", "w", "squash"), [(720, 1280, False), (360, 640, True), (333, 250, False)])
def test_paste_masks_is_sams_upsampling_restricted_to_where_it_can_be_positive(h, w, squash):
    import torch
    import torch.nn.functional as F

    from animeseg.refine.sam_light import paste_masks

    size, g = 1024, 256
    nh, nw = (size, size) if squash else (int(h * size / max(h, w) + 0.5), int(w * size / max(h, w) + 0.5))
    cells = (nh / h * g / size, nw / w * g / size)
    for seed in range(3):
        logits = _smooth_logits(3, g, seed)
        got = np.zeros((3, h, w), bool)
        paste_masks(logits, got, cells)
        # SamPredictor's way: the whole mask to the model's input size, crop the image, then to the image size
        up = F.interpolate(torch.from_numpy(logits)[None], (size, size), mode="bilinear", align_corners=False)
        ref = (F.interpolate(up[..., :nh, :nw], (h, w), mode="bilinear", align_corners=False)[0] > 0).numpy()
        assert ref.any() and not ref.all()
        inter, union = (got & ref).sum(), (got | ref).sum()
        assert inter / union > 0.99, inter / union
    nothing = np.zeros((3, h, w), bool)
    paste_masks(np.full((3, g, g), -1.0, np.float32), nothing, cells)
    assert not nothing.any()


def test_light_candidates_encode_once_and_batch_the_boxes(mobile_sam):
    from animeseg.refine.sam_light import LightSamRefiner
    from animeseg.sam import load_sam

    refiner = LightSamRefiner(load_sam(mobile_sam), chunk=2)
    image = np.random.default_rng(0).integers(0, 255, (180, 300, 3), np.uint8)
    boxes = np.array([[10, 10, 120, 170], [100, 20, 200, 150], [150, 5, 290, 175], [0, 0, 300, 180], [40, 60, 90, 120]])
    cands = refiner.candidates(image, boxes.astype(np.float32))
    assert refiner.encoder_calls == 1 and refiner.decoder_calls == 3  # 5 boxes in chunks of 2, one encoding
    assert cands.masks.shape == (5, 3, 180, 300) and cands.masks.dtype == bool
    assert cands.scores.shape == (5, 3) and cands.scores.dtype == np.float32
    assert cands.masks.any()  # random weights still give masks: what follows compares something
    empty = refiner.candidates(image, np.zeros((0, 4), np.float32))
    assert empty.masks.shape == (0, 3, 180, 300) and refiner.encoder_calls == 1  # nothing to prompt, no encoding


def test_mobile_sam_candidates_match_segment_anythings_predictor(mobile_sam):
    """The same MobileSAM weights inside segment-anything's ``Sam``, through ``SamPredictor`` (the reference
    pipeline: normalise, pad, box transform, decoder, upsampling), give the same candidates.

    The image's long side is the model's 1024, so neither pipeline resizes it and both see the same input; what
    is compared is the prompt mapping, the decoder call and the upsampling to the image.
    """
    from animeseg.refine.sam import SamRefiner
    from animeseg.refine.sam_light import LightSamRefiner
    from animeseg.sam import load_sam

    light = load_sam(mobile_sam)
    reference = segment_anything_mobile_sam(light)
    yy, xx = np.mgrid[0:768, 0:1024]
    image = np.stack([xx * 0.2, yy * 0.3, (xx + yy) * 0.1], -1).astype(np.uint8)  # smooth, like flat colours
    boxes = np.array([[60, 90, 450, 690], [480, 30, 900, 600], [180, 180, 780, 540]], np.float32)
    ours = LightSamRefiner(light).candidates(image, boxes)
    theirs = SamRefiner(reference).candidates(image, boxes)
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-4)
    assert ours.masks.any() and (ours.masks != theirs.masks).mean() < 1e-3


def test_sam2_candidates_match_ultralytics_sam2_predictor(sam21_tiny):
    """SAM 2.1 through Ultralytics' own ``SAM2Predictor`` on the same model: same scores and masks. The image is
    square at the model's size: Ultralytics letterboxes where Meta's predictor (which we follow) squashes, so
    only there do both feed the encoder the same pixels."""
    from ultralytics.models.sam.predict import SAM2Predictor

    from animeseg.refine.sam_light import LightSamRefiner
    from animeseg.sam import load_sam

    model = load_sam(sam21_tiny)
    yy, xx = np.mgrid[0:1024, 0:1024]
    image = np.stack([xx * 0.2, yy * 0.2, (xx + yy) * 0.1], -1).astype(np.uint8)
    boxes = np.array([[60, 90, 450, 990], [480, 30, 900, 600], [180, 180, 780, 540]], np.float32)
    ours = LightSamRefiner(model).candidates(image, boxes)
    predictor = SAM2Predictor(overrides={"device": "cpu", "imgsz": 1024, "conf": 0.0, "verbose": False})
    predictor.setup_model(model=model, verbose=False)
    predictor.set_image(np.ascontiguousarray(image[..., ::-1]))  # it reads numpy images as OpenCV BGR
    result = predictor(bboxes=boxes, multimask_output=True)[0]
    theirs = result.masks.data.cpu().numpy().reshape(ours.masks.shape)
    np.testing.assert_allclose(result.boxes.conf.cpu().numpy().reshape(-1, 3), ours.scores, atol=1e-4)
    assert ours.masks.any() and (ours.masks != theirs).mean() < 1e-3


# ------------------------------------------------------------------------------------------ through the CLI
def _predict(capsys, src: Path, out: Path, onnx: Path, *extra) -> dict:
    code, err = _cli(
        capsys, "predict", src, "--model", onnx, "--imgsz", 320, "--classes", 0, "--out", out, "--save", "json",
        "--device", "cpu", *extra,
    )  # fmt: skip
    assert code == 0, err
    return json.loads((out / "predictions.json").read_text())


def _by_image(run: dict) -> dict[str, list[dict]]:
    files = {im["id"]: im["file_name"] for im in run["images"]}
    out: dict[str, list[dict]] = {name: [] for name in files.values()}
    for a in run["annotations"]:
        out[files[a["image_id"]]].append(a)
    return out


@pytest.mark.parametrize("kind", ["mobile_sam", "sam2.1_t"])
def test_predict_refine_sam_with_a_light_checkpoint(kind, mobile_sam, sam21_tiny, crowd, shared_onnx, tmp_path,
                                                    capsys, monkeypatch):  # fmt: skip
    """Acceptance 2 and 3: ``--refine sam --sam-checkpoint FILE`` with a random light checkpoint: one encoder pass
    per image, boxes batched, every detection kept with YOLO's score and class, a record for each."""
    from animeseg.refine import sam_light

    made: list = []
    real_init = sam_light.LightSamRefiner.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(sam_light.LightSamRefiner, "__init__", spy)
    threads: list[int] = []
    real_encode = sam_light.LightSamRefiner._encode

    def encode(self, x):
        import torch

        threads.append(torch.get_num_threads())
        return real_encode(self, x)

    monkeypatch.setattr(sam_light.LightSamRefiner, "_encode", encode)
    checkpoint = mobile_sam if kind == "mobile_sam" else sam21_tiny
    raw = _by_image(_predict(capsys, crowd, tmp_path / "raw", shared_onnx))
    refined = _by_image(_predict(capsys, crowd, tmp_path / "sam", shared_onnx, "--refine", "sam", "--sam-checkpoint",
                                 checkpoint))  # fmt: skip
    assert len(made) == 1 and made[0].sam_type == kind
    counts = [len(v) for v in raw.values()]
    assert sum(counts) >= 4
    assert made[0].encoder_calls == len(raw)  # once per image
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads == [max(cores, 1)] * len(raw)  # every core, although YOLO's device check set torch to fewer
    assert made[0].decoder_calls == sum(-(-n // made[0].chunk) for n in counts)
    for name, before in raw.items():
        after = refined[name]
        assert len(after) == len(before)
        assert [a["score"] for a in after] == [b["score"] for b in before]
        assert [a["category_id"] for a in after] == [b["category_id"] for b in before]
        for a in after:
            assert a["refine"]["method"] == "sam" and a["refine"]["reason"] and a["refine"]["candidate"] in (0, 1, 2)


# ------------------------------------------------------------------------------------------ GrabCut
def test_grabcut_cuts_one_bounded_crop_per_instance_and_threads_change_nothing(monkeypatch):
    import cv2
    from test_predict_core import _synthetic_character

    from animeseg.refine.grabcut import GrabCutRefiner

    image, _, yolo = _synthetic_character(900, 1200)
    second = np.zeros_like(yolo)
    second[100:700, 50:400] = True
    masks = np.stack([yolo, second])
    boxes = np.array([[0, 0, 1200, 900], [50, 100, 400, 700]], np.float32)
    from animeseg._lazy import cv2 as lazy_cv2  # what grabcut.py calls through; it keeps what it looked up

    seen: list[tuple[int, int]] = []
    real = cv2.grabCut

    def spy(img, *args):
        seen.append(img.shape[:2])
        return real(img, *args)

    monkeypatch.setattr(lazy_cv2, "grabCut", spy)
    one = GrabCutRefiner(workers=1).candidates(image, boxes, masks)
    assert len(seen) == 2 * len(GrabCutRefiner().bands) and max(max(s) for s in seen) <= GrabCutRefiner().max_side
    two = GrabCutRefiner(workers=2).candidates(image, boxes, masks)
    np.testing.assert_array_equal(one.masks, two.masks)  # same cut whatever thread made it
    np.testing.assert_array_equal(one.scores, two.scores)


def test_export_onnx_says_in_one_line_that_the_light_family_is_not_exported(mobile_sam, tmp_path, capsys):
    code, err = _cli(capsys, "export", "onnx", "--sam-checkpoint", mobile_sam, "--out", tmp_path / "x")
    assert code == 2
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            "my_checkpoint.pt: mobile_sam cannot be exported to ONNX (export covers the ViT SAMs vit_b/l/h); use the "
            "checkpoint itself with `predict --refine sam --sam-checkpoint`"
        )
    )
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("*.onnx"))


def test_torch_threads_raises_the_count_for_the_block_only():
    import torch

    from animeseg.refine.base import torch_threads

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        torch.set_num_threads(1)  # what Ultralytics' select_device leaves on a 2-core machine
        with torch_threads():
            assert torch.get_num_threads() == max(cores, 1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
