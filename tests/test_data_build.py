"""`animeseg data demo/build/check` end to end, output guards, weights, the yolo source, and Ultralytics training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from animeseg.cli import app, main
from animeseg.data.build import build_dataset
from animeseg.data.check import check_dataset
from animeseg.data.config import config_hash
from animeseg.errors import AnimesegError, ConfigError
from animeseg.io import write_image

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The README's set-up: `animeseg data demo DIR && animeseg data build DIR/datasets.yaml`."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    res = runner.invoke(app, ["data", "demo", str(root)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "build", str(root / "datasets.yaml")])
    assert res.exit_code == 0, res.output
    return root


def test_demo_builds_a_complete_dataset(demo, network_attempts):
    out = demo / "dataset"
    for rel in (
        "data.yaml",
        "manifest.json",
        "provenance.jsonl",
        "preview.jpg",
        "annotations/train.json",
        "annotations/val.json",
    ):
        assert (out / rel).is_file(), rel
    spec = yaml.safe_load((out / "data.yaml").read_text())
    assert spec["path"] == str(out) and Path(spec["path"]).is_absolute()
    assert spec["names"] == {0: "character"} and spec["train"] == "images/train" and spec["val"] == "images/val"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config_hash"] == config_hash(demo / "datasets.yaml")
    assert manifest["seed"] == 0 and manifest["out"] == str(out)
    assert {s["type"] for s in manifest["sources"]} == {"composite", "mask_pairs", "coco", "labelme"}
    assert all(s["images"]["train"] > 0 for s in manifest["sources"])
    assert manifest["images"]["val"] > 0 and manifest["instances"]["train"] > 50
    assert {"ultralytics", "numpy", "pycocotools", "animeseg"} <= set(manifest["versions"])
    coco = next(s for s in manifest["sources"] if s["type"] == "coco")
    assert coco["crowd_images_skipped"] == 1
    assert sum(s["skipped_count"] for s in manifest["sources"]) == 0  # the demo is clean
    # label files, COCO records and provenance describe the same images
    n_prov = len((out / "provenance.jsonl").read_text().splitlines())
    n_labels = len(list((out / "labels").rglob("*.txt")))
    n_images = len(list((out / "images").rglob("*.*")))
    n_coco = sum(len(json.loads((out / f"annotations/{s}.json").read_text())["images"]) for s in ("train", "val"))
    assert n_prov == n_labels == n_images == n_coco == manifest["images"]["train"] + manifest["images"]["val"]
    report = check_dataset(out)
    assert report["errors"] == 0 and report["warnings"] == 0
    assert network_attempts() == []


def test_existing_output_is_never_mixed(demo, tmp_path, capsys):
    cfg = demo / "datasets.yaml"
    with pytest.raises(SystemExit) as info:
        main(["data", "build", str(cfg), "--only", "real", "--out", str(demo / "dataset")])
    assert info.value.code == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    # --overwrite replaces it only when done, and only with what was asked for
    other = tmp_path / "ds"
    build_dataset(cfg, out=other, only=["real"])
    before = sorted(p.name for p in (other / "images" / "train").iterdir())
    manifest = build_dataset(cfg, out=other, only=["labelme"], overwrite=True)
    after = sorted(p.name for p in (other / "images" / "train").iterdir())
    assert all(n.startswith("labelme_") for n in after) and not set(before) & set(after)
    assert [s["name"] for s in manifest["sources"]] == ["labelme"] and manifest["only"] == ["labelme"]
    assert not list(tmp_path.glob(".ds.*"))  # no temporary folders left behind
    # a folder that is not an animeseg dataset is never deleted, even with --overwrite
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(AnimesegError, match="not a dataset built by animeseg"):
        build_dataset(cfg, out=foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="--only: no source named 'nope'"):
        build_dataset(cfg, out=tmp_path / "x", only=["nope"])
    with pytest.raises(ConfigError, match="is inside the output folder"):
        build_dataset(cfg, out=demo / "anime-segmentation", overwrite=True)


def test_weight_and_max_images(demo, tmp_path):
    cfg = tmp_path / "w.yaml"
    pairs = demo / "anime-segmentation"
    body = (
        "out: o\nval_fraction: 0.25\nimgsz: 160\nsources:\n"
        f"  - {{name: r, type: mask_pairs, images: '{pairs / 'imgs'}', masks: '{pairs / 'masks'}'"
    )
    cfg.write_text(body + ", max_images: 6}\n")
    m = build_dataset(cfg)
    assert m["images"]["train"] + m["images"]["val"] == 6
    cfg.write_text(body + ", weight: 2}\n")
    m = build_dataset(cfg, overwrite=True)
    assert m["images"] == {"train": 12, "val": 2}  # 6 train pairs written twice, val never repeated
    prov = [json.loads(x) for x in (tmp_path / "o" / "provenance.jsonl").read_text().splitlines()]
    repeats = [p for p in prov if "repeat_of" in p]
    assert len(repeats) == 6 and all(p["image"].endswith("_r1.jpg") for p in repeats)
    first = repeats[0]
    assert (tmp_path / "o" / first["image"]).read_bytes() == (tmp_path / "o" / first["repeat_of"]).read_bytes()
    cfg.write_text(body + ", weight: 0.5}\n")
    m = build_dataset(cfg, overwrite=True)
    assert m["images"]["train"] + m["images"]["val"] == 4


def test_yolo_source_includes_a_dataset_as_it_is(demo, tmp_path):
    src = demo / "dataset"
    cfg = tmp_path / "y.yaml"
    cfg.write_text(f"out: o\nimgsz: 320\nsources:\n  - {{name: old, type: yolo, folder: '{src}'}}\n")
    m = build_dataset(cfg)
    orig = json.loads((src / "manifest.json").read_text())
    assert m["images"] == orig["images"] and m["instances"] == orig["instances"]  # its own split is kept
    prov = [json.loads(x) for x in (tmp_path / "o" / "provenance.jsonl").read_text().splitlines()]
    for p in prov[:20]:
        new = (tmp_path / "o" / p["image"].replace("images/", "labels/")).with_suffix(".txt").read_text()
        old = (src / p["label"]).read_text()
        assert new == old  # polygons kept exactly as written
        assert (tmp_path / "o" / p["image"]).read_bytes() == (src / p["original"]).read_bytes()


def test_check_reports_broken_datasets(tmp_path):
    root = tmp_path / "ds"
    img = np.full((40, 50, 3), 120, np.uint8)
    for name in ("good", "coords", "two_points", "bad_class", "mixed", "dup", "nolabel"):
        write_image(root / "images" / "train" / f"{name}.png", img if name != "dup" else img)
    img2 = img.copy()
    img2[0, 0] = 0
    write_image(root / "images" / "train" / "good.png", img2)
    (root / "images" / "train" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    labels = {
        "good": "0 0.1 0.1 0.5 0.1 0.3 0.6\n",
        "coords": "0 0.1 0.1 1.2 0.1 0.3 0.6\n",
        "two_points": "0 0.1 0.1 0.5 0.1 0.3\n",  # 2.5 points (4 values would be a box line)
        "bad_class": "3 0.1 0.1 0.5 0.1 0.3 0.6\n",
        "mixed": "0 0.1 0.1 0.5 0.1 0.3 0.6\n0 0.5 0.5 0.2 0.2\n",
        "dup": "0 0.1 0.1 0.5 0.1 0.3 0.6\n",
        "broken": "0 0.1 0.1 0.5 0.1 0.3 0.6\n",
        "orphan": "0 0.1 0.1 0.5 0.1 0.3 0.6\n",
    }
    (root / "labels" / "train").mkdir(parents=True)
    for stem, text in labels.items():
        (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames: [character]\n")
    report = check_dataset(root)
    problems = {(Path(e["file"]).name, e["problem"].split(":")[0]) for e in report["error_list"]}
    assert ("coords.txt", "line 1") in problems and ("two_points.txt", "line 1") in problems
    assert ("bad_class.txt", "line 1") in problems
    assert ("orphan.txt", "label file without an image (orphan)") in problems
    assert any(f == "broken.jpg" and p == "unreadable image" for f, p in problems)
    assert any(f == "mixed.txt" and "mixes polygon and box lines" in p for f, p in problems)
    warned = " ".join(f"{Path(w['file']).name}: {w['problem']}" for w in report["warning_list"])
    assert "nolabel.png: no label file" in warned and "same content as" in warned
    assert report["splits"]["train"]["instances"] == {"character": 4}  # good, dup, mixed (polygon), broken
    res = runner.invoke(app, ["data", "check", str(root)])
    assert res.exit_code == 1


@pytest.mark.slow
def test_ultralytics_trains_one_epoch_on_the_built_dataset(demo, tmp_path, network_attempts):
    from animeseg.yolo import load_yolo

    model = load_yolo("yolov8n-seg.yaml")
    model.train(
        data=str(demo / "dataset" / "data.yaml"),
        epochs=1,
        imgsz=64,
        batch=8,
        project=str(tmp_path / "runs"),
        name="t",
        device="cpu",
        workers=0,
        plots=False,
        amp=False,
        val=True,
        verbose=False,
    )
    run = tmp_path / "runs" / "t"
    assert (run / "weights" / "last.pt").is_file()
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and "metrics/mAP50(M)" in rows[0]
    assert network_attempts() == []
