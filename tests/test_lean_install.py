"""The core install works without PyTorch: predict and eval with the packaged model, in a process where torch,
Ultralytics, SAM and every other optional package cannot be imported; what needs an extra says which, in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from animeseg.errors import MODULE_EXTRAS

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "renpy-meadow.jpg"
#: What `pip install animeseg` does not install: every extra's modules, and what those pull in.
ABSENT = sorted({*MODULE_EXTRAS, "numba", "scipy", "matplotlib", "pandas", "onnxslim"})

BLOCKER = f"""
import sys

ABSENT = {ABSENT!r}


class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Absent())
"""


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    """Runs ``animeseg ARGS`` in a subprocess where the optional packages are absent; returns (code, stderr)."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}

    def run(*args: object) -> tuple[int, str]:
        cmd = [sys.executable, "-m", "animeseg", *map(str, args)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stderr

    return run


def test_the_blocker_blocks(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = "try:\n    import torch\nexcept ModuleNotFoundError as e:\n    print('absent', e.name)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "absent torch"


def test_predict_and_eval_without_pytorch(lean, tmp_path):
    out = tmp_path / "out"
    code, err = lean("predict", EXAMPLE, "--save", "json,cutouts", "--out", out)
    assert code == 0, err[-3000:]
    predictions = json.loads((out / "predictions.json").read_text())
    annotations = predictions["annotations"]
    assert len(annotations) >= 2 and all(a["score"] >= 0.5 for a in annotations)  # the packaged model's conf
    assert len(list((out / "cutouts").rglob("*.png"))) >= len(annotations)

    # its own predictions as ground truth: eval at the same settings must score them perfectly
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(EXAMPLE, images / EXAMPLE.name)
    for a in annotations:
        a["iscrowd"] = 0
        del a["score"]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(predictions))
    code, err = lean("eval", "--data", gt, "--images", images, "--conf", "0.5", "--out", tmp_path / "eval")
    assert code == 0, err[-3000:]
    # predict's masks are the default (learned) refiner's: eval's refined column is the one that must match them
    refined = json.loads((tmp_path / "eval" / "metrics.json").read_text())["results"]["refined"]
    assert refined["mask"]["AP"] == pytest.approx(1.0) and refined["box"]["AP"] == pytest.approx(1.0)
    scored = json.loads((tmp_path / "eval" / refined["predictions"]).read_text())["annotations"]
    kept = [a for a in scored if a["score"] >= 0.5]
    assert [a["segmentation"] for a in kept] == [a["segmentation"] for a in annotations]  # pixel for pixel
    assert all(a["refine"]["method"] == "learned" for a in kept)


def test_soft_cutouts_of_the_default_refiner_need_no_pymatting(lean, tmp_path):
    out = tmp_path / "soft"
    code, err = lean("predict", EXAMPLE, "--save", "cutouts", "--alpha", "matte", "--out", out)
    assert code == 0, err[-3000:]
    from animeseg.io import read_rgba

    alpha = read_rgba(next((out / "cutouts").glob("*_0.png")))[..., 3]
    assert ((alpha > 0) & (alpha < 255)).any()  # soft edges, from the learned refiner's alpha


def test_what_needs_an_extra_says_which_in_one_line(lean, tmp_path):
    cases = [
        (("predict", EXAMPLE, "--model", REPO / "animeseg" / "models" / "anime-yolov8n-seg.pt"), "animeseg[train]"),
        (("predict", EXAMPLE, "--save", "cutouts", "--alpha", "matte", "--refine", "none"), "animeseg[matte]"),
        (("predict", EXAMPLE, "--track"), "animeseg[train]"),
        (("serve",), "animeseg[web]"),
        (("export", "onnx"), "animeseg export needs torch, which is not installed: pip install 'animeseg[export]'"),
        (("predict", EXAMPLE, "--engine", "ray"), "animeseg[ray]"),
        (("predict", EXAMPLE, "--runtime", "tensorrt"), "--runtime tensorrt: choose one of auto, openvino"),
        (("predict", EXAMPLE, "--runtime", "onnxruntime"), "pip install 'animeseg[onnxruntime]'"),
    ]
    for args, extra in cases:
        code, err = lean(*args, "--out", tmp_path / "out") if args[0] == "predict" else lean(*args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and extra in lines[0], (args, code, err[-2000:])
