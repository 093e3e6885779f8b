"""The packaged anime model: it ships inside the package, is what `predict` uses without --model, and finds the
characters of the example image (three Ren'Py tutorial sprites, none of which it was trained on as a scene)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli as cli
from PIL import Image

from animeseg import weights as W
from animeseg.io import read_image

EXAMPLE = W.example_image()


@pytest.fixture
def no_trained(tmp_path, monkeypatch):
    """An empty weights folder, so the packaged model is the default."""
    monkeypatch.setenv("ANIMESEG_WEIGHTS", str(tmp_path / "weights"))


def test_packaged_files_are_small_and_load():
    onnx_file, pt_file = W.packaged_model("onnx"), W.packaged_model("pt")
    assert onnx_file.is_file() and pt_file.is_file()
    assert onnx_file.stat().st_size + pt_file.stat().st_size < 21_000_000  # the issue's ~20 MB budget
    from animeseg.onnx_to_checkpoint import read_export

    export = read_export(onnx_file)
    assert export.task == "segment" and export.names == {0: "character"}
    assert export.imgsz == W.model_settings(onnx_file)["imgsz"]


def test_default_model_is_the_packaged_one_without_trained_weights(no_trained):
    assert W.default_model() == W.packaged_model("onnx")


@pytest.mark.parametrize("form", ["onnx", "pt"])
def test_packaged_model_finds_the_example_characters(form):
    from animeseg.predict import Segmenter

    seg = Segmenter(W.packaged_model(form), **W.model_settings(W.packaged_model(form)), device="cpu")
    found = seg(read_image(EXAMPLE))
    assert len(found) >= 2, found.scores
    # one instance per character: no box sits inside another (the three stand side by side)
    xs = sorted((b[0] + b[2]) / 2 for b in found.boxes)
    assert all(b - a > 150 for a, b in zip(xs, xs[1:], strict=False)), xs


def test_predict_without_model_writes_overlay_and_cutouts(no_trained, tmp_path, capsys, network_attempts):
    out = tmp_path / "out"
    code, err = cli(capsys, "predict", EXAMPLE, "--save", "json,overlays,cutouts", "--out", out)
    assert code == 0, err
    doc = json.loads((out / "predictions.json").read_text())
    n = len(doc["annotations"])
    assert len(doc["images"]) == 1 and n >= 2
    assert (out / "overlays" / "renpy-meadow.jpg").is_file()
    cutouts = sorted((out / "cutouts").glob("renpy-meadow_*.png"))
    assert len(cutouts) == n and (out / "cutouts" / "renpy-meadow.png").is_file()
    assert all(Image.open(c).mode == "RGBA" for c in cutouts)
    assert network_attempts() == []
