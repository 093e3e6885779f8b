"""The README's Python examples run as written on a fresh clone and do what the README says they do: every
```python block, in order, in a fresh interpreter whose working directory is the checkout, whose weights folder is
empty (so the packaged model is the default, as it is on a fresh clone) and whose network is cut off like the
rest of the suite's (tests/network_guard.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from animeseg.io import read_image
from animeseg.settings import model_defaults
from animeseg.weights import example_image, packaged_model

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

#: Run in the child before the blocks: the network guard, and what each block leaves behind, summarised as JSON.
PRELUDE = """\
import contextlib, io, json, sys
sys.path.insert(0, {tests!r})
from network_guard import block_this_process
block_this_process({log!r})
sys.path.pop(0)


def _summary(value):
    import numpy as np
    from animeseg.instances import Instances

    if isinstance(value, Instances):
        return {{
            "n": len(value), "scores": value.scores.tolist(), "masks": list(value.masks.shape),
            "methods": [r.get("method") for r in value.refine],
            "track_ids": None if value.track_ids is None else value.track_ids.tolist(),
        }}
    if isinstance(value, np.ndarray):
        rgba = value.ndim == 3 and value.shape[2] == 4
        alpha = np.unique(value[..., 3]).tolist() if rgba else None
        return {{"shape": list(value.shape), "dtype": str(value.dtype), "alpha": alpha}}
    if isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
        return [_summary(v) for v in value]
    return None


def _run(block):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        names = block()
    found = {{k: s for k, v in names.items() if (s := _summary(v)) is not None}}
    return {{"stdout": out.getvalue(), "values": found}}


"""


def python_blocks(markdown: str) -> list[str]:
    """The code of every ```python block of ``markdown``, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def run_blocks(blocks: list[str], tmp_path: Path) -> tuple[list[dict], list[str]]:
    """Each block as a function of its own (a reader may copy any one of them), all in one interpreter to keep the
    suite fast; returns what each printed and left behind, and the network attempts made."""
    log = tmp_path / "network.log"
    script = PRELUDE.format(tests=str(TESTS), log=str(log))
    for i, block in enumerate(blocks):
        body = "".join(f"    {line}\n" for line in block.splitlines())
        script += f"def block_{i}():\n{body}    return locals()\n\n\n"
    script += f"print(json.dumps([{', '.join(f'_run(block_{i})' for i in range(len(blocks)))}]))\n"
    env = {k: v for k, v in os.environ.items() if k not in ("ANIMESEG_HOME", "YOLO_CONFIG_DIR")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ANIMESEG_WEIGHTS": str(tmp_path / "weights"),  # no trained weights: the packaged model
            "HOME": str(tmp_path),
            "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),
            "OMP_NUM_THREADS": "2",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    attempts = log.read_text().splitlines() if log.exists() else []
    return json.loads(proc.stdout.strip().splitlines()[-1]), attempts


def test_readme_python_examples_run_and_do_what_it_says(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) == 3, "the README shows segment/cut, a Segmenter with a refiner, and tracking"
    assert "animeseg.segment(" in blocks[0]  # the one call a notebook user wants comes first
    ran, attempts = run_blocks(blocks, tmp_path)
    assert attempts == []
    height, width = read_image(example_image()).shape[:2]
    defaults = model_defaults(packaged_model())

    # 1. animeseg.segment and animeseg.cut: the packaged model with its own defaults (conf, learned refiner)
    values, printed = ran[0]["values"], ran[0]["stdout"]
    found = values["instances"]
    assert found["n"] >= 2 and found["masks"] == [found["n"], height, width]
    assert min(found["scores"]) >= defaults.detect.conf and set(found["methods"]) == {defaults.refine}
    assert printed.split()[0] == str(found["n"])  # print(len(instances), instances.scores)
    rgba = values["rgba"]
    assert rgba["shape"] == [height, width, 4] and rgba["dtype"] == "uint8"
    assert rgba["alpha"][0] == 0 and rgba["alpha"][-1] == 255  # transparent background, opaque characters

    # 2. a Segmenter with a named refiner and an explicit conf over the model's defaults
    values, printed = ran[1]["values"], ran[1]["stdout"]
    found = values["instances"]
    assert found["n"] >= 1 and min(found["scores"]) >= 0.4 and set(found["methods"]) == {"grabcut"}
    assert len(printed.strip().splitlines()) == found["n"]  # one line per instance: box, area, refined, reason

    # 3. tracking: the last frame's instances carry one track id each, and one soft cut-out each
    values = ran[2]["values"]
    found = values["instances"]
    assert found["n"] >= 1 and found["track_ids"] is not None
    assert len(set(found["track_ids"])) == found["n"]
    cutouts = values["rgba"]
    assert len(cutouts) == found["n"] and all(c["shape"] == [height, width, 4] for c in cutouts)
    assert all(np.setdiff1d(c["alpha"], [0, 255]).size for c in cutouts)  # soft edges: alpha "matte"
