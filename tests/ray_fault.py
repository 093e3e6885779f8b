"""Run by tests/test_engine_ray.py in a child process: ``animeseg predict``'s runner on a :class:`RayEngine`
whose first worker to see a third input kills itself (``os._exit``), once, mid-run.

    python tests/ray_fault.py SRC OUT MODEL IMGSZ WORKERS

It also records any non-local connection this process attempts to ``OUT.network`` (Ray must stay local).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

_real_connect = socket.socket.connect


def _guard(self, address):  # loopback and AF_UNIX only, like tests/conftest.py's guard plus Ray's local TCP
    local = self.family == socket.AF_UNIX or ipaddress.ip_address(address[0]).is_loopback
    if not local:
        with open(sys.argv[2] + ".network", "a") as f:
            f.write(f"{address!r}\n")
        raise OSError(f"network access attempted: {address!r}")
    return _real_connect(self, address)


socket.socket.connect = _guard


class KillOnce:
    """A segmenter that kills the worker process it runs in when two inputs are complete (once per run)."""

    def __init__(self, inner, out: Path):
        self.inner, self.out = inner, out

    @property
    def names(self):
        return self.inner.names

    def __call__(self, image):
        records = self.out / ".animeseg" / "records"
        done = sum(1 for _ in records.rglob("*.json")) if records.is_dir() else 0
        if done >= 2:
            try:
                os.close(os.open(self.out / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return self.inner(image)


def main() -> int:
    from animeseg.engine_ray import RayEngine
    from animeseg.media import expand_sources
    from animeseg.predict import LazySegmenter, SegmenterSpec
    from animeseg.runner import run
    from animeseg.writers import parse_save

    src, out, model, imgsz, workers = sys.argv[1:6]
    out = Path(out)
    spec = SegmenterSpec.of(model, imgsz=int(imgsz), classes=[0])
    items = expand_sources([src], exclude=out)
    summary = run(
        items, KillOnce(LazySegmenter(spec), out), out, parse_save("all"), engine=RayEngine(workers=int(workers))
    )
    assert (out / "killed").is_file(), "no worker was killed"
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
