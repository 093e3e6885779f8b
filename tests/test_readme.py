"""The README's Python examples run as written on a fresh clone: every ```python block, in order, in a fresh
interpreter whose working directory is the checkout and whose weights folder is empty (so the packaged model is
the default, as it is on a fresh clone)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(markdown: str) -> list[str]:
    """The code of every ```python block of ``markdown``, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def test_readme_python_examples_run(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "the README shows the library from Python"
    assert "animeseg.segment(" in blocks[0]  # the one call a notebook user wants comes first
    # each block on its own (a reader may copy any one of them), in one interpreter to keep the suite fast
    script = ""
    for i, block in enumerate(blocks):
        script += f"def block_{i}():\n" + "".join(f"    {line}\n" for line in block.splitlines()) + "\n"
    script += "".join(f"block_{i}()\n" for i in range(len(blocks)))
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
