"""The library is a silent, side-effect-free surface under the CLI (docs/architecture.md).

* importing it sets no environment variable and creates no file;
* Segmenter, the predict runner, the evaluation and the dataset build print nothing when called from Python
  (each checked in a fresh process, so a first import of Ultralytics or OpenCV is part of what is checked);
* only animeseg/cli/ draws (imports the console or rich);
* a device that is not there is one line and exit code 2, for eval as for predict;
* a refiner registered by one class is offered by every command.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "animeseg"


def _python(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose home and caches are empty folders under ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("ANIMESEG_HOME", "YOLO_CONFIG_DIR", "XDG_CACHE_HOME")}
    base.update({"HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=home, env=base, capture_output=True, text=True, timeout=600
    )


def test_import_has_no_side_effects(tmp_path):
    code = """
        import os
        before = dict(os.environ)
        import animeseg, animeseg.predict, animeseg.evaluate, animeseg.train, animeseg.data.build
        import animeseg.runner, animeseg.refine, animeseg.cli
        added = sorted(set(os.environ) - set(before))
        changed = sorted(k for k in before if os.environ.get(k) != before[k])
        print(added, changed)
    """
    res = _python(code, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[] []" and res.stderr == ""
    assert list((tmp_path / "home").iterdir()) == []  # no cache, config or font folder


def _silent(code: str, tmp_path: Path, shared_onnx: Path) -> dict:
    """Run ``code`` (which writes its findings to ``result.json``) and check it printed nothing at all."""
    res = _python(code, tmp_path, {"MODEL": str(shared_onnx), "WORK": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout == "" and res.stderr == "", (res.stdout[-2000:], res.stderr[-2000:])
    return json.loads((tmp_path / "result.json").read_text())


@pytest.fixture
def scenes(tmp_path, renpy) -> Path:
    """Two anime scenes (a real sprite on a real background) and one broken file."""
    from PIL import Image

    folder = tmp_path / "scenes"
    folder.mkdir()
    sprite = Image.open(renpy / "fg" / "eileen happy.png").convert("RGBA")
    for i, (bg, size) in enumerate(
        zip(sorted((renpy / "bg").glob("*.jpg"))[:2], [(480, 320), (320, 400)], strict=True)
    ):
        scene = Image.open(bg).convert("RGB").resize(size)
        scale = 0.9 * min(size[0] / sprite.width, size[1] / sprite.height)
        fg = sprite.resize((int(sprite.width * scale), int(sprite.height * scale)))
        scene.paste(fg, ((size[0] - fg.width) // 2, size[1] - fg.height), fg)
        scene.save(folder / f"scene{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_segmenter_is_silent(tmp_path, shared_onnx, scenes):
    found = _silent(
        f"""
        import json, os
        from animeseg.io import read_image
        from animeseg.predict import Segmenter
        from animeseg.refine import build_refiner
        seg = Segmenter(os.environ["MODEL"], refine=build_refiner("grabcut"), imgsz=320, classes=[0])
        inst = seg(read_image({str(scenes / "scene0.png")!r}))
        json.dump({{"instances": len(inst), "refined": sum(r["refined"] for r in inst.refine)}},
                  open(os.environ["WORK"] + "/result.json", "w"))
        """,
        tmp_path,
        shared_onnx,
    )
    assert found["instances"] >= 1  # the COCO person model finds the character


def test_predict_runner_is_silent(tmp_path, shared_onnx, scenes):
    found = _silent(
        f"""
        import json, os
        from animeseg.media import expand_sources
        from animeseg.predict import Segmenter
        from animeseg.runner import run
        steps = []
        summary = run(expand_sources([{str(scenes)!r}]), Segmenter(os.environ["MODEL"], imgsz=320, classes=[0]),
                      os.environ["WORK"] + "/out", ["json", "masks", "overlays"], on_progress=steps.append)
        json.dump({{"failed": summary.failed, "ok": summary.succeeded, "steps": len(steps),
                   "errors": [r.error for r in summary.results if r.error]}},
                  open(os.environ["WORK"] + "/result.json", "w"))
        """,
        tmp_path,
        shared_onnx,
    )
    # the broken file is reported in the result (and through logging), not on the terminal
    assert found["ok"] == 2 and found["failed"] == 1 and found["steps"] >= 3
    assert len(found["errors"]) == 1 and "broken" not in found["errors"][0]  # the reason, one line
    assert (tmp_path / "out" / "predictions.json").is_file()


def test_dataset_build_is_silent(tmp_path, shared_onnx):
    found = _silent(
        """
        import json, os
        from pathlib import Path
        from animeseg.data.build import build_dataset
        from animeseg.data.demo import write_demo
        work = Path(os.environ["WORK"])
        steps = []
        manifest = build_dataset(write_demo(work / "demo"), on_progress=steps.append)
        json.dump({"train": manifest["images"]["train"], "tasks": sorted({s.task for s in steps})},
                  open(work / "result.json", "w"))
        """,
        tmp_path,
        shared_onnx,
    )
    assert found["train"] > 0 and len(found["tasks"]) > 2  # every source reported its progress


def test_evaluation_is_silent(tmp_path, shared_onnx):
    from animeseg.data.build import build_dataset
    from animeseg.data.demo import write_demo

    data = Path(build_dataset(write_demo(tmp_path / "demo"))["out"]) / "data.yaml"
    found = _silent(
        f"""
        import json, os
        from pathlib import Path
        from animeseg.evaluate import evaluate
        from animeseg.refine import build_refiner
        work = Path(os.environ["WORK"])
        steps = []
        metrics = evaluate(os.environ["MODEL"], {str(data)!r}, classes={{"person": "character"}}, imgsz=320,
                           refine=build_refiner("grabcut"), out=work / "eval", on_progress=steps.append)
        json.dump({{"evaluated": metrics["images"]["evaluated"], "steps": len(steps),
                   "variants": sorted(metrics["results"])}}, open(work / "result.json", "w"))
        """,
        tmp_path,
        shared_onnx,
    )
    assert found["evaluated"] > 0 and found["steps"] == found["evaluated"]
    assert found["variants"] == ["raw", "refined"]
    assert (tmp_path / "eval" / "metrics.json").is_file()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_cli_draws():
    library = [  # everything but the CLI and `python -m animeseg`, which starts it
        p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"
    ]
    assert len(library) > 30
    offenders = {
        str(p.relative_to(REPO)): sorted(n for n in _imports(p) if n.startswith(("animeseg.cli", "rich", "typer")))
        for p in library
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    for p in library:  # and no print() either
        tree = ast.parse(p.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "print"]
        assert not calls, p


def test_eval_on_a_missing_gpu_is_one_line(tmp_path, capsys, shared_onnx):
    import torch

    from animeseg.cli import main
    from animeseg.sam import TINY, build_sam, save_sam

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device 0 is valid here")
    sam = save_sam(build_sam(TINY), tmp_path / "sam.pth")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    for command in ("eval", "predict"):
        args = ["--model", str(shared_onnx), "--refine", "sam", "--sam-checkpoint", str(sam), "--device", "0"]
        args = [command, *args, *(["--data", str(gt)] if command == "eval" else [str(gt)])]
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--out", str(tmp_path / command)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err
        assert len(err.strip().splitlines()) == 1 and "--device 0" in err and "Traceback" not in err, err
        assert not (tmp_path / command).exists()


def test_a_registered_refiner_is_offered_by_every_command(tmp_path, shared_onnx):
    """One class, registered, is a --refine choice of predict and eval and runs through predict."""
    images = tmp_path / "in"
    images.mkdir()
    from animeseg.io import write_image

    write_image(images / "a.png", np.full((64, 80, 3), 200, np.uint8))
    code = f"""
        import numpy as np
        from animeseg.refine import register
        from animeseg.refine.base import Candidates

        @register
        class Grow:
            name = "grow"

            def candidates(self, image, boxes, masks):
                return Candidates(masks[:, None].copy(), np.ones((len(masks), 1), np.float32))

        from animeseg.cli import main
        for command in ("predict", "eval"):
            try:
                main([command, "--help"])
            except SystemExit:
                pass
        try:
            main(["predict", {str(images)!r}, "--model", {str(shared_onnx)!r}, "--imgsz", "320", "--refine", "grow",
                  "--out", {str(tmp_path / "out")!r}, "--save", "json"])
        except SystemExit as e:
            assert e.code in (0, None), e.code
    """
    res = _python(code, tmp_path, {"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("grow") >= 2, res.stdout  # listed by predict --help and eval --help
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())["images"][0]["status"] == "ok"
