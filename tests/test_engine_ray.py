"""`animeseg predict --engine ray`: the same outputs as the local runner, on real anime images, with workers
killed and whole runs killed.

Ray's processes talk over local TCP, which this suite's network guard (tests/conftest.py) refuses inside the test
process, so every Ray run happens in a child process (the CLI, or tests/ray_fault.py, which records any
non-loopback connection it attempts); the tests assert on the files those runs leave.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli as _cli
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not RAY, reason='Ray is not installed (pip install -e ".[ray]")')


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
    }


def _ray(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run a Ray job; skip when Ray itself cannot start here (its raylet gives up after about 30 s when a
    heavily loaded machine starts its agents slower than that), which says nothing about animeseg."""
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if "timed out during startup" in proc.stderr:
        pytest.skip("Ray's local instance did not start in time on this (overloaded) machine")
    return proc


def _tree(root: Path) -> dict[str, bytes]:
    """Every output file under ``root`` but predictions.json and the run's bookkeeping."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".animeseg" not in p.relative_to(root).parts and p.name != "predictions.json"
    }


def _same_predictions(a: Path, b: Path) -> None:
    """Same images (order, size, status, errors), same RLE masks, boxes and classes, scores to 1e-5."""
    da, db = (json.loads((p / "predictions.json").read_text()) for p in (a, b))
    assert da["images"] == db["images"] and da["categories"] == db["categories"]
    assert len(da["annotations"]) == len(db["annotations"]) > 0
    for x, y in zip(da["annotations"], db["annotations"], strict=True):
        assert x["score"] == pytest.approx(y["score"], abs=1e-5)
        assert {k: v for k, v in x.items() if k != "score"} == {k: v for k, v in y.items() if k != "score"}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Six real anime composites (ren'py sprites on backgrounds) in subfolders, and one corrupt file."""
    from conftest import RENPY

    if not (RENPY / "fg").is_dir():
        pytest.skip(f"shared sprites not found at {RENPY} (only present in the team's workspace)")
    sys.path.insert(0, str(ROOT))
    from bench.composites import make_composites

    src = tmp_path_factory.mktemp("scenes")
    for i, c in enumerate(make_composites(RENPY, 6, seed=12, size=(320, 240), max_sprites=2)):
        folder = src / ("b" if i % 2 else "a")
        folder.mkdir(exist_ok=True)
        Image.fromarray(c.image).save(folder / f"{c.name} scene.png")
    (src / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return src


@pytest.fixture(scope="module")
def model_args() -> list[str]:
    from conftest import SHARED_ONNX

    if not SHARED_ONNX.is_file():
        pytest.skip(f"shared ONNX model not found at {SHARED_ONNX} (only present in the team's workspace)")
    return ["--model", str(SHARED_ONNX), "--imgsz", "320", "--classes", "0", "--save", "all"]


@pytest.fixture(scope="module")
def local_out(scenes, model_args, tmp_path_factory) -> Path:
    """The local runner's outputs: what every Ray run must reproduce."""
    out = tmp_path_factory.mktemp("local")
    proc = subprocess.run(
        [sys.executable, "-m", "animeseg", "predict", str(scenes), "--out", str(out), *model_args],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr  # the corrupt file fails, the rest succeed
    return out


def test_without_ray_one_line_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    (tmp_path / "a.png").write_bytes(b"")
    code, err = _cli(capsys, "predict", tmp_path, "--engine", "ray", "--out", tmp_path / "out")
    assert code == 2
    assert err.strip() == 'error: Ray is not installed: pip install "animeseg[ray]"'


def test_ray_options_need_engine_ray(tmp_path, capsys):
    code, err = _cli(capsys, "predict", tmp_path, "--workers", "2", "--out", tmp_path / "out")
    assert code == 2 and "--workers need --engine ray" in err


@needs_ray
def test_ray_two_workers_match_the_local_runner(scenes, model_args, local_out, tmp_path):
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "animeseg", "predict", str(scenes), "--out", str(out), *model_args]
    proc = _ray([*cmd, "--engine", "ray", "--workers", "2"])
    assert proc.returncode == 1, proc.stderr
    assert "broken.png" in proc.stderr  # the failed input's one line, as locally
    _same_predictions(out, local_out)
    doc = json.loads((out / "predictions.json").read_text())
    assert [i["status"] for i in doc["images"]].count("error") == 1
    assert _tree(out) == _tree(local_out)


@needs_ray
def test_a_killed_worker_loses_and_duplicates_nothing(scenes, model_args, local_out, tmp_path):
    out = tmp_path / "fault"
    model = model_args[model_args.index("--model") + 1]
    proc = _ray([sys.executable, str(ROOT / "tests" / "ray_fault.py"), str(scenes), str(out), model, "320", "2"])
    assert proc.returncode == 1, proc.stderr  # only the corrupt input failed
    assert (out / "killed").is_file()  # a worker really died mid-run
    assert not Path(str(out) + ".network").exists()
    (out / "killed").unlink()
    _same_predictions(out, local_out)
    assert _tree(out) == _tree(local_out)


@needs_ray
def test_a_killed_ray_run_resumes_to_the_same_outputs(scenes, model_args, local_out, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "animeseg", "predict", str(scenes), "--out", str(out), *model_args]
    cmd += ["--engine", "ray", "--workers", "2"]
    log = tmp_path / "killed.log"
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        records = out / ".animeseg" / "records"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if records.is_dir() and sum(1 for _ in records.rglob("*.json")) >= 2:
                break
            time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait()
    if "timed out during startup" in log.read_text():
        pytest.skip("Ray's local instance did not start in time on this (overloaded) machine")
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "predictions.json").exists()

    resumed = _ray([*cmd, "--resume"])
    assert resumed.returncode == 1, resumed.stderr
    assert not [p for p in out.rglob(".*tmp*") if p.is_file()]
    _same_predictions(out, local_out)
    assert _tree(out) == _tree(local_out)
