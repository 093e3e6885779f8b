"""`animeseg train`: offline, study defaults, weights + sidecar, resume, and a tiny train -> eval run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import MINI_DATASETS as MINI
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

import animeseg.train.amp as A
import animeseg.train.yolo as T
from animeseg.cli import app
from animeseg.data.build import build_dataset
from animeseg.data.demo import write_demo
from animeseg.errors import AnimesegError, MissingWeightsError
from animeseg.weights import sha256_file

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A ``datasets.yaml`` over the synthetic demo sources (12 composites of generated characters)."""
    write_demo(tmp_path / "src")
    path = tmp_path / "src" / "mini.yaml"
    path.write_text(MINI.format(count=12))
    return path


@pytest.fixture
def dataset(config: Path) -> Path:
    """The built dataset's ``data.yaml`` (9 train, 3 val images)."""
    return Path(build_dataset(config)["out"]) / "data.yaml"


def epochs_in(run: Path) -> list[int]:
    with open(run / "results.csv", newline="") as f:
        return [int(float(row["epoch"])) for row in csv.DictReader(f, skipinitialspace=True)]


def test_train_then_eval_offline(tmp_path, dataset, network_attempts):
    """Acceptance 1 + the end-to-end run: CLI train (plots on, so fonts are exercised) and CLI eval."""
    res = runner.invoke(
        app,
        ["train", "--data", str(dataset), "--model", "yolov8n-seg.yaml", "--epochs", "1", "--imgsz", "160",
         "--device", "cpu", "--project", str(tmp_path / "runs"), "--name", "tiny",
         "--weights-dir", str(tmp_path / "weights")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    weights = tmp_path / "weights" / "animeseg-tiny.pt"
    sidecar = json.loads(weights.with_suffix(".json").read_text())
    assert weights.is_file() and sidecar["weights_sha256"] == sha256_file(weights)
    assert sidecar["run"] == str(tmp_path / "runs" / "tiny") and sidecar["epochs_completed"] == 1
    args = sidecar["train_args"]
    assert args["momentum"] == 0.937 and args["weight_decay"] == 0.0005 and args["dropout"] == 0.0
    assert args["amp"] is False and args["imgsz"] == 160 and args["batch"] == 16  # AutoBatch -> 16 on CPU
    manifest = json.loads((dataset.parent / "manifest.json").read_text())
    assert sidecar["dataset"]["data_yaml"] == str(dataset)
    assert sidecar["dataset"]["data_yaml_sha256"] == sha256_file(dataset)
    assert sidecar["dataset"]["manifest_sha256"] == sha256_file(dataset.parent / "manifest.json")
    assert sidecar["dataset"]["config_hash"] == manifest["config_hash"]
    assert "metrics/mAP50-95(M)" in sidecar["metrics"]
    assert sidecar["versions"]["ultralytics"] and sidecar["versions"]["torch"] == torch.__version__
    assert sidecar["names"] == {"0": "character"}
    assert (tmp_path / "runs" / "tiny" / "results.png").is_file()  # plots drawn without fetching a font

    out = tmp_path / "eval"
    res = runner.invoke(
        app, ["eval", "--model", str(weights), "--data", str(dataset), "--imgsz", "128", "--device", "cpu",
              "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ground_truth"]["images"] == 3 and metrics["class_map"] == {"character": "character"}
    pred = json.loads((out / "predictions.json").read_text())
    coco = COCO(str(dataset.parent / "annotations" / "val.json"))
    if pred["annotations"]:  # a 1-epoch model may find nothing; then AP is 0 by definition
        ev = COCOeval(coco, coco.loadRes(pred["annotations"]), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert metrics["results"]["raw"]["mask"]["AP"] == pytest.approx(max(ev.stats[0], 0.0), abs=1e-4)
    else:
        assert metrics["results"]["raw"]["mask"]["AP"] == 0.0
    assert network_attempts() == []


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_from_next_epoch(tmp_path, dataset, monkeypatch, network_attempts):
    amp_checks = []
    real_check = A.offline_check_amp
    monkeypatch.setattr(A, "offline_check_amp", lambda model: amp_checks.append(model) or real_check(model))

    def interrupt_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise Interrupt  # after last.pt of epoch 1 was saved, like a Ctrl-C between epochs

    common = {"project": tmp_path / "runs", "weights_dir": tmp_path / "weights"}
    with pytest.raises(Interrupt):
        T.train(
            dataset, "yolov8n-seg.yaml", epochs=2, imgsz=64, device="cpu", name="run",
            extra={"plots": False, "amp": True}, callbacks={"on_fit_epoch_end": interrupt_after_first_epoch},
            **common,
        )  # fmt: skip
    run = tmp_path / "runs" / "run"
    assert epochs_in(run) == [1] and (run / "weights" / "last.pt").is_file()
    assert amp_checks, "the AMP check went through animeseg's offline replacement"

    started, trained = [], []
    T.train(
        None, "yolov8n-seg.yaml", resume=True, name="run",
        callbacks={"on_train_start": lambda t: started.append(t.start_epoch),
                   "on_train_epoch_start": lambda t: trained.append(t.epoch)},
        **common,
    )  # fmt: skip
    assert started == [1] and trained == [1]  # 0-based: the second epoch only
    assert epochs_in(run) == [1, 2]
    sidecar = json.loads((tmp_path / "weights" / "animeseg-run.json").read_text())
    assert sidecar["resumed"] is True and sidecar["epochs_completed"] == 2
    with pytest.raises(AnimesegError, match="nothing to resume"):
        T.train(None, resume=True, name="run", **common)
    assert network_attempts() == []


def test_study_defaults_and_lr0_warning(caplog):
    """The warning goes through logging (the CLI prints it), never straight to the terminal."""

    def logged() -> str:
        text = "\n".join(r.getMessage() for r in caplog.records if r.name == "animeseg")
        caplog.clear()
        return text

    caplog.set_level("WARNING", logger="animeseg")
    args = T.train_arguments(
        epochs=None, imgsz=None, batch=None, device="cpu", optimizer=None, lr0=None,
        momentum=None, weight_decay=None, dropout=None, extra=None,
    )  # fmt: skip
    assert {k: args[k] for k in T.STUDY_DEFAULTS} == T.STUDY_DEFAULTS and args["amp"] is False
    assert "lr0" not in logged()

    none = dict.fromkeys(("epochs", "imgsz", "batch", "optimizer", "momentum", "weight_decay", "dropout"))
    args = T.train_arguments(**none, device="cpu", lr0=0.003, extra=None)
    err = logged()
    assert args["lr0"] == 0.003 and err.count("lr0=0.003: no effect with optimizer=auto") == 1
    T.train_arguments(**{**none, "optimizer": "SGD"}, device="cpu", lr0=0.003, extra=None)
    assert "no effect" not in logged()
    T.train_arguments(**none, device="cpu", lr0=None, extra={"lr0": 0.02, "momentum": 0.8})
    assert logged().count("lr0=0.02, momentum=0.8: no effect") == 1  # --arg counts too; one line


def test_pass_through_arguments():
    assert T.parse_extra(["mosaic=0.5", "plots=false", "freeze=[0, 1]", "optimizer=SGD"]) == {
        "mosaic": 0.5, "plots": False, "freeze": [0, 1], "optimizer": "SGD",
    }  # fmt: skip
    none = dict.fromkeys(("epochs", "imgsz", "batch", "optimizer", "lr0", "momentum", "weight_decay", "dropout"))
    assert T.train_arguments(**none, device="cpu", extra={"mosaic": 0.5, "patience": 3})["patience"] == 3
    with pytest.raises(AnimesegError, match="did you mean mosaic"):
        T.train_arguments(**none, device="cpu", extra={"mosaik": 0.5})
    with pytest.raises(AnimesegError, match="--project"):
        T.train_arguments(**none, device="cpu", extra={"project": "x"})
    with pytest.raises(AnimesegError, match="both given"):
        T.train_arguments(**{**none, "epochs": 3}, device="cpu", extra={"epochs": 4})
    with pytest.raises(AnimesegError, match="key=value"):
        T.parse_extra(["mosaic"])


def test_offline_amp_check(monkeypatch, tmp_path, network_attempts):
    import ultralytics.utils

    monkeypatch.setattr(ultralytics.utils, "WEIGHTS_DIR", tmp_path)  # no yolo26n.pt here
    model = torch.nn.Linear(1, 1)
    assert A.offline_check_amp(model) is False  # CPU: AMP is not used

    class FakeParam:  # a parameter on a GPU, without needing one
        device = torch.device("cuda", 0)

    monkeypatch.setattr(torch.nn.Linear, "parameters", lambda self: iter([FakeParam()]))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA GeForce GTX 1650")
    assert A.offline_check_amp(model) is False
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200")
    assert A.offline_check_amp(model) is True
    assert network_attempts() == []


def test_missing_model_is_a_clear_offline_error(tmp_path, dataset, network_attempts):
    res = runner.invoke(app, ["train", "--data", str(dataset), "--model", str(tmp_path / "yolov8m-seg.pt")])
    assert isinstance(res.exception, MissingWeightsError)
    assert "weights download" in str(res.exception)
    assert network_attempts() == []


def test_from_scratch_model_choice(tmp_path):
    assert T.scratch_model(tmp_path / "yolov8s-seg.pt") == ("yolov8s-seg.yaml", False)  # no weights file needed
    assert T.scratch_model("yolov8n-seg.yaml") == ("yolov8n-seg.yaml", False)
    with pytest.raises(AnimesegError, match="not an architecture bundled"):
        T.scratch_model(tmp_path / "my-model.pt")


def test_datasets_yaml_is_built_then_reused(config, network_attempts):
    first = T.resolve_data(config)
    assert first.built_now and first.data_yaml.is_file()
    manifest = first.data_yaml.parent / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    config.write_text("# a comment changes nothing\n" + config.read_text())
    again = T.resolve_data(config)
    assert not again.built_now and again.data_yaml == first.data_yaml and manifest.stat().st_mtime_ns == stamp
    assert again.fingerprint()["config_hash"] == json.loads(manifest.read_text())["config_hash"]
    config.write_text(MINI.format(count=8))  # a real change: rebuilt
    rebuilt = T.resolve_data(config)
    images = json.loads(manifest.read_text())["images"]
    assert rebuilt.built_now and images["train"] + images["val"] == 8
    assert network_attempts() == []


def test_data_resolution(tmp_path, dataset):
    assert T.resolve_data(dataset.parent).data_yaml == dataset  # the folder of a built dataset
    with pytest.raises(AnimesegError, match="neither data.yaml"):
        T.resolve_data(tmp_path / "src" / "coco")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(AnimesegError, match="bad.yaml"):
        T.resolve_data(tmp_path / "bad.yaml")


def test_multi_gpu_arguments(monkeypatch):
    """DDP needs cloudpickle and a batch Ultralytics can split; checked before anything starts (no GPU needed)."""
    import sys
    import types

    none = dict.fromkeys(("epochs", "imgsz", "optimizer", "lr0", "momentum", "weight_decay", "dropout"))
    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # import fails
    with pytest.raises(AnimesegError, match="cloudpickle"):
        T.train_arguments(**none, batch=None, device="0,1", extra=None)
    monkeypatch.setitem(sys.modules, "cloudpickle", types.ModuleType("cloudpickle"))
    args = T.train_arguments(**none, batch=None, device="0,1", extra=None)
    assert args["batch"] == 2 * T.DDP_BATCH_PER_GPU and "amp" not in args  # AutoBatch is single-GPU only
    assert T.train_arguments(**none, batch=32, device="0,1,2,3", extra=None)["batch"] == 32
    with pytest.raises(AnimesegError, match="multiple of the 4 GPUs"):
        T.train_arguments(**none, batch=30, device="0,1,2,3", extra=None)
