"""`animeseg cut INPUT OUTPUT.png` (and `animeseg.cut`): an RGBA image whose alpha covers exactly the characters
`animeseg predict` finds; `-` reads standard input and writes standard output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image
from pycocotools import mask as mask_utils

import animeseg
from animeseg import weights as W

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = W.example_image()


@pytest.fixture(autouse=True)
def packaged_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMESEG_WEIGHTS", str(tmp_path / "weights"))


def test_cut_alpha_covers_what_predict_finds(tmp_path, capsys):
    code, err = run_cli(capsys, "predict", EXAMPLE, "--save", "json", "--out", tmp_path / "p")
    assert code == 0, err
    anns = json.loads((tmp_path / "p" / "predictions.json").read_text())["annotations"]
    found = np.any([mask_utils.decode(a["segmentation"]).astype(bool) for a in anns], axis=0)
    assert len(anns) >= 2

    out = tmp_path / "out.png"
    code, err = run_cli(capsys, "cut", EXAMPLE, out)
    assert code == 0, err
    im = Image.open(out)
    assert im.mode == "RGBA" and im.size == (found.shape[1], found.shape[0])
    rgba = np.asarray(im)
    assert np.array_equal(rgba[..., 3] > 0, found)
    assert np.array_equal(animeseg.cut(EXAMPLE), rgba)  # the same library call


def test_cut_reads_stdin_and_writes_stdout(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with EXAMPLE.open("rb") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "animeseg", "cut", "-", "-"], stdin=f, capture_output=True, env=env, timeout=600
        )
    assert proc.returncode == 0, proc.stderr.decode()
    (tmp_path / "piped.png").write_bytes(proc.stdout)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "piped.png")), animeseg.cut(EXAMPLE))


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["{notes}", "{tmp}/o.png"], 1, "notes.png: not an image"),
        (["{example}", "{tmp}/o.jpg"], 2, "o.jpg: a cut-out needs transparency"),
        (["{example}", "{tmp}/o.png", "--alpha", "soft"], 2, "--alpha soft: choose one of binary, matte"),
    ],
)
def test_cut_errors_are_one_line(args, code, expected, tmp_path, capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    args = [a.format(notes=notes, tmp=tmp_path, example=EXAMPLE) for a in args]
    got, err = run_cli(capsys, "cut", *args)
    assert got == code and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o.png").exists()
