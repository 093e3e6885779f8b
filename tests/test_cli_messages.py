"""What a user reads: each bad option or input is one line naming it and the problem (exit code 2 for misuse,
1 for inputs that failed), and every command's help reads right (no type after a plain flag, choices listed, no
text meant for another command, ``-m/--model`` wherever a model is taken, rich markup not eating ``[ray]``)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import run_cli, run_cli_output

from animeseg import weights as W

EXAMPLE = W.example_image()


@pytest.fixture
def notes(tmp_path):
    """A text file named like an image."""
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    return path


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "{notes}"], "notes.png: not a model file"),
        (["--model", "{model_pt}"], "model.pt: not a PyTorch checkpoint"),
        (["--model", "{model_onnx}"], "model.onnx: not a readable ONNX model"),
        (["--classes", "5"], "--classes 5: anime-yolov8n-seg.onnx has no such class; its classes are 0 (character)"),
        (["--refine", "sam", "--sam-checkpoint", "{notes}"], "notes.png: not a SAM checkpoint"),
        (["--refine", "foo"], "--refine foo: choose one of none, "),
        (["--alpha", "foo"], "--alpha foo: choose one of binary, matte (see animeseg predict -h)"),
        (["--imgsz", "3"], "--imgsz:"),
        (["--tracker", "foo", "--track"], "--tracker foo: choose bytetrack or botsort"),
        (["--save", "bogus"], "--save: unknown output kind 'bogus'"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(args, expected, notes, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANIMESEG_WEIGHTS", str(tmp_path / "weights"))  # the packaged model is the default
    (tmp_path / "model.pt").write_text("not a checkpoint")
    (tmp_path / "model.onnx").write_bytes(b"\x00\x01 not onnx")
    files = {"notes": notes, "model_pt": tmp_path / "model.pt", "model_onnx": tmp_path / "model.onnx"}
    args = [a.format(**files) for a in args]
    code, err = run_cli(capsys, "predict", EXAMPLE, "--out", tmp_path / "out", *args)
    assert code == 2, err
    line = _one_line(err)
    assert line.startswith("error: ") and expected in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_a_device_that_is_not_there_is_named_as_given(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code, err = run_cli(capsys, "predict", EXAMPLE, "--device", "cuda", "--out", tmp_path / "out")
    assert code == 2
    line = _one_line(err)
    assert "--device cuda: this machine has no CUDA GPU" in line and "device=0" not in line


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="Gradio is not installed (.[web])")
def test_serve_with_a_bad_model_is_one_line(notes, capsys):
    code, err = run_cli(capsys, "serve", "--model", notes)
    assert code == 2 and "notes.png: not a model file" in _one_line(err)


def test_a_file_that_is_no_image_is_not_offered_a_resume(notes, tmp_path, capsys):
    code, out, err = run_cli_output(capsys, "predict", notes, "--out", tmp_path / "out")
    assert code == 1
    assert "notes.png: not an image" in err
    assert "1 input(s) failed (one line each above): they are not usable images" in err  # the summary is read
    assert "--resume" not in err + out  # running it again cannot mend the file


def test_usage_errors_are_one_line(tmp_path, capsys):
    for args, expected in [
        (["predict"], "Missing argument"),
        (["predict", EXAMPLE, "--no-such-option"], "No such option: --no-such-option"),
        (["eval"], "Missing option '--data'"),
        (["nosuch"], "No such command 'nosuch'"),
    ]:
        code, err = run_cli(capsys, *args)
        assert code == 2 and expected in _one_line(err), err


# ------------------------------------------------------------------------------------------------ help
COMMANDS = [
    ["predict"],
    ["eval"],
    ["serve"],
    ["train"],
    ["export", "onnx"],
    ["export", "openvino"],
    ["weights", "list"],
    ["weights", "download"],
    ["weights", "import"],
    ["weights", "verify"],
    ["data", "build"],
    ["data", "check"],
    ["data", "demo"],
    ["cut"],
    [],
]


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # help panels unwrapped, so a choice list is not folded


def _help(capsys, *command: str) -> str:
    from animeseg.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as ex:
        main([*command, "--help"])
    assert ex.value.code in (0, None)
    text = capsys.readouterr().out
    return " ".join(text.replace("│", " ").split())  # the panels' text, whatever the terminal width


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "animeseg")
def test_help_shows_no_type_after_a_flag_and_no_python_types(command, capsys):
    text = _help(capsys, *command)
    for wrong in ("<bool>", "<list[", "{", "}"):
        assert wrong not in text, (wrong, text)
    if any(m in text for m in ("--model ",)):
        assert "--model -m" in text, "a command that takes a model takes -m too"


def test_help_of_each_command_is_its_own(capsys):
    predict = _help(capsys, "predict")
    assert 'pip install "animeseg[ray]"' in predict  # not eaten as rich markup
    assert "MODEL=GT" not in predict and "eval" not in predict.split("--classes", 1)[1].split("--out", 1)[0]
    assert "[binary|matte]" in predict and "[bytetrack|botsort|FILE.yaml]" in predict
    assert "(0.5 for the packaged model)" in predict  # the default model's own conf
    serve = _help(capsys, "serve")
    assert "AP" not in serve and "eval" not in serve
    assert "page" in serve.split("--sam-checkpoint", 1)[1].split("--sam-type", 1)[0]
    assert "MODEL=GT" in _help(capsys, "eval")
    export = _help(capsys, "export", "onnx")
    assert "not exported by export onnx" not in export and "Only ViT SAMs" in export
    top = _help(capsys)
    assert "Serve a local web page: drop images or a video, get every character cut out. data" in top
    # the default refiner is the learned one: what predict, the overview and every --refine say
    assert "predict Segment anime characters: YOLOv8-seg instances at full resolution, masks redrawn by the" in top
    assert "predict (masks redrawn by the packaged learned refiner, or by GrabCut or SAM)" in top
    for command in COMMANDS:
        text = _help(capsys, *command)
        if "--refine " in text:
            assert "learned: a small packaged network redraws each mask" in text, command
            assert "(learned for the packaged model)" in text, command


def test_refine_choices_are_read_when_the_command_line_is_built(capsys):
    from animeseg.refine import REFINERS, register

    @register
    class Late:
        name = "late-test"

        def candidates(self, image, boxes, masks):  # pragma: no cover - never run
            raise AssertionError

    try:
        assert "late-test" in _help(capsys, "predict")
    finally:
        REFINERS.pop("late-test")
    assert "late-test" not in _help(capsys, "predict")
