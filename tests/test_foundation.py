"""The shared foundation: CLI entry points, offline set-up, image reading, atomic writes, masks, Instances."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from animeseg import Instances, __version__
from animeseg.cli import app
from animeseg.errors import InputError, MissingWeightsError
from animeseg.io import read_image, read_mask, read_rgba, write_image, write_json
from animeseg.masks import (
    decode_rle,
    encode_rle,
    mask_iou,
    mask_to_box,
    mask_to_polygon,
    polygon_to_mask,
    polygons_to_mask,
)

runner = CliRunner()


def test_version_and_help():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("data", "train", "eval", "predict", "export", "weights"):
        assert cmd in res.output


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "animeseg", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"animeseg {__version__}"


def test_offline_environment(network_attempts):
    import os

    from animeseg._offline import import_ultralytics

    import_ultralytics()
    from ultralytics.utils import ONLINE, SETTINGS
    from ultralytics.utils.checks import check_font

    assert os.environ["YOLO_OFFLINE"] == "1" and not ONLINE
    assert SETTINGS["sync"] is False
    assert Path(check_font("Arial.ttf")).is_file()  # found locally, no download
    assert network_attempts() == []


def test_missing_weights_is_clear_and_offline(tmp_path, network_attempts):
    from animeseg.yolo import load_yolo

    with pytest.raises(MissingWeightsError, match="not found.*weights download"):
        load_yolo(tmp_path / "yolov8m-seg.pt")
    assert network_attempts() == []


# ------------------------------------------------------------------------------------------------ image input
def _save(path: Path, im: Image.Image, **kw) -> Path:
    im.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "mode",
    ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"],
)
def test_read_image_modes(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    im = (
        rgb.convert(mode)
        if mode != "I;16"
        else Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16))
    )
    ext = ".jpg" if mode == "CMYK" else (".tif" if mode == "I;16" else ".png")
    arr = read_image(_save(tmp_path / f"x{ext}", im))
    assert arr.shape == (20, 30, 3) and arr.dtype == np.uint8


def test_read_image_applies_exif_orientation(tmp_path):
    im = Image.new("RGB", (40, 20), "red")
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif)
    assert read_image(path).shape == (40, 20, 3)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"hello, not an image"), "not an image"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: None, "no such file"),
        (lambda p: Image.new("RGB", (1, 1)).save(p, format="PNG"), "too small"),
    ],
)
def test_read_image_errors_are_one_line(tmp_path, make, reason):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(InputError) as e:
        read_image(path)
    msg = str(e.value)
    assert reason in msg and str(path) in msg and "\n" not in msg


def test_truncated_image(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "trunc.png"
    bad.write_bytes(good.read_bytes()[:400])
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_image(bad)


def test_rgba_and_mask_reading(tmp_path):
    a = np.zeros((10, 12, 4), np.uint8)
    a[2:6, 3:9] = (255, 0, 0, 255)
    Image.fromarray(a).save(tmp_path / "c.png")
    assert read_rgba(tmp_path / "c.png").shape == (10, 12, 4)
    assert read_mask(tmp_path / "c.png").sum() == 24
    assert (read_image(tmp_path / "c.png")[0, 0] == 255).all()  # transparent shown on white


def test_atomic_writes_leave_no_temp_files(tmp_path):
    write_json(tmp_path / "a" / "x.json", {"k": 1})
    write_image(tmp_path / "a" / "y.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        write_image(tmp_path / "a" / "z.unknownext", np.zeros((4, 4, 3), np.uint8))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.json", "y.png"]
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "a" / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


# ---------------------------------------------------------------------------------------------------- masks
def _blob(h=60, w=80) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    m = ((yy - 30) ** 2 / 400 + (xx - 30) ** 2 / 300) < 1
    m[10:20, 60:75] = True  # a second, separate part
    return m


def test_rle_roundtrip_compressed_and_uncompressed():
    m = _blob()
    rle = encode_rle(m)
    assert isinstance(rle["counts"], str)
    assert (decode_rle(rle) == m).all()
    # uncompressed: column-major run lengths starting with zeros
    flat = m.T.reshape(-1).astype(int)
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    assert (decode_rle({"size": list(m.shape), "counts": runs}) == m).all()


def test_polygon_roundtrip_keeps_the_mask():
    m = _blob()
    poly = mask_to_polygon(m, epsilon=0)
    back = polygon_to_mask(poly, *m.shape)
    assert mask_iou(m, back) > 0.95


def test_polygons_ignore_degenerate_parts():
    m = polygons_to_mask([[0, 0, 10, 0, 10, 10, 0, 10], [1, 1, 2, 2]], 20, 20)
    assert m[:10, :10].all() and m.sum() == 100


def test_box_and_instances():
    m = np.zeros((2, 10, 10), bool)
    m[0, 2:5, 3:7] = True
    assert mask_to_box(m[0]) == [3.0, 2.0, 7.0, 5.0]
    inst = Instances(np.zeros((2, 4)), [0.9, 0.1], [0, 0], m, {0: "character"})
    assert len(inst) == 2 and inst.image_size == (10, 10)
    assert inst.boxes_from_masks()[0].tolist() == [3, 2, 7, 5]
    assert len(inst[inst.scores > 0.5]) == 1 and inst.class_names() == ["character"] * 2
    assert len(Instances.empty(5, 6)) == 0
    with pytest.raises(ValueError):
        Instances(np.zeros((2, 4)), [0.9], [0, 0], m)


# ------------------------------------------------------------------------------------------------------ SAM
def test_sam_architecture_is_read_from_the_checkpoint(tmp_path):
    from animeseg.errors import AnimesegError
    from animeseg.sam import OFFICIAL, TINY, build_sam, config_from_state_dict, load_sam, save_sam

    assert config_from_state_dict(build_sam("vit_b").state_dict()) == OFFICIAL["vit_b"]
    path = save_sam(build_sam(TINY), tmp_path / "tiny.pth")
    sam = load_sam(path)
    assert sam.image_encoder.img_size == TINY.img_size
    with pytest.raises(AnimesegError, match="does not match"):
        load_sam(path, model_type="vit_b")
    with pytest.raises(MissingWeightsError, match="weights download sam_vit_b"):
        load_sam(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AnimesegError, match="cannot read SAM checkpoint"):
        load_sam(tmp_path / "junk.pth")


def test_coco_records_follow_the_mask():
    from animeseg.cocojson import categories, instance_annotations

    m = np.zeros((1, 10, 10), bool)
    m[0, 2:5, 3:7] = True
    inst = Instances([[0, 0, 10, 10]], [0.5], [0], m, {0: "character"}, [{"refined": True, "method": "sam"}])
    (ann,) = instance_annotations(inst, image_id=7, first_id=3)
    assert ann["bbox"] == [3.0, 2.0, 4.0, 3.0] and ann["area"] == 12 and ann["category_id"] == 1
    assert ann["refined"] is True and ann["image_id"] == 7 and ann["id"] == 3
    assert (decode_rle(ann["segmentation"]) == m[0]).all()
    (gt,) = instance_annotations(inst, 7, 3, with_scores=False)
    assert gt["iscrowd"] == 0 and "score" not in gt
    assert categories({0: "character"}) == [{"id": 1, "name": "character", "supercategory": "character"}]


def test_versions_are_read_by_import_name_whichever_wheel_provides_it(monkeypatch):
    from importlib import metadata

    from animeseg.versions import installed_version

    assert installed_version("numpy") == np.__version__
    assert installed_version("cv2") is not None  # opencv-python-headless in the core install, not "opencv-python"
    assert installed_version("no_such_module_here") is None
    versions = {"ultralytics-opencv-headless": "8.4.1", "opencv-python": "4.9.0", "opencv-python-headless": "4.9.0"}
    provides = {"ultralytics": ["ultralytics-opencv-headless"], "cv2": ["opencv-python-headless", "opencv-python"]}
    monkeypatch.setattr(metadata, "packages_distributions", lambda: provides)
    monkeypatch.setattr(metadata, "version", versions.__getitem__)
    assert installed_version("ultralytics") == "8.4.1"  # Ultralytics' headless build counts as Ultralytics
    assert installed_version("cv2") == "opencv-python 4.9.0 + opencv-python-headless 4.9.0"  # both, said
