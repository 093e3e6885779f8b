"""One model, one image, the same instances whichever way it is called: `animeseg predict` (no option),
`animeseg serve`'s page as it first shows, `Segmenter()`, `animeseg.segment()` and `predict --engine ray`.

Each entry point resolves its settings through the model's own defaults (animeseg/settings.py): a copy of a
default anywhere else would make one of them differ (conf 0.25 instead of the packaged model's 0.5 adds
detections on the example image).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_cli

import animeseg
from animeseg import weights as W
from animeseg.io import read_image
from animeseg.predict import Segmenter
from animeseg.settings import model_defaults
from animeseg.writers import image_annotations

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = W.example_image()


@pytest.fixture
def no_trained(tmp_path, monkeypatch) -> Path:
    """An empty weights folder, so the packaged model is the default one."""
    folder = tmp_path / "weights"
    monkeypatch.setenv("ANIMESEG_WEIGHTS", str(folder))
    return folder


def _annotations(doc: dict) -> list[dict]:
    """What identifies an instance in predictions.json: class, box, mask (RLE), score, refinement record."""
    keys = ("category_id", "bbox", "segmentation", "score", "refine")
    return [{k: a[k] for k in keys} for a in doc["annotations"]]


def _from_instances(instances: animeseg.Instances) -> list[dict]:
    return _annotations({"annotations": image_annotations(instances)})


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x["score"] == pytest.approx(y["score"], abs=1e-5)
        assert {k: v for k, v in x.items() if k != "score"} == {k: v for k, v in y.items() if k != "score"}


def test_every_entry_point_gives_the_same_instances(no_trained, tmp_path, capsys):
    out = tmp_path / "predict"
    code, err = run_cli(capsys, "predict", EXAMPLE, "--save", "json", "--out", out)
    assert code == 0, err
    predicted = _annotations(json.loads((out / "predictions.json").read_text()))
    image = read_image(EXAMPLE)

    library = Segmenter()
    assert library.model_path == W.packaged_model()
    _same(_from_instances(library(image)), predicted)
    _same(_from_instances(animeseg.segment(image)), predicted)
    _same(_from_instances(animeseg.segment(EXAMPLE)), predicted)

    from animeseg.web.holder import ModelHolder

    holder = ModelHolder(W.default_model())
    page = holder.segmenter(holder.page_defaults())  # what an untouched page sends
    _same(_from_instances(page(image)), predicted)

    # and they are the packaged model's own settings, not generic ones (on this image conf 0.25 and 0.5 agree)
    assert page.settings == library.settings == model_defaults(W.packaged_model()).detect
    low = library.detector.detect(image, replace(library.settings, conf=0.05))
    assert len(low) > len(predicted)  # a call's settings reach the detector


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason='Ray is not installed (pip install -e ".[ray]")')
def test_the_ray_engine_gives_the_same_instances(no_trained, tmp_path, capsys):
    local, remote = tmp_path / "local", tmp_path / "ray"
    code, err = run_cli(capsys, "predict", EXAMPLE, "--save", "json", "--out", local)
    assert code == 0, err
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "animeseg", "predict", str(EXAMPLE), "--save", "json", "--out", str(remote)]
    # Ray's processes talk over local TCP, which this suite's network guard refuses in-process: a child runs it
    proc = subprocess.run([*cmd, "--engine", "ray", "--workers", "1"], env=env, capture_output=True, text=True)
    if "timed out during startup" in proc.stderr:
        pytest.skip("Ray's local instance did not start in time on this (overloaded) machine")
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads((p / "predictions.json").read_text()) for p in (local, remote)]
    _same(*(_annotations(d) for d in docs))


def test_explicit_options_win_over_the_models_defaults(no_trained):
    seg = Segmenter(conf=0.3, imgsz=320)
    defaults = model_defaults(W.packaged_model())
    assert (seg.settings.conf, seg.settings.imgsz, seg.settings.iou) == (0.3, 320, defaults.detect.iou)
    assert (seg.refiner.name if seg.refiner is not None else "none") == defaults.refine
    assert Segmenter(refine="grabcut").refiner.name == "grabcut"
    assert Segmenter(refine="none").refiner is None
    assert Segmenter(classes=[0]).settings.classes == (0,)


def test_the_library_takes_the_command_lines_refine(no_trained, tmp_path, capsys):
    """`segment(image, refine="none")` is `predict --refine none`; `refine=` is the word of `--refine` in
    `segment`, `cut` and `Segmenter` (`refiner=` still accepted), and a keyword nobody takes is one TypeError
    listing the accepted ones."""
    out = tmp_path / "predict"
    code, err = run_cli(capsys, "predict", EXAMPLE, "--refine", "none", "--save", "json", "--out", out)
    assert code == 0, err
    cli = _annotations(json.loads((out / "predictions.json").read_text()))
    assert all(a["refine"]["method"] == "none" for a in cli)
    _same(cli, _from_instances(animeseg.segment(EXAMPLE, refine="none")))
    _same(cli, _from_instances(animeseg.segment(read_image(EXAMPLE), refiner="none")))  # the other name
    assert Segmenter(refiner="none").refiner is None

    cut = animeseg.cut(EXAMPLE, refine="none")
    masks = animeseg.segment(EXAMPLE, refine="none").masks
    assert ((cut[..., 3] > 0) == masks.any(0)).all()

    for name, call in (
        ("segment", lambda: animeseg.segment(EXAMPLE, refin="none")),
        ("cut", lambda: animeseg.cut(EXAMPLE, refin="none")),
        ("Segmenter", lambda: Segmenter(refin="none")),
    ):
        accepted = r"it accepts .*\brefine\b.*conf"
        with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword argument 'refin'; {accepted}"):
            call()
    with pytest.raises(TypeError, match="refine= and its other name refiner="):
        animeseg.segment(EXAMPLE, refine="none", refiner="grabcut")
