"""`animeseg weights import`: an Ultralytics ONNX export turned back into a trainable checkpoint.

A tiny random YOLOv8n-seg is exported here (fp32 and int8), imported back, and must compute what it computed;
the real COCO int8 export from ../shared must keep its detections; and the imported checkpoint must train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from animeseg.cli import app, main
from animeseg.errors import InputError
from animeseg.export import export_detector
from animeseg.io import read_image, read_rgba
from animeseg.onnx_to_checkpoint import compare, import_onnx, read_export
from animeseg.weights import example_image

runner = CliRunner()


def _tiny_yolo(path: Path) -> Path:
    """A random YOLOv8n-seg with trained-looking BatchNorm statistics and scores high enough to detect."""
    from animeseg._offline import import_ultralytics

    torch.manual_seed(0)
    yolo = import_ultralytics().YOLO("yolov8n-seg.yaml")
    with torch.no_grad():
        for name, buf in yolo.model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for p in yolo.model.parameters():
            p.add_(torch.randn_like(p) * 0.03)
        head = yolo.model.model[-1]
        for seq in head.cv3:
            seq[-1].bias.fill_(-2.0)
    yolo.model.names = {i: f"class{i}" for i in range(len(yolo.model.names))}
    yolo.save(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("import")
    ckpt = _tiny_yolo(root / "tiny-seg.pt")
    fp32 = export_detector(ckpt, imgsz=160, out=root / "fp32")
    int8 = export_detector(ckpt, imgsz=160, int8=True, out=root / "int8")
    return ckpt, fp32, int8


def _raw(model_file: Path, x: torch.Tensor) -> list[torch.Tensor]:
    """(1, 4 + nc + 32, anchors): boxes, class scores and mask coefficients, then the (1, 32, h, w) prototypes."""
    from animeseg._offline import import_ultralytics

    model = import_ultralytics().YOLO(str(model_file)).model.float().eval()
    with torch.no_grad():
        (detections, protos), _ = model(x)
    return [detections, protos]


def test_fp32_export_imports_to_the_same_function(tiny, tmp_path):
    ckpt, fp32, _ = tiny
    result = import_onnx(fp32, tmp_path / "back.pt")
    assert result.architecture == "yolov8n-seg.yaml" and result.task == "segment" and result.imgsz == 160
    assert result.precision == "fp32" and len(result.names) == 80 and result.names[3] == "class3"
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    for a, b in zip(_raw(ckpt, x), _raw(result.checkpoint, x), strict=True):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), (a - b).abs().max()
    # it is a plain unfused Ultralytics model: BatchNorm layers are there to train again
    model = torch.load(result.checkpoint, weights_only=False)["model"]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_int8_export_dequantises_to_the_original_weights(tiny, tmp_path):
    ckpt, _, int8 = tiny
    assert read_export(int8).precision == "int8"
    result = import_onnx(int8, tmp_path / "int8.pt")
    assert result.precision == "int8"
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(3))
    for a, b in zip(_raw(ckpt, x), _raw(result.checkpoint, x), strict=True):
        # int8 rounding only: a wrong scale, zero point or layout would leave no correlation at all
        corr = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
        assert corr > 0.99, corr


def test_kept_classes_score_as_before(tiny, tmp_path):
    ckpt, fp32, _ = tiny
    result = import_onnx(fp32, tmp_path / "two.pt", classes=["class5", "2"], rename=["a", "b"])
    assert result.names == {0: "a", 1: "b"} and result.kept_classes == [5, 2]
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    full, cut = _raw(ckpt, x)[0], _raw(result.checkpoint, x)[0]
    assert cut.shape[1] == 4 + 2 + 32
    assert torch.allclose(cut[:, 4:6], full[:, [4 + 5, 4 + 2]], atol=1e-3)


def test_not_an_ultralytics_export_is_one_line(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(plain))
    with pytest.raises(InputError, match="not an Ultralytics YOLO export"):
        import_onnx(plain, tmp_path / "x.pt")
    text = tmp_path / "text.onnx"
    text.write_text("hello")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["weights", "import", str(text), "--out", str(tmp_path / "y.pt")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 1 and len(err.splitlines()) == 1 and "text.onnx: not an ONNX model" in err
    assert not (tmp_path / "y.pt").exists()


def test_real_coco_export_keeps_every_confident_detection(shared_onnx, renpy, tmp_path, network_attempts):
    """Acceptance 4: at 320 every ONNX detection >= 0.5 is found again (same class, box IoU >= 0.95, >= 0.3)."""
    res = runner.invoke(app, ["weights", "import", str(shared_onnx), "--out", str(tmp_path / "coco.pt")])
    assert res.exit_code == 0, res.output
    assert "parity: ok" in res.output and "yolov8n-seg.yaml" in res.output
    found = compare(shared_onnx, tmp_path / "coco.pt", read_image(example_image()))
    assert found.onnx_count >= 1 and found.ok()
    bg = read_image(renpy / "bg" / "bg meadow.jpg")
    for names in (("eileen vhappy", "lucy happy"), ("sylvie green smile",)):
        canvas = bg.copy()
        for k, name in enumerate(names):
            sprite = read_rgba(renpy / "fg" / f"{name}.png")
            h, w = sprite.shape[:2]
            x = 100 + k * 600
            alpha = sprite[..., 3:] / 255.0
            region = canvas[720 - h :, x : x + w]
            canvas[720 - h :, x : x + w] = (region * (1 - alpha) + sprite[..., :3] * alpha).astype(np.uint8)
        parity = compare(shared_onnx, tmp_path / "coco.pt", canvas)
        assert parity.ok()
        found.rows += parity.rows
    assert sum(r.onnx_conf >= 0.5 for r in found.rows) >= 2  # the check above was not vacuous
    assert network_attempts() == []


def test_imported_checkpoint_fine_tunes(tiny, tmp_path, network_attempts):
    from animeseg.data.build import build_dataset
    from animeseg.data.demo import write_demo

    _, fp32, _ = tiny
    start = import_onnx(fp32, tmp_path / "start.pt", classes=["0"], rename=["character"]).checkpoint
    write_demo(tmp_path / "src")
    config = tmp_path / "src" / "mini.yaml"
    config.write_text(
        "out: built\nseed: 0\nval_fraction: 0.25\nclasses: [character]\nimgsz: 128\nsources:\n"
        "  - {name: c, type: composite, foregrounds: anime-segmentation/fg, backgrounds: anime-segmentation/bg,"
        " count: 8}\n"
    )
    data = Path(build_dataset(config)["out"]) / "data.yaml"
    res = runner.invoke(
        app,
        ["train", "--data", str(data), "--model", str(start), "--epochs", "1", "--imgsz", "64", "--device", "cpu",
         "--project", str(tmp_path / "runs"), "--name", "ft", "--weights-dir", str(tmp_path / "weights"),
         "-a", "plots=False"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    before = torch.load(start, weights_only=False)["model"].state_dict()
    after = torch.load(tmp_path / "runs" / "ft" / "weights" / "last.pt", weights_only=False)
    after = (after.get("ema") or after["model"]).float().state_dict()
    changed = [k for k, v in before.items() if v.dtype.is_floating_point and not torch.allclose(v, after[k].float())]
    assert changed, "training changed no weight"
    assert network_attempts() == []
