"""Mask R-CNN as a second architecture: tiny random-weights models trained, resumed, used by predict and eval,
exported to ONNX, all offline, through the same CLI and library as YOLO."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MINI_DATASETS, run_cli
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from animeseg.cli import app
from animeseg.data.build import build_dataset
from animeseg.data.demo import write_demo
from animeseg.errors import AnimesegError, InputError, MissingWeightsError

pl = pytest.importorskip("lightning.pytorch", reason="Mask R-CNN training needs the maskrcnn extra (lightning)")


from animeseg.maskrcnn import model as M  # noqa: E402
from animeseg.train.maskrcnn import train_maskrcnn  # noqa: E402
from animeseg.train.maskrcnn_runs import epochs_done, load_start  # noqa: E402

runner = CliRunner()

#: A tiny Mask R-CNN: MobileNetV3 at a quarter of its width, few proposals; trains in seconds on a CPU.
TINY = {
    "width_mult": 0.25,
    "fpn_channels": 32,
    "options": {
        "rpn_pre_nms_top_n_train": 200,
        "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 100,
        "rpn_post_nms_top_n_test": 50,
        "box_batch_size_per_image": 64,
    },
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A built dataset's data.yaml: 6 train and 2 val composites at 128 px, with annotations/*.json."""
    root = tmp_path_factory.mktemp("mrcnn-data")
    write_demo(root / "src")
    (root / "src" / "mini.yaml").write_text(MINI_DATASETS.format(count=8))
    return Path(build_dataset(root / "src" / "mini.yaml")["out"]) / "data.yaml"


