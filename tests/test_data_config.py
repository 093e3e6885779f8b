"""datasets.yaml: validation stops before any work with one line naming the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from animeseg.cli import app, main
from animeseg.data.config import config_hash, load_config
from animeseg.errors import ConfigError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for d in ("fg", "bg", "imgs", "masks", "lm"):
        (tmp_path / d).mkdir()
    (tmp_path / "ann.json").write_text('{"images": [], "annotations": [], "categories": []}')
    return tmp_path


GOOD = """\
# comment
out: built
seed: 3
val_fraction: 0.2
classes: [character, other]
imgsz: 320
sources:
  - name: comp
    type: composite
    foregrounds: fg
    backgrounds: bg
    count: 10
    augment: {rotation: 5}
  - name: pairs
    type: mask_pairs
    images: imgs
    masks: masks
  - name: coco
    type: coco
    annotations: ann.json
    images: imgs
    classes: {person: character}
  - name: lm
    type: labelme
    folder: lm
"""


def _write(tree: Path, text: str) -> Path:
    p = tree / "datasets.yaml"
    p.write_text(text)
    return p


def test_valid_config_fills_defaults_and_resolves_paths(tree):
    cfg = load_config(_write(tree, GOOD))
    assert cfg.out == (tree / "built").resolve() and cfg.seed == 3 and cfg.imgsz == 320
    comp = cfg.source("comp")
    assert comp.options["foregrounds"] == (tree / "fg").resolve()
    assert comp.options["canvas"] == [320, 320]  # default canvas: imgsz square
    assert comp.options["augment"]["rotation"] == 5.0 and comp.options["augment"]["flip"] == 0.5
    assert comp.options["class"] == "character"
    assert cfg.source("coco").options["crowd"] == "skip_image"
    assert cfg.source("coco").options["keep_empty"] is False
    assert cfg.source("coco").classes == {"person": "character"}
    assert cfg.names == {0: "character", 1: "other"}


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (("    count: 10\n", ""), "sources[0].count", "missing required key"),
        (("count: 10", "count: ten"), "sources[0].count", "expected a whole number, got 'ten'"),
        (("count: 10", "count: 0"), "sources[0].count", "below the minimum 1"),
        (("foregrounds: fg", "foregrounds: nowhere"), "sources[0].foregrounds", "folder does not exist"),
        (("annotations: ann.json", "annotations: missing.json"), "sources[2].annotations", "file does not exist"),
        (("type: labelme", "type: labelmee"), "sources[3].type", "unknown source type 'labelmee'"),
        (("    folder: lm", "    folder: lm\n    crowdd: drop"), "sources[3].crowdd", "did you mean 'crowd'"),
        (("{person: character}", "{person: people}"), "sources[2].classes.person", "not in the top-level classes"),
        (("name: pairs", "name: comp"), "sources[1].name", "used twice"),
        (("name: pairs", "name: 'a/b'"), "sources[1].name", "letters, digits"),
        (("val_fraction: 0.2", "val_fraction: 2"), "val_fraction", "above the maximum 0.9"),
        (("{rotation: 5}", "{scale: [0.9, 0.5]}"), "sources[0].augment.scale", "low end 0.9 is above high end 0.5"),
        (("{rotation: 5}", "{hsv: [1, 2]}"), "sources[0].augment.hsv", "list of 3 numbers"),
        (("imgsz: 320", "imgsz: true"), "imgsz", "expected a whole number"),
        (("seed: 3", "sead: 3"), "sead", "did you mean 'seed'"),
    ],
)
def test_config_errors_name_file_key_and_problem(tree, edit, key, problem):
    old, new = edit
    assert old in GOOD
    path = _write(tree, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.key == key and problem in err.problem
    assert str(path) in str(err) and "\n" not in str(err)


def test_yaml_syntax_and_shape_errors(tree):
    with pytest.raises(ConfigError, match="not valid YAML at line [23]"):
        load_config(_write(tree, "out: x\nsources: [a\n  b: c\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(_write(tree, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="sources: missing required key"):
        load_config(_write(tree, "out: x\n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tree / "absent.yaml")
    with pytest.raises(ConfigError, match=r"canvas: \[640, 640\] is larger than imgsz 320"):
        load_config(_write(tree, GOOD.replace("    count: 10\n", "    count: 10\n    canvas: [640, 640]\n")))


def test_config_hash_ignores_formatting_but_not_values(tree):
    a = config_hash(_write(tree, GOOD))
    reformatted = GOOD.replace("# comment\n", "# another comment\n").replace("seed: 3", "seed:    3   # same")
    assert config_hash(_write(tree, reformatted)) == a
    assert config_hash(_write(tree, GOOD.replace("    augment: {rotation: 5}\n", ""))) != a
    assert config_hash(_write(tree, GOOD.replace("seed: 3", "seed: 4"))) != a
    # defaults spelled out give the same hash as defaults left implicit
    assert config_hash(_write(tree, GOOD.replace("{rotation: 5}", "{rotation: 5, flip: 0.5}"))) == a


def test_cli_config_error_is_one_line_exit_2(tree, capsys):
    path = _write(tree, GOOD.replace("count: 10", "count: -1"))
    with pytest.raises(SystemExit) as info:
        main(["data", "build", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sources[0].count" in err and str(path) in err
    assert not (tree / "built").exists()


def test_cli_help_explains_every_option():
    runner = CliRunner()
    for cmd in ("build", "check", "demo"):
        res = runner.invoke(app, ["data", cmd, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0
    res = runner.invoke(app, ["data", "build", "--help"], env={"COLUMNS": "200"})
    for opt in ("--out", "--only", "--workers", "--overwrite"):
        assert opt in res.output


def test_repository_datasets_yaml_is_a_valid_config(tmp_path):
    """The documented study mix validates once its data folders exist (a user edits only the paths)."""
    text = (Path(__file__).resolve().parents[1] / "datasets.yaml").read_text()
    (tmp_path / "datasets.yaml").write_text(text)
    with pytest.raises(ConfigError, match="foregrounds: folder does not exist"):
        load_config(tmp_path / "datasets.yaml")
    for d in (
        "anime-segmentation/fg",
        "anime-segmentation/bg",
        "anime-segmentation/imgs",
        "anime-segmentation/masks",
        "coco/train2017",
        "coco/annotations",
        "labelme",
    ):
        (tmp_path / "data" / d).mkdir(parents=True)
    (tmp_path / "data/coco/annotations/instances_train2017.json").write_text("{}")
    cfg = load_config(tmp_path / "datasets.yaml")
    assert [s.type for s in cfg.sources] == ["composite", "mask_pairs", "coco", "labelme"]
    assert cfg.source("coco-person").classes == {"person": "character"}
    assert cfg.out == (tmp_path / "data" / "dataset").resolve()
