"""What ``animeseg train --data`` points at, turned into the ``data.yaml`` Ultralytics trains on.

A ``data.yaml`` (or its folder) is used as it is; a ``datasets.yaml`` build config is built first, or its built
copy reused when that copy's manifest carries the same ``config_hash``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from animeseg.errors import AnimesegError, ConfigError, InputError
from animeseg.progress import ProgressCallback, logger
from animeseg.weights import sha256_file


@dataclass
class ResolvedData:
    """The YOLO ``data.yaml`` to train on and, for a built dataset, its manifest."""

    data_yaml: Path
    manifest: dict[str, Any] | None
    manifest_path: Path | None
    built_now: bool = False

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the training data in a weights sidecar."""
        return {
            "data_yaml": str(self.data_yaml),
            "data_yaml_sha256": sha256_file(self.data_yaml) if self.data_yaml.is_file() else None,
            "manifest": str(self.manifest_path) if self.manifest_path else None,
            "manifest_sha256": sha256_file(self.manifest_path) if self.manifest_path else None,
            "config_hash": (self.manifest or {}).get("config_hash"),
        }


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(path, "", f"not valid YAML ({str(e).splitlines()[0]})") from None


def is_yolo_data_yaml(doc: Any) -> bool:
    """True for an Ultralytics dataset file (``train``/``val`` + ``names``), as opposed to a build config."""
    return isinstance(doc, dict) and "train" in doc and ("names" in doc or "nc" in doc)


def _manifest_next_to(data_yaml: Path) -> tuple[dict[str, Any] | None, Path | None]:
    path = data_yaml.parent / "manifest.json"
    if not path.is_file():
        return None, None
    try:
        return json.loads(path.read_text(encoding="utf-8")), path
    except (OSError, ValueError):
        logger.warning(f"{path}: unreadable manifest, the weights sidecar will not carry its hash")
        return None, None


def resolve_data(data: str | Path, workers: int = 1, on_progress: ProgressCallback | None = None) -> ResolvedData:
    """Turn ``--data`` into a ``data.yaml``: a dataset folder, a ``data.yaml``, or a ``datasets.yaml`` to build.

    A build config is built with :func:`animeseg.data.build.build_dataset` unless its output folder already holds
    a ``manifest.json`` with the config's current hash (then the built copy is reused as it is). ``on_progress``
    receives the build's progress.
    """
    path = Path(data).expanduser().resolve()
    if path.is_dir():
        for candidate in ("data.yaml", "datasets.yaml"):
            if (path / candidate).is_file():
                path = path / candidate
                break
        else:
            raise InputError(path, "folder holds neither data.yaml (a built dataset) nor datasets.yaml (a config)")
    if not path.is_file():
        raise InputError(path, "no such dataset file")
    doc = _load_yaml(path)
    if is_yolo_data_yaml(doc):
        manifest, manifest_path = _manifest_next_to(path)
        return ResolvedData(path, manifest, manifest_path)
    return _build_or_reuse(path, workers, on_progress)


def _build_or_reuse(config: Path, workers: int, on_progress: ProgressCallback | None) -> ResolvedData:
    try:
        from animeseg.data.build import build_dataset
        from animeseg.data.config import config_hash, load_config
    except ImportError as e:
        raise AnimesegError(f"{config}: cannot build datasets in this installation ({e})") from None
    cfg = load_config(config)
    out = Path(getattr(cfg, "out", None) or config.parent / "dataset").resolve()
    manifest_path = out / "manifest.json"
    wanted = config_hash(config)
    if manifest_path.is_file() and (out / "data.yaml").is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = {}
        if manifest.get("config_hash") == wanted:
            logger.info(f"Reusing the built dataset {out} (config hash {wanted[:12]} unchanged)")
            return ResolvedData(out / "data.yaml", manifest, manifest_path)
        logger.info(f"{out}: built from another version of {config.name}; rebuilding")
    manifest = build_dataset(config, workers=workers, overwrite=True, on_progress=on_progress)
    out = Path(manifest.get("out", out)).resolve()
    return ResolvedData(out / "data.yaml", manifest, out / "manifest.json", built_now=True)