def _train(tmp: Path, data: Path, **kw):
    common = {"backbone": "mobilenet_v3_large_fpn", "from_scratch": True, "imgsz": 128, "batch": 2, "device": "cpu",
              "project": tmp / "runs", "name": "tiny", "weights_dir": tmp / "weights", "model_options": TINY,
              "lr0": 0.02}  # fmt: skip
    return train_maskrcnn(data, **{**common, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset):
    """One tiny 1-epoch run: (TrainResult, its folder)."""
    tmp = tmp_path_factory.mktemp("mrcnn-run")
    return _train(tmp, dataset, epochs=1), tmp


def test_train_writes_weights_sidecar_and_checkpoints(trained, dataset, network_attempts):
    result, tmp = trained
    side = result.sidecar
    assert result.weights == tmp / "weights" / "animeseg-tiny.pt" and result.weights.is_file()
    assert json.loads(result.weights.with_suffix(".json").read_text()) == side
    assert side["architecture"] == "maskrcnn" and side["backbone"] == "mobilenet_v3_large_fpn"
    assert side["epochs_completed"] == 1 and side["from_scratch"] and side["names"] == {"0": "character"}
    assert side["dataset"]["annotations"] == str(dataset.parent / "annotations" / "train.json")
    assert "val/loss" in side["metrics"] and "metrics/mAP50-95(M)" in side["metrics"]
    assert (result.run / "checkpoints" / "last.ckpt").is_file() and (
        result.run / "logs" / "0" / "metrics.csv"
    ).is_file()
    assert M.architecture(result.weights) == "maskrcnn"
    assert M.architecture(result.run / "checkpoints" / "last.ckpt") == "maskrcnn"
    assert network_attempts() == []


def test_cli_train_and_resume(tmp_path, dataset, network_attempts, monkeypatch, capsys):
    """Acceptance 1 through the CLI (the tiny width via the library's defaults), then --resume continues."""
    import animeseg.train.maskrcnn as MT

    real = MT.train_maskrcnn
    monkeypatch.setattr(MT, "train_maskrcnn", lambda *a, **k: real(*a, **{**k, "model_options": TINY}))
    args = ["train", "--arch", "maskrcnn", "--backbone", "mobilenet_v3_large_fpn", "--from-scratch", "--data",
            str(dataset), "--epochs", "1", "--imgsz", "128", "--batch", "2", "--device", "cpu",
            "--project", str(tmp_path / "runs"), "--name", "cli", "--weights-dir", str(tmp_path / "w")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "maskrcnn" in res.output and (tmp_path / "w" / "animeseg-cli.json").is_file()
    last = tmp_path / "runs" / "cli" / "checkpoints" / "last.ckpt"
    assert epochs_done(last) == 1

    resume = ["train", "--arch", "maskrcnn", "--resume", "--epochs", "2", "--project", str(tmp_path / "runs"),
              "--name", "cli", "--weights-dir", str(tmp_path / "w")]  # fmt: skip
    res = runner.invoke(app, resume)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert epochs_done(last) == 2  # the second epoch ran, from the first's checkpoint
    logs = sorted(p.parent.name for p in (tmp_path / "runs" / "cli" / "logs").glob("*/metrics.csv"))
    assert logs == ["0", "1"]
    side = json.loads((tmp_path / "w" / "animeseg-cli.json").read_text())
    assert side["resumed"] and side["epochs_completed"] == 2

    code, err = run_cli(capsys, *resume)  # nothing left to do: one line, exit code 2
    assert code == 2 and "already finished all its 2 epochs" in err and len(err.strip().splitlines()) == 1
    assert network_attempts() == []


def test_interrupted_run_says_how_to_resume_and_resumes(tmp_path, dataset):
    class StopInSecondEpoch(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt  # like Ctrl-C during epoch 2

    with pytest.raises(AnimesegError, match=r"interrupted at epoch 2/2 .*--resume") as e:
        _train(tmp_path, dataset, epochs=2, callbacks=[StopInSecondEpoch()])
    assert "\n" not in str(e.value)
    last = tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    assert epochs_done(last) == 1 and "holds 1 finished epoch(s)" in str(e.value)
    result = train_maskrcnn(None, resume=True, project=tmp_path / "runs", name="tiny", weights_dir=tmp_path / "w")
    assert epochs_done(last) == 2 and result.sidecar["resumed"] and result.sidecar["epochs_completed"] == 2


def test_predict_and_eval_match_pycocotools_with_grabcut(trained, dataset, tmp_path, network_attempts):
    """Acceptance 2: the same predict/eval commands take the Mask R-CNN checkpoint."""
    result, _ = trained
    images = dataset.parent / "images" / "val"
    out = tmp_path / "pred"
    args = ["predict", str(images), "--model", str(result.weights), "--conf", "0.01", "--refine", "grabcut",
            "--device", "cpu", "--save", "json,masks", "--out", str(out)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    pred = json.loads((out / "predictions.json").read_text())
    assert pred["annotations"], "a 1-epoch model still scores boxes above 0.01"
    assert {a["refine"]["method"] for a in pred["annotations"]} == {"grabcut"}

    ev_out = tmp_path / "eval"
    res = runner.invoke(app, ["eval", "--model", str(result.weights), "--data", str(dataset), "--imgsz", "128",
                              "--device", "cpu", "--refine", "grabcut", "--out", str(ev_out)])  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((ev_out / "metrics.json").read_text())
    coco = COCO(str(dataset.parent / "annotations" / "val.json"))
    for variant, file in (("raw", "predictions.json"), ("refined", "predictions-refined.json")):
        anns = json.loads((ev_out / file).read_text())["annotations"]
        assert anns
        ev = COCOeval(coco, coco.loadRes(anns), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert metrics["results"][variant]["mask"]["AP"] == pytest.approx(max(ev.stats[0], 0.0), abs=1e-4)
    assert network_attempts() == []


def test_export_onnx_matches_pytorch_and_predicts(trained, dataset, tmp_path):
    """Acceptance 3: export onnx reads the architecture from the checkpoint; ORT masks match PyTorch's."""
    result, _ = trained
    res = runner.invoke(app, ["export", "onnx", "--model", str(result.weights), "--out", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    onnx_path = tmp_path / "exp" / "animeseg-tiny.onnx"
    assert "maskrcnn fp32 ONNX vs PyTorch" in res.output and "passed" in res.output
    assert M.architecture(onnx_path) == "maskrcnn"

    from animeseg.io import read_image
    from animeseg.maskrcnn.export import check_maskrcnn

    image = read_image(sorted((dataset.parent / "images" / "val").iterdir())[0])
    parity = check_maskrcnn(result.weights, onnx_path, image=image, conf=0.01)
    assert parity.passed and parity.metrics["detections compared"] > 0, parity.to_dict()

    from animeseg.predict import Segmenter

    pt = Segmenter(result.weights, conf=0.01, device="cpu").detect(image)
    ox = Segmenter(onnx_path, conf=0.01).detect(image)
    assert len(ox) > 0 and ox.masks.shape[1:] == image.shape[:2]
    assert np.allclose(pt.scores[:5], ox.scores[:5], atol=1e-3)


def test_images_without_characters_train_as_empty_targets(tmp_path):
    """Hard negatives (``per_image: [0, 0]``, backgrounds with nobody on them) are empty targets, not a crash."""
    from animeseg.maskrcnn.dataset import CocoMasks

    write_demo(tmp_path / "src")
    config = (
        MINI_DATASETS.format(count=4)
        + """  - name: empty
    type: composite
    foregrounds: anime-segmentation/fg
    backgrounds: anime-segmentation/bg
    count: 4
    per_image: [0, 0]
"""
    )
    (tmp_path / "src" / "mini.yaml").write_text(config)
    data = Path(build_dataset(tmp_path / "src" / "mini.yaml")["out"]) / "data.yaml"
    train = CocoMasks(data, "train", augment=True)
    items = [train[i] for i in range(len(train))]
    empty = [(x, t) for x, t in items if len(t["boxes"]) == 0]
    assert empty and len(empty) < len(items)
    x, t = empty[0]
    assert t["boxes"].shape == (0, 4) and t["masks"].shape == (0, *x.shape[1:]) and len(t["labels"]) == 0
    result = _train(tmp_path, data, epochs=1)
    assert Path(result.weights).is_file()


def test_bad_inputs_are_one_line(tmp_path, dataset, capsys):
    # a checkpoint of an architecture animeseg does not know
    bad = tmp_path / "detr.pt"
    torch.save({"arch": "detr", "state_dict": {}}, bad)
    code, err = run_cli(capsys, "predict", dataset.parent / "images" / "val", "--model", bad, "--out", tmp_path / "p")
    assert code != 0 and f"{bad}: unknown architecture 'detr' (known: yolo, maskrcnn)" in err
    assert len(err.strip().splitlines()) == 1, err
    # a dataset without annotations/*.json
    copy = tmp_path / "noann"
    shutil.copytree(dataset.parent, copy)
    shutil.rmtree(copy / "annotations")
    text = (copy / "data.yaml").read_text().replace(str(dataset.parent), str(copy))
    (copy / "data.yaml").write_text(text)
    with pytest.raises(InputError, match=r"annotations/train\.json: missing"):
        _train(tmp_path, copy / "data.yaml", epochs=1)
    # no COCO starting point in weights/ and no --from-scratch: one line, no download
    with pytest.raises(MissingWeightsError, match="animeseg weights download fasterrcnn_mobilenet_v3_large_fpn"):
        _train(tmp_path, dataset, epochs=1, from_scratch=False)


def test_coco_starting_point_loads_all_but_the_class_layers(tmp_path):
    """A torchvision-format COCO checkpoint (same layout as the official file, random values) starts training."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    coco = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91)
    path = tmp_path / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    torch.save(coco.state_dict(), path)
    net = M.build_model(M.ModelConfig(backbone="mobilenet_v3_large_fpn", imgsz=128))
    copied, skipped = load_start(net, path)
    assert skipped == 4  # the class-specific box predictor: cls_score and bbox_pred, weight and bias
    key = "backbone.body.0.0.weight"
    assert torch.equal(net.state_dict()[key], coco.state_dict()[key]) and copied == len(coco.state_dict()) - 4


def test_weights_entries_carry_torchvision_digest_prefixes(tmp_path):
    from animeseg import weights as W

    entry = W.find("maskrcnn_resnet50_fpn_v2")
    assert entry.filename == "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth" and entry.sha256 == "73cbd019"
    assert W.find("fasterrcnn_mobilenet_v3_large_fpn").sha256 == "fb6a3cc7"
    f = tmp_path / "x.pth"
    f.write_bytes(b"not the official file")
    digest = W.sha256_file(f)
    assert W.verify(f, digest[:8]).ok is True and W.verify(f, "73cbd019").ok is False
