"""Test set-up shared by every test module.

* animeseg's state (and Ultralytics' config folder) goes to a throw-away folder, never the user's home, removed
  when the session ends.
* Every test runs with the network cut off (``network_guard.py``): a DNS lookup or connection attempt raises and
  is recorded, so a test can also assert that a command made none (``network_attempts`` fixture); a child process
  a test starts can put itself under the same guard (``network_guard.block_this_process``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from network_guard import block_network

_HOME = Path(tempfile.mkdtemp(prefix="animeseg-test-home-"))
atexit.register(shutil.rmtree, _HOME, True)  # one per session; left behind, they filled /tmp by gigabytes
os.environ["ANIMESEG_HOME"] = str(_HOME)
os.environ["YOLO_CONFIG_DIR"] = str(_HOME / "ultralytics")
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RENPY = SHARED / "data" / "renpy-sprites"
SHARED_ONNX = SHARED / "weights" / "yolov8n-seg-coco-int8.onnx"

#: A datasets.yaml over a small mix of the demo's composites (`animeseg data demo`); `.format(count=N)`.
MINI_DATASETS = """\
out: built
seed: 0
val_fraction: 0.25
classes: [character]
imgsz: 128
sources:
  - name: composites
    type: composite
    foregrounds: anime-segmentation/fg
    backgrounds: anime-segmentation/bg
    count: {count}
    per_image: [1, 2]
"""

_ATTEMPTS: list[str] = []


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    block_network(monkeypatch.setattr, _ATTEMPTS.append)


@pytest.fixture
def network_attempts():
    """Call it to get the network attempts made since the test started (``[]`` means none)."""
    start = len(_ATTEMPTS)
    return lambda: list(_ATTEMPTS[start:])


@pytest.fixture
def renpy() -> Path:
    """``../shared/data/renpy-sprites`` (real anime sprites with exact alpha); skips where it is absent."""
    if not (RENPY / "fg").is_dir():
        pytest.skip(f"shared sprites not found at {RENPY} (only present in the team's workspace)")
    return RENPY


@pytest.fixture
def shared_onnx() -> Path:
    """The real YOLOv8n-seg COCO int8 ONNX model from ``../shared``; skips where it is absent."""
    if not SHARED_ONNX.is_file():
        pytest.skip(f"shared ONNX model not found at {SHARED_ONNX} (only present in the team's workspace)")
    return SHARED_ONNX


def run_cli_output(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """Run ``animeseg ARGS`` in this process; returns (exit code, stdout, stderr)."""
    from animeseg.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    """Run ``animeseg ARGS`` in this process; returns (exit code, stderr). ``from conftest import run_cli``."""
    code, _out, err = run_cli_output(capsys, *args)
    return code, err
