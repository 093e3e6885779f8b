"""`predict --save layers`: the PSD writer (read back with psd-tools), the stacking order, and the command on the
packaged model (a synthetic picture always; a picture of real sprites from ../shared where present)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli as cli
from PIL import Image

from animeseg.data import synth
from animeseg.instances import Instances
from animeseg.io import read_image, read_rgba, write_image
from animeseg.masks import occlusion_order
from animeseg.psd import MAX_SIDE, Layer, composite, encode_psd, packbits_rows, unpackbits
from animeseg.writers import layered_image, write_image_outputs

psd_tools = pytest.importorskip("psd_tools", reason="psd-tools (the dev extra) reads the files back")


def _open(data: bytes | Path):
    return psd_tools.PSDImage.open(io.BytesIO(data) if isinstance(data, bytes) else data)


def _rgb(pil: Image.Image) -> np.ndarray:
    return np.asarray(pil.convert("RGB")).astype(np.int16)


# ------------------------------------------------------------------------------------------------ the format
@pytest.mark.parametrize("kind", ["random", "runs", "flat", "one pixel", "long runs"])
def test_packbits_rows_decode_to_the_rows(kind):
    rng = np.random.default_rng(len(kind))
    plane = {
        "random": rng.integers(0, 256, (9, 301)),
        "runs": np.repeat(rng.integers(0, 3, (7, 40)), rng.integers(1, 9, 40), axis=1),
        "flat": np.full((4, 700), 7),
        "one pixel": np.array([[200]]),
        "long runs": np.repeat(rng.integers(0, 256, (3, 5)), [1, 2, 129, 256, 3], axis=1),
    }[kind].astype(np.uint8)
    counts, data = packbits_rows(plane)
    assert counts.shape == (plane.shape[0],) and counts.sum() == len(data)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for r, row in enumerate(plane):
        assert unpackbits(data[starts[r] : starts[r + 1]], row.size) == row.tobytes()
    if kind == "flat":
        assert len(data) < plane.size // 50  # runs really are compressed


def test_psd_reads_back_with_its_layers_names_pixels_and_merged_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 90, 3)).astype(np.uint8)
    alpha = np.zeros((30, 40), np.uint8)
    alpha[5:25, 5:35] = 255
    alpha[10, 10] = 128
    layers = [
        Layer("image", np.dstack([image, np.full((60, 90), 255, np.uint8)])),
        Layer("0: 人物 0.93", np.dstack([image[20:50, 30:70], alpha]), left=30, top=20),
        Layer("empty", np.zeros((0, 0, 4), np.uint8), left=3, top=4),
    ]
    merged = composite(image, layers[1:])
    psd = _open(encode_psd(merged, layers))
    assert (psd.width, psd.height, psd.depth, psd.channels) == (90, 60, 8, 3)
    assert [layer.name for layer in psd] == ["image", "0: 人物 0.93", "empty"]
    assert psd[1].bbox == (30, 20, 70, 50) and psd[0].bbox == (0, 0, 90, 60)
    assert np.array_equal(np.asarray(psd[1].topil()), layers[1].rgba)
    assert np.array_equal(_rgb(psd.topil()), image)  # the merged image, what non-compositing viewers show
    assert np.array_equal(_rgb(psd.composite(force=True)), image)  # and what compositing editors show
    with pytest.raises(ValueError, match="too large"):
        encode_psd(np.zeros((1, MAX_SIDE + 1, 3), np.uint8), [])


# ------------------------------------------------------------------------------------------------ stacking order
def test_occluders_go_above_what_they_occlude_on_synthetic_scenes():
    """The demo's characters pasted over each other (later ones in front): most overlapping pairs are stacked
    with the occluder above (bench/layers.py measures it on held-out sprites)."""
    rng = np.random.default_rng(7)
    right = pairs = 0
    for _ in range(80):
        _, visible, alphas = synth.scene(rng, 240, 180, int(rng.integers(2, 4)))
        whole = [a >= 128 for a in alphas]
        pos = {k: p for p, k in enumerate(occlusion_order(np.array(visible)))}
        for i in range(len(visible)):
            for j in range(i + 1, len(visible)):  # j was pasted after i: j is in front
                if (whole[i] & whole[j]).sum() > 20 and visible[i].sum() > 100 and visible[j].sum() > 100:
                    pairs += 1
                    right += pos[j] > pos[i]
    assert pairs >= 10 and right / pairs >= 0.7, (right, pairs)


def test_characters_apart_are_stacked_by_their_feet():
    masks = np.zeros((3, 100, 120), bool)
    masks[0, 10:90, 5:30] = True  # feet at row 89
    masks[1, 30:99, 45:70] = True  # lowest feet: nearest, on top
    masks[2, 5:60, 85:110] = True  # highest feet: farthest, at the bottom
    assert occlusion_order(masks) == [2, 0, 1]
    assert occlusion_order(masks[:1]) == [0] and occlusion_order(masks[:0]) == []


def test_layered_image_names_and_composite(tmp_path):
    rng = np.random.default_rng(3)
    image, visible, _ = synth.scene(rng, 200, 150, 2)
    inst = Instances(np.zeros((2, 4)), [0.91, 0.62], [0, 0], np.array(visible), {0: "character"})
    inst.boxes = inst.boxes_from_masks()
    merged, layers = layered_image(image, inst)
    assert np.array_equal(merged, image)  # binary alpha: the layers hold the picture's own pixels
    assert sorted(layer.name for layer in layers[1:]) == ["0: character 0.91", "1: character 0.62"]
    inst.track_ids = np.array([4, 9])
    files = write_image_outputs(tmp_path, "sub/a", image, inst, ["layers", "cutouts"])
    assert files[-1] == "layers/sub/a.psd"
    psd = _open(tmp_path / "layers/sub/a.psd")
    assert sorted(layer.name for layer in psd)[1:] == ["track 4: character 0.91", "track 9: character 0.62"]
    # each character layer is exactly its cut-out file
    for layer in list(psd)[1:]:
        i = 0 if layer.name.startswith("track 4") else 1
        cut = read_rgba(tmp_path / f"cutouts/sub/a_{i}.png")
        assert np.array_equal(np.asarray(layer.topil()), cut)


# ------------------------------------------------------------------------------------------------ the command
def _check_layers(out: Path, stem: str, image: np.ndarray) -> tuple[int, float]:
    doc = json.loads((out / "predictions.json").read_text())
    found = len(doc["annotations"])
    psd = _open(out / "layers" / f"{stem}.psd")
    shown = _rgb(psd.composite(force=True))
    diff = float(np.abs(shown - image).mean())
    assert len(list(psd)) == found + 1
    assert np.abs(_rgb(psd.topil()) - shown).max() <= 1  # the merged image is the layers' composite (rounding)
    return found, diff


@pytest.mark.parametrize("alpha", ["binary", "matte"])
def test_predict_save_layers_on_a_synthetic_picture(alpha, tmp_path, capsys, network_attempts):
    rng = np.random.default_rng(11)
    image, _, _ = synth.scene(rng, 384, 256, 3)
    write_image(tmp_path / "scene.png", image)
    out = tmp_path / "out"
    code, err = cli(capsys, "predict", tmp_path / "scene.png", "--save", "json,layers", "--alpha", alpha, "--out", out)
    assert code == 0, err
    found, diff = _check_layers(out, "scene", read_image(tmp_path / "scene.png"))
    assert found >= 1 and diff <= 2 / 255 * 255  # at most 2/255 on average (in 0-255 units: 2)
    if alpha == "binary":
        assert diff == 0.0
    assert network_attempts() == []


def test_predict_save_layers_on_real_sprites(renpy, tmp_path, capsys):
    """The acceptance check: a picture of real sprites over a real background, the packaged model, one layer
    more than characters found, composite within 2/255 of the picture on average."""
    bg = cv2.resize(read_image(renpy / "bg" / "bg meadow.jpg"), (640, 420), interpolation=cv2.INTER_AREA)
    cast = (("eileen happy.png", 40, 380), ("lucy happy.png", 230, 360), ("sylvie green normal.png", 420, 390))
    for name, x, height in cast:
        synth.paste(bg, read_rgba(renpy / "fg" / name), x, 420 - height, height)
    write_image(tmp_path / "meadow.png", bg)
    out = tmp_path / "out"
    code, err = cli(capsys, "predict", tmp_path / "meadow.png", "--save", "json,layers", "--out", out)
    assert code == 0, err
    found, diff = _check_layers(out, "meadow", bg)
    assert found >= 2 and diff <= 2.0


def test_layered_files_for_video_frames_only_when_asked(tmp_path):
    from animeseg.media import expand_sources
    from animeseg.runner import run

    class Fake:
        names = {0: "character"}

        def __call__(self, image: np.ndarray) -> Instances:
            m = np.zeros(image.shape[:2], bool)
            m[8:30, 10:40] = True
            return Instances([[10, 8, 40, 30]], [0.8], [0], m[None], self.names)

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png", np.full((48, 64, 3), 90, np.uint8))
    video = cv2.VideoWriter(str(src / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 8, (64, 48))
    for i in range(3):
        video.write(np.full((48, 64, 3), 40 * i, np.uint8))
    video.release()
    items = expand_sources([src])
    run(items, Fake(), tmp_path / "o1", ["layers"])
    assert sorted(p.name for p in (tmp_path / "o1/layers").iterdir()) == ["a.psd"]
    run(items, Fake(), tmp_path / "o2", ["frame-layers"])
    assert sorted(p.name for p in (tmp_path / "o2/layers").iterdir()) == [f"clip#{i:06d}.psd" for i in range(3)]
    run(items, Fake(), tmp_path / "o3", ["layers", "frame-layers"])
    assert len(list((tmp_path / "o3/layers").iterdir())) == 4
