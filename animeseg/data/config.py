"""``datasets.yaml``: its schema, validation and hash.

Validation happens before any work: a missing key, a value of the wrong type, a folder that does not exist or an
unknown source type raises :class:`~animeseg.errors.ConfigError` naming the file, the key (``sources[1].count``)
and the problem. Unknown keys are errors too (a typo would otherwise silently fall back to a default).
Relative paths are relative to the folder of the config file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from animeseg.data import backdrops, effects, renderings
from animeseg.errors import ConfigError

REQUIRED = object()

SOURCE_TYPES = ("composite", "mask_pairs", "coco", "labelme", "yolo")
CROWD_POLICIES = ("skip_image", "drop")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Field:
    """One key of the schema.

    ``kind`` is one of: int, float, bool, str, path (any path), folder / file (must exist), range (two numbers,
    low <= high), int_range (two whole numbers, low <= high), size (width, height), floats3, str_list,
    mapping (str -> class name), choice, section (nested ``fields``), list.
    """

    kind: str
    default: Any = REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    fields: dict[str, Field] | None = None
    nullable: bool = False


AUGMENT = {
    "rotation": Field("float", 10.0, lo=0, hi=180),  # degrees, uniform in [-rotation, rotation]
    "scale": Field("range", [0.5, 0.95], lo=0.01, hi=3.0),  # character height / canvas height
    "shift": Field("float", 0.25, lo=0, hi=1),  # share of a character's size that may leave the frame
    "flip": Field("float", 0.5, lo=0, hi=1),  # probability of a horizontal flip
    "hsv": Field("floats3", [0.015, 0.5, 0.3], lo=0, hi=1),  # hue, saturation, value gain amplitudes
    "noise": Field("float", 4.0, lo=0, hi=100),  # max standard deviation of gaussian noise (grey levels)
    "blur": Field("float", 0.8, lo=0, hi=10),  # max gaussian blur sigma (pixels)
    "jpeg": Field("range", [100, 100], lo=5, hi=100),  # JPEG quality of a re-encode, uniform; 100: no re-encode
}

COMMON = {
    "name": Field("str"),
    "type": Field("choice", choices=SOURCE_TYPES),
    "weight": Field("float", 1.0, lo=0.001, hi=100),
    "max_images": Field("int", None, lo=1, nullable=True),
    "classes": Field("mapping", {}),
}

SOURCE_FIELDS: dict[str, dict[str, Field]] = {
    "composite": {
        "foregrounds": Field("folder"),
        "backgrounds": Field("folder"),
        "count": Field("int", lo=1),
        "per_image": Field("int_range", [1, 3], lo=0, hi=50),  # 0: a background alone
        "canvas": Field("size", None, lo=16, hi=8192, nullable=True),  # [width, height]; default imgsz square
        "class": Field("str", None, nullable=True),
        "min_visible": Field("float", 0.3, lo=0, hi=1),
        "min_area": Field("int", 64, lo=0),
        "augment": Field("section", {}, fields=AUGMENT),
        # unlabelled patches of other backgrounds pasted under the characters, per image: hard negatives
        "distractors": Field("int_range", [0, 0], lo=0, hi=20),
        "distractor_scale": Field("range", [0.3, 0.9], lo=0.01, hi=3.0),  # patch height / canvas height
        # looks of real art (animeseg.data.looks), each a share of composites, all off by default
        "closeup": Field("float", 0.0, lo=0, hi=1),  # one or two characters cut by the frame
        "closeup_scale": Field("range", [1.3, 4.0], lo=1.0, hi=8.0),  # their height / canvas height
        "huddle": Field("float", 0.0, lo=0, hi=1),  # the characters pulled together, overlapping heavily
        "backdrop": Field("float", 0.0, lo=0, hi=1),  # a generated plain backdrop instead of a background file
        "backdrops": Field("str_list", list(backdrops.KINDS), choices=backdrops.KINDS),
        "render": Field("float", 0.0, lo=0, hi=1),  # the whole composite rendered as line art, screentone...
        "renders": Field("str_list", list(renderings.KINDS), choices=renderings.KINDS),
        "effects": Field("int_range", [0, 0], lo=0, hi=20),  # effects in front of the characters, per image
        "effect_kinds": Field("str_list", list(effects.KINDS), choices=effects.KINDS),
        "page": Field("float", 0.0, lo=0, hi=1),  # a comic page of panels, each its own composite
        "panels": Field("int_range", [2, 5], lo=1, hi=12),
    },
    "mask_pairs": {
        "images": Field("folder"),
        "masks": Field("folder"),
        "class": Field("str", None, nullable=True),
        "threshold": Field("int", 127, lo=0, hi=254),
        "min_area": Field("int", 64, lo=0),
        "keep_empty": Field("bool", False),
    },
    "coco": {
        "annotations": Field("file"),
        "images": Field("folder"),
        "crowd": Field("choice", "skip_image", choices=CROWD_POLICIES),
        "keep_empty": Field("bool", False),
        "min_area": Field("int", 0, lo=0),
    },
    "labelme": {
        "folder": Field("folder"),
        "crowd": Field("choice", "skip_image", choices=CROWD_POLICIES),
        "ignore_label": Field("str", "__ignore__"),
        "keep_empty": Field("bool", False),
        "min_area": Field("int", 0, lo=0),
    },
    "yolo": {
        "folder": Field("folder"),
        "keep_empty": Field("bool", True),
    },
}

TOP = {
    "out": Field("path", "dataset"),
    "seed": Field("int", 0, lo=0),
    "val_fraction": Field("float", 0.1, lo=0, hi=0.9),
    "classes": Field("str_list", ["character"]),
    "imgsz": Field("int", 640, lo=32, hi=8192),
    "sources": Field("list"),
}


@dataclass(frozen=True)
class SourceConfig:
    """One validated entry of ``sources``.

    ``options`` holds the type-specific keys with defaults filled in and paths resolved to absolute ``Path``s;
    ``classes`` maps source labels to class names (empty: labels equal to a class name map to themselves).
    """

    index: int
    name: str
    type: str
    weight: float
    max_images: int | None
    classes: dict[str, str]
    options: dict[str, Any]

    @property
    def key(self) -> str:
        """How errors name this source in the config file."""
        return f"sources[{self.index}]"


@dataclass(frozen=True)
class DatasetConfig:
    """A validated ``datasets.yaml``."""

    path: Path
    out: Path
    seed: int
    val_fraction: float
    classes: list[str]
    imgsz: int
    sources: list[SourceConfig]
    normalized: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def names(self) -> dict[int, str]:
        """Class id -> class name, as written to ``data.yaml``."""
        return dict(enumerate(self.classes))

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


# ------------------------------------------------------------------------------------------------- validation
class _Validator:
    def __init__(self, file: Path):
        self.file = file
        self.root = file.parent

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, key, problem)

    def section(self, raw: Any, fields: dict[str, Field], key: str) -> dict[str, Any]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise self.fail(key or "(top level)", f"expected a mapping of keys, got {_kind(raw)}")
        for k in raw:
            if k not in fields:
                hint = difflib.get_close_matches(str(k), list(fields), n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (known keys: {', '.join(fields)})"
                raise self.fail(_join(key, k), f"unknown key{extra}")
        out = {}
        for k, f in fields.items():
            sub = _join(key, k)
            if k not in raw:
                if f.default is REQUIRED:
                    raise self.fail(sub, "missing required key")
                value = f.default
                out[k] = self.value(value, f, sub) if f.kind == "section" else _copy(value)
                continue
            out[k] = self.value(raw[k], f, sub)
        return out

    def value(self, v: Any, f: Field, key: str) -> Any:
        if v is None:
            if f.nullable:
                return None
            raise self.fail(key, "has no value (null)")
        kind = f.kind
        if kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(key, f"expected a whole number, got {_show(v)}")
            return self.bounds(v, f, key)
        if kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(key, f"expected a number, got {_show(v)}")
            return self.bounds(float(v), f, key)
        if kind == "bool":
            if not isinstance(v, bool):
                raise self.fail(key, f"expected true or false, got {_show(v)}")
            return v
        if kind == "str":
            if not isinstance(v, str) or not v.strip():
                raise self.fail(key, f"expected a non-empty text, got {_show(v)}")
            return v
        if kind == "choice":
            if v not in f.choices:
                raise self.fail(key, f"unknown value {_show(v)} (expected one of: {', '.join(f.choices)})")
            return v
        if kind in ("path", "folder", "file"):
            if not isinstance(v, str) or not v.strip():
                raise self.fail(key, f"expected a path, got {_show(v)}")
            p = Path(v).expanduser()
            p = p if p.is_absolute() else self.root / p
            if kind == "folder" and not p.is_dir():
                raise self.fail(key, f"folder does not exist: {p}" if not p.exists() else f"not a folder: {p}")
            if kind == "file" and not p.is_file():
                raise self.fail(key, f"file does not exist: {p}" if not p.exists() else f"not a file: {p}")
            return p.resolve()
        if kind in ("range", "int_range", "size", "floats3"):
            n = 3 if kind == "floats3" else 2
            if not isinstance(v, (list, tuple)) or len(v) != n:
                raise self.fail(key, f"expected a list of {n} numbers, got {_show(v)}")
            want_int = kind in ("int_range", "size")
            for x in v:
                bad = isinstance(x, bool) or not isinstance(x, int if want_int else (int, float))
                if bad:
                    what = "whole numbers" if want_int else "numbers"
                    raise self.fail(key, f"expected a list of {n} {what}, got {_show(v)}")
            vals = [self.bounds(x if want_int else float(x), f, key) for x in v]
            if kind in ("range", "int_range") and vals[0] > vals[1]:
                raise self.fail(key, f"low end {vals[0]} is above high end {vals[1]}")
            return vals
        if kind == "str_list":
            if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
                raise self.fail(key, f"expected a non-empty list of names, got {_show(v)}")
            if len(set(v)) != len(v):
                raise self.fail(key, "names must be unique")
            unknown = [x for x in v if f.choices and x not in f.choices]
            if unknown:
                raise self.fail(key, f"unknown value {_show(unknown[0])} (expected some of: {', '.join(f.choices)})")
            return list(v)
        if kind == "mapping":
            if not isinstance(v, dict):
                raise self.fail(key, f"expected a mapping 'source label: class name', got {_show(v)}")
            out = {}
            for k, c in v.items():
                if not isinstance(c, str) or not c.strip():
                    raise self.fail(_join(key, k), f"expected a class name, got {_show(c)}")
                out[str(k)] = c
            return out
        if kind == "section":
            return self.section(v, f.fields or {}, key)
        if kind == "list":
            if not isinstance(v, list) or not v:
                raise self.fail(key, f"expected a non-empty list, got {_show(v)}")
            return v
        raise AssertionError(kind)

    def bounds(self, v: float, f: Field, key: str) -> Any:
        if f.lo is not None and v < f.lo:
            raise self.fail(key, f"{v} is below the minimum {_num(f.lo)}")
        if f.hi is not None and v > f.hi:
            raise self.fail(key, f"{v} is above the maximum {_num(f.hi)}")
        return v


def _join(key: str, sub: Any) -> str:
    return f"{key}.{sub}" if key else str(sub)


def _kind(v: Any) -> str:
    return {list: "a list", dict: "a mapping", str: "a text", type(None): "nothing"}.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _copy(v: Any) -> Any:
    return json.loads(json.dumps(v)) if isinstance(v, (list, dict)) else v


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise ConfigError(path, "", "no such file")
    if path.is_dir():
        raise ConfigError(path, "", "is a folder, not a config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, "", f"cannot read ({e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(path, "", f"not valid YAML{where}: {problem}") from None


def load_config(path: str | Path) -> DatasetConfig:
    """Read and validate a ``datasets.yaml``; raises :class:`ConfigError` on the first problem found."""
    path = Path(path).expanduser().resolve()
    raw = _read_yaml(path)
    v = _Validator(path)
    top = v.section(raw, TOP, "")
    classes: list[str] = top["classes"]
    sources: list[SourceConfig] = []
    names: set[str] = set()
    for i, entry in enumerate(top["sources"]):
        key = f"sources[{i}]"
        if not isinstance(entry, dict):
            raise v.fail(key, f"expected a mapping with at least 'name' and 'type', got {_kind(entry)}")
        stype = entry.get("type", REQUIRED)
        if stype is REQUIRED:
            raise v.fail(f"{key}.type", "missing required key")
        if stype not in SOURCE_TYPES:
            raise v.fail(
                f"{key}.type", f"unknown source type {_show(stype)} (expected one of: {', '.join(SOURCE_TYPES)})"
            )
        fields = {**COMMON, **SOURCE_FIELDS[stype]}
        opts = v.section(entry, fields, key)
        name = opts.pop("name")
        if not _NAME_RE.match(name):
            raise v.fail(f"{key}.name", f"{name!r}: use letters, digits, '_', '-' and '.' only (it names files)")
        if name in names:
            raise v.fail(f"{key}.name", f"source name {name!r} is used twice")
        names.add(name)
        mapping = opts.pop("classes")
        for label, cls in mapping.items():
            if cls not in classes:
                raise v.fail(f"{key}.classes.{label}", f"class {cls!r} is not in the top-level classes {classes}")
        if "class" in opts:
            if opts["class"] is None:
                opts["class"] = classes[0]
            elif opts["class"] not in classes:
                raise v.fail(f"{key}.class", f"class {opts['class']!r} is not in the top-level classes {classes}")
        if stype == "composite":
            if opts["canvas"] is None:
                opts["canvas"] = [top["imgsz"], top["imgsz"]]
            elif max(opts["canvas"]) > top["imgsz"]:
                raise v.fail(f"{key}.canvas", f"{opts['canvas']} is larger than imgsz {top['imgsz']}")
        sources.append(
            SourceConfig(
                index=i,
                name=name,
                type=opts.pop("type"),
                weight=opts.pop("weight"),
                max_images=opts.pop("max_images"),
                classes=mapping,
                options=opts,
            )
        )
    out = top["out"]
    return DatasetConfig(
        path=path,
        out=out,
        seed=top["seed"],
        val_fraction=top["val_fraction"],
        classes=classes,
        imgsz=top["imgsz"],
        sources=sources,
        normalized=_normalized(raw, top, sources),
    )


def _normalized(raw: dict, top: dict, sources: list[SourceConfig]) -> dict[str, Any]:
    """The config with defaults filled in and paths as written (so the hash does not depend on where it lives)."""
    raw_sources = raw["sources"]
    out_sources = []
    for s in sources:
        written = raw_sources[s.index]
        opts = {}
        for k, val in s.options.items():
            opts[k] = written[k] if isinstance(val, Path) else val
        out_sources.append(
            {"name": s.name, "type": s.type, "weight": s.weight, "max_images": s.max_images, "classes": s.classes}
            | opts
        )
    return {
        "out": str(raw.get("out", "dataset")),
        "seed": top["seed"],
        "val_fraction": top["val_fraction"],
        "classes": top["classes"],
        "imgsz": top["imgsz"],
        "sources": out_sources,
    }


def config_hash(path: str | Path | DatasetConfig) -> str:
    """SHA-256 (hex) of the validated config with defaults filled in: comments, key order and formatting do not
    change it; any value that changes the built dataset does."""
    cfg = path if isinstance(path, DatasetConfig) else load_config(path)
    text = json.dumps(cfg.normalized, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
