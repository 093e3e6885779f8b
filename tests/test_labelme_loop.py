"""The loop of docs/data.md ("Correcting predictions"), its commands run as written on a tiny folder: predict
LabelMe files, correct one (a shape deleted, one moved, as a person would in LabelMe), add the folder to a
datasets.yaml next to composites, build, fine-tune the packaged checkpoint for one short epoch, evaluate.

Only two things differ from the page: the packaged checkpoint's path is made absolute (the commands run in a
temporary folder, not the checkout), and `train` and `eval` get tiny-run options appended (one epoch at 64
pixels on the CPU, raw masks only for eval), which win over the page's own as the last ones given."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import cv2
import numpy as np
from conftest import run_cli

from animeseg.data.demo import write_demo
from animeseg.labelme import shape_mask
from animeseg.masks import decode_rle, mask_iou
from animeseg.weights import example_image, packaged_model

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "data.md"
PACKAGED = "animeseg/models/anime-yolov8n-seg.pt"
TINY = {
    "train": [
        "--epochs",
        "1",
        "--imgsz",
        "64",
        "--batch",
        "4",
        "--device",
        "cpu",
        "-a",
        "workers=0",
        "-a",
        "plots=false",
    ],
    "eval": ["--imgsz", "64", "--device", "cpu", "--refine", "none"],
}
#: The user's datasets.yaml before the loop: composites of the demo's characters (the page's "composites").
CONFIG = """\
out: data/dataset
seed: 0
val_fraction: 0.25
classes: [character]
imgsz: 960
sources:
  - name: composites
    type: composite
    foregrounds: demo/anime-segmentation/fg
    backgrounds: demo/anime-segmentation/bg
    canvas: [128, 128]
    count: 4
    per_image: [1, 2]
"""
MOVE = (40, 12)  # pixels a corrected shape is moved by (x, y)


def block(name: str) -> str:
    """The code of the fenced block between ``<!-- name:begin -->`` and ``<!-- name:end -->`` of the page."""
    found = re.search(rf"<!-- {name}:begin -->\n```\w+\n(.*?)```\n<!-- {name}:end -->", PAGE.read_text(), re.S)
    assert found, f"docs/data.md has no {name} block"
    return found.group(1)


def correct(label_file: Path) -> tuple[dict, dict]:
    """What a person does in LabelMe: delete the first character's shape, move the second's; the file saved as
    LabelMe saves it. Returns (the deleted shape, the moved shape as now saved)."""
    doc = json.loads(label_file.read_text())
    singles = [s for s in doc["shapes"] if s["group_id"] is None]
    deleted, moved = singles[0], singles[1]
    doc["shapes"].remove(deleted)
    moved["points"] = [[x + MOVE[0], y + MOVE[1]] for x, y in moved["points"]]
    label_file.write_text(json.dumps(doc, ensure_ascii=False, indent=2))
    return deleted, moved


def test_the_documented_loop_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANIMESEG_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "art").mkdir()
    image = cv2.imread(str(example_image()))
    cv2.imwrite("art/meadow.jpg", image)
    cv2.imwrite("art/meadow-flipped.jpg", image[:, ::-1])
    write_demo(tmp_path / "demo")
    Path("datasets.yaml").write_text(CONFIG + block("loop-source"))

    commands = [line for line in block("loop").splitlines() if line.strip() and not line.startswith("#")]
    assert [c.split()[:2] for c in commands] == [
        ["animeseg", "predict"],
        ["labelme", "runs/art/labelme"],
        ["animeseg", "data"],
        ["animeseg", "train"],
        ["animeseg", "eval"],
    ]
    corrected = None
    for command in commands:
        argv = shlex.split(command.replace(PACKAGED, str(packaged_model("pt"))))
        if argv[0] == "labelme":  # the person's step, done here to one file
            folder = Path(argv[1])
            found = {p.stem: json.loads(p.read_text())["shapes"] for p in folder.glob("*.json")}
            assert sorted(found) == ["meadow", "meadow-flipped"] and len(found["meadow"]) == 3  # the three sprites
            corrected = correct(folder / "meadow.json")
            continue
        code, err = run_cli(capsys, *argv[1:], *TINY.get(argv[1], []))
        assert code == 0, f"{command}: {err[-2000:]}"

    # the dataset holds the corrected file: one instance fewer, the moved one where it was moved to
    deleted, moved = corrected
    dataset = Path("data/dataset")
    records = [json.loads(x) for x in (dataset / "provenance.jsonl").read_text().splitlines()]
    record = next(r for r in records if r.get("json") == "meadow.json")
    split = record["split"]
    doc = json.loads((dataset / "annotations" / f"{split}.json").read_text())
    im = next(i for i in doc["images"] if f"images/{split}/{i['file_name']}" == record["image"])
    masks = [decode_rle(a["segmentation"]) for a in doc["annotations"] if a["image_id"] == im["id"]]
    assert len(masks) == 2
    h, w = image.shape[:2]
    assert max(mask_iou(m, shape_mask(moved, "polygon", h, w)) for m in masks) > 0.99
    assert max(mask_iou(m, shape_mask(deleted, "polygon", h, w)) for m in masks) < 0.1
    flipped = next(r for r in records if r.get("json") == "meadow-flipped.json")
    assert flipped["source"] == "corrected" and sum(r.get("source") == "composites" for r in records) == 4

    # trained on that very dataset, from the packaged checkpoint, then scored by eval
    sidecar = json.loads(Path("weights/animeseg-corrected.json").read_text())
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert sidecar["dataset"]["config_hash"] == manifest["config_hash"] and sidecar["epochs_completed"] == 1
    assert Path(sidecar["model"]).name == "anime-yolov8n-seg.pt"
    metrics = json.loads(next(Path("runs/eval").glob("*/metrics.json")).read_text())
    assert metrics["ground_truth"]["images"] >= 1 and np.isfinite(metrics["results"]["raw"]["mask"]["AP"])
