"""A new `animeseg predict` run never silently mixes into an earlier run's folder: the default folder is
numbered (runs/predict, runs/predict2...), a named folder that holds files is refused in one line unless the run
resumes it (--resume) or replaces its run (--overwrite); and the default outputs include the cut-outs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from animeseg import weights as W
from animeseg.io import write_image
from animeseg.runs import RECORDS, clear_run, next_run_folder, output_folder

EXAMPLE = W.example_image()


@pytest.fixture
def art(tmp_path, monkeypatch) -> Path:
    """Two small images; the working directory is ``tmp_path`` and the packaged model is the default one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANIMESEG_WEIGHTS", str(tmp_path / "weights"))
    folder = tmp_path / "art"
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(folder / f"a{i}.png", rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    return folder


def _images(out: Path) -> list[str]:
    return [im["file_name"] for im in json.loads((out / "predictions.json").read_text())["images"]]


def test_default_runs_are_numbered_and_resume_takes_the_latest(art, tmp_path, capsys):
    for _ in range(2):
        code, err = run_cli(capsys, "predict", art)
        assert code == 0, err
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["predict", "predict2"]
    # predict2 lost one input's record (as if cut off before it): --resume must redo that input there
    before = {p: p.stat().st_mtime_ns for p in (runs / "predict").rglob("*")}
    (runs / "predict2" / RECORDS / "a1.json").unlink()
    code, err = run_cli(capsys, "predict", art, "--resume")
    assert code == 0, err
    assert sorted(p.name for p in runs.iterdir()) == ["predict", "predict2"]  # continued predict2, no predict3
    assert (runs / "predict2" / RECORDS / "a1.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in (runs / "predict").rglob("*")} == before  # the older run untouched


def test_a_named_folder_with_files_needs_resume_or_overwrite(art, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run_cli(capsys, "predict", art, "--out", out)
    assert code == 0, err
    code, err = run_cli(capsys, "predict", art / "a0.png", "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{out}: holds an earlier run's files; pass --resume" in err
    assert _images(out) == ["a0.png", "a1.png"]  # untouched

    (out / "notes.txt").write_text("mine")
    code, err = run_cli(capsys, "predict", art / "a0.png", "--out", out, "--overwrite")
    assert code == 0, err
    assert _images(out) == ["a0.png"]
    assert not list(out.rglob("a1*"))  # nothing of the earlier run is left to mix in...
    assert (out / "notes.txt").read_text() == "mine"  # ...and nothing else was touched

    code, err = run_cli(capsys, "predict", art, "--out", out, "--overwrite", "--resume")
    assert code == 2 and "give one of them" in err


def test_default_save_writes_cutouts(art, tmp_path, capsys):
    code, err = run_cli(capsys, "predict", EXAMPLE, "--out", tmp_path / "one")
    assert code == 0, err
    doc = json.loads((tmp_path / "one" / "predictions.json").read_text())
    assert len(doc["annotations"]) >= 2  # the example's characters, so the count below is not 0 == 0
    cutouts = tmp_path / "one" / "cutouts"
    assert (cutouts / f"{EXAMPLE.stem}.png").is_file()  # the whole image without its background
    assert len(list(cutouts.glob(f"{EXAMPLE.stem}_*.png"))) == len(doc["annotations"])


def test_output_folder_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert output_folder(None) == Path("runs/predict")
    (tmp_path / "runs" / "predict").mkdir(parents=True)
    assert output_folder(None) == Path("runs/predict")  # empty: still free
    (tmp_path / "runs" / "predict" / "x").write_text("")
    assert output_folder(None) == next_run_folder(Path("runs/predict")) == Path("runs/predict2")
    assert output_folder(None, resume=True) == Path("runs/predict")
    assert output_folder(None, overwrite=True) == Path("runs/predict")
    assert clear_run(tmp_path / "runs" / "predict") == 0  # no records: nothing of a run to remove
    assert (tmp_path / "runs" / "predict" / "x").is_file()
