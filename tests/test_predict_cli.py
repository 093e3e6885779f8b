"""`animeseg predict` end to end: bad inputs, resume after a failure or a kill, video, real outputs, usage errors.

Plumbing runs on a random-init YOLOv8n-seg saved as a .pt (at conf 0 it "finds" a few boxes, which is all the
writers need); real outputs are checked with the shared YOLOv8n-seg ONNX model on Ren'Py sprite composites.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli as cli
from PIL import Image

from animeseg.cli import main
from animeseg.io import read_mask, read_rgba
from animeseg.masks import decode_rle, mask_iou, polygon_to_mask

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--conf", "0", "--imgsz", "64", "--max-det", "3"]


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory) -> Path:
    """A random-init YOLOv8n-seg saved as a checkpoint (deterministic on the CPU)."""
    import torch

    from animeseg._offline import import_ultralytics
    from animeseg.predict import Segmenter

    folder = tmp_path_factory.mktemp("tiny")
    src = Path(import_ultralytics().__file__).parent / "cfg" / "models" / "v8" / "yolov8-seg.yaml"
    shutil.copyfile(src, folder / "yolov8n-seg.yaml")
    torch.manual_seed(0)
    path = folder / "tiny-seg.pt"
    Segmenter(folder / "yolov8n-seg.yaml").model.save(path)
    return path


def _gradient(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = rng.integers(0, 120, 3)
    img = np.dstack([base[0] + xx * 100 // w, base[1] + yy * 100 // h, base[2] + (xx + yy) * 60 // (w + h)])
    img[h // 4 : h // 2, w // 3 : w // 2] = rng.integers(0, 255, 3)
    return img.astype(np.uint8)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (the pixel data never comes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _tree(root: Path) -> dict[str, bytes]:
    """Every output file (bytes) under ``root``, the run's bookkeeping folder left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".animeseg" not in p.relative_to(root).parts
    }


def _images(n: int, folder: Path, size=(96, 64)) -> list[Path]:
    paths = []
    for i in range(n):
        p = folder / ("sub" if i % 3 == 2 else ".") / f"img {i:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_gradient(*size, seed=i)).save(p)
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------------------------ bad inputs
BAD = {
    "empty.png": "empty file",
    "truncated.png": "corrupt or truncated",
    "text.png": "not an image",
    "folder.png": "is a folder",
    "locked.png": "permission denied",
    "one.png": "too small",
    "huge.png": "too large",
}
GOOD = ["a.png", "sub/a.png", "cmyk.jpg", "deep16.png", "palette.png", "rotated.jpg"]


@pytest.fixture
def mixed_folder(tmp_path, monkeypatch) -> Path:
    """Good images (plain, CMYK, 16-bit, palette, EXIF-rotated; two named a.png) and every kind of bad one."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_gradient(96, 64, 1)).save(root / "a.png")
    Image.fromarray(_gradient(96, 64, 2)).save(root / "sub" / "a.png")
    Image.fromarray(_gradient(80, 56, 3)).convert("CMYK").save(root / "cmyk.jpg")
    deep = (_gradient(72, 48, 4)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / "deep16.png")
    Image.fromarray(_gradient(64, 64, 5)).convert("P", palette=Image.Palette.ADAPTIVE).save(root / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80 x 48, shown rotated: 48 x 80
    Image.fromarray(_gradient(80, 48, 6)).save(root / "rotated.jpg", exif=exif)

    (root / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(_gradient(96, 64, 7)).save(buf, "PNG")
    (root / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "text.png").write_text("this is not a picture\n")
    (root / "folder.png").mkdir()
    Image.new("RGB", (1, 1)).save(root / "one.png")
    (root / "huge.png").write_bytes(_png_header(200_000, 200_000))
    locked = root / "locked.png"
    Image.fromarray(_gradient(32, 32, 8)).save(locked)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads through chmod 000: make the open fail the way it fails for users
        import animeseg.io as aio

        real = aio._pil_open

        def refuse(path):
            if Path(path).name == "locked.png":
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(aio, "_pil_open", refuse)
    yield root
    locked.chmod(0o644)


def test_bad_inputs_are_reported_and_good_ones_succeed(mixed_folder, tiny_pt, tmp_path, capsys, network_attempts):
    out = tmp_path / "out"
    code, err = cli(capsys, "predict", mixed_folder, "--model", tiny_pt, "--out", out, "--save", "all", *TINY)
    assert code == 1
    assert network_attempts() == []

    doc = json.loads((out / "predictions.json").read_text())
    by_name = {im["file_name"]: im for im in doc["images"]}
    assert sorted(by_name) == sorted(GOOD + list(BAD))
    assert len(doc["images"]) == len(by_name)  # one entry each
    for name, reason in BAD.items():
        assert by_name[name]["status"] == "error" and reason in by_name[name]["error"], by_name[name]
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1 and reason in lines[0], (name, lines)
    for name in GOOD:
        assert by_name[name]["status"] == "ok" and by_name[name]["error"] is None, by_name[name]
    assert (by_name["rotated.jpg"]["width"], by_name["rotated.jpg"]["height"]) == (48, 80)  # upright
    assert (by_name["deep16.png"]["width"], by_name["deep16.png"]["height"]) == (72, 48)

    # every good image has its outputs, mirrored, and the masks on disk are the ones in predictions.json
    anns: dict[int, list] = {}
    for a in doc["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    assert anns, "the random model finds boxes at conf 0"
    for name in GOOD:
        im = by_name[name]
        key = name.rsplit(".", 1)[0]
        assert (out / "overlays" / f"{key}.jpg").is_file()
        assert (out / "labels" / f"{key}.txt").is_file()
        assert (out / "cutouts" / f"{key}.png").is_file()
        assert read_mask(out / "semantic" / f"{key}.png").shape == (im["height"], im["width"])
        for i, a in enumerate(anns.get(im["id"], [])):
            assert np.array_equal(read_mask(out / "masks" / f"{key}_{i}.png"), decode_rle(a["segmentation"]))
        assert not (out / "masks" / f"{key}_{len(anns.get(im['id'], []))}.png").exists()
    for name in BAD:
        assert not list(out.glob(f"overlays/{name.rsplit('.', 1)[0]}*"))

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": doc["images"], "annotations": [], "categories": doc["categories"]}
        gt.createIndex()
        res = gt.loadRes(doc["annotations"])
    assert len(res.anns) == len(doc["annotations"])


def test_all_good_inputs_exit_zero_and_output_folder_is_not_an_input(tiny_pt, tmp_path, capsys):
    src = tmp_path / "art"
    _images(2, src)
    out = src / "predictions"  # inside the input folder
    for again in ([], ["--overwrite"]):  # a second run into the folder replaces the first one's outputs
        code, err = cli(
            capsys, "predict", src, "--model", tiny_pt, "--out", out, "--save", "json,overlays", *TINY, *again
        )
        assert code == 0, err
    doc = json.loads((out / "predictions.json").read_text())
    assert [im["file_name"] for im in doc["images"]] == ["img 00.png", "img 01.png"]


# ------------------------------------------------------------------------------------------------ resume
def test_resume_after_an_injected_failure_matches_an_uninterrupted_run(tiny_pt, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    _images(6, src)
    (src / "broken.png").write_text("nope")
    common = ["--model", tiny_pt, "--save", "json,masks,cutouts,overlays,semantic,txt", *TINY]
    ref = tmp_path / "ref"
    code, _ = cli(capsys, "predict", src, "--out", ref, *common)
    assert code == 1  # broken.png

    import animeseg.runner as runner

    real = runner.write_image_outputs
    calls = {"n": 0}

    def dies_on_the_fourth(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # what Ctrl-C (or a kill between two files) does to the loop
        return real(*a, **k)

    out = tmp_path / "out"
    monkeypatch.setattr(runner, "write_image_outputs", dies_on_the_fourth)
    code, err = cli(capsys, "predict", src, "--out", out, *common)
    assert code == 130 and "interrupted" in err
    assert not (out / "predictions.json").exists()
    records = sorted((out / ".animeseg" / "records").rglob("*.json"))
    assert len(records) == 3
    stamps = {p: p.stat().st_mtime_ns for p in records}

    monkeypatch.setattr(runner, "write_image_outputs", real)
    code, err = cli(capsys, "predict", src, "--out", out, "--resume", *common)
    assert code == 1
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # finished inputs were not redone
    assert _tree(out) == _tree(ref)

    # a changed setting invalidates the records: --resume redoes the work instead of mixing settings
    code, _ = cli(capsys, "predict", src, "--out", out, "--resume", *common[:-1], "2")
    assert any(p.stat().st_mtime_ns != t for p, t in stamps.items())
    doc = json.loads((out / "predictions.json").read_text())
    per_image: dict[int, int] = {}
    for a in doc["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    assert max(per_image.values()) <= 2
    assert not list(out.glob("masks/**/*_2.png"))  # the third instance's files of the old run are gone


def test_resume_after_the_process_is_killed(tiny_pt, tmp_path, capsys):
    src = tmp_path / "in"
    _images(30, src, size=(64, 48))
    common = ["--model", tiny_pt, "--save", "json,masks,overlays", *TINY]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "animeseg", "predict", str(src), "--out", str(out), *map(str, common)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    records = out / ".animeseg" / "records"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_dir() and sum(1 for _ in records.rglob("*.json")) >= 3:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = sum(1 for _ in records.rglob("*.json"))
    assert 3 <= done < 30 and not (out / "predictions.json").exists()

    code, err = cli(capsys, "predict", src, "--out", out, "--resume", *common)
    assert code == 0, err
    assert not [p for p in out.rglob(".*tmp*") if p.is_file()]  # no half-written file survives
    ref = tmp_path / "ref"
    code, _ = cli(capsys, "predict", src, "--out", ref, *common)
    assert code == 0
    assert _tree(out) == _tree(ref)


# ------------------------------------------------------------------------------------------------ video
def test_video_gives_an_annotated_video_and_per_frame_entries(tiny_pt, tmp_path, capsys):
    src = tmp_path / "clips"
    src.mkdir()
    writer = cv2.VideoWriter(str(src / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(5):
        writer.write(cv2.cvtColor(_gradient(96, 64, i), cv2.COLOR_RGB2BGR))
    writer.release()
    frames = [Image.fromarray(_gradient(48, 40, 10 + i)) for i in range(3)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(_gradient(96, 64, 20)).save(src / "still.png")

    out = tmp_path / "out"
    args = ["predict", src, "--model", tiny_pt, "--out", out, "--save", "json,masks,overlays,video", *TINY]
    code, err = cli(capsys, *args)
    assert code == 0, err
    doc = json.loads((out / "predictions.json").read_text())
    names = [im["file_name"] for im in doc["images"]]
    assert names == [f"anim.gif#{i}" for i in range(3)] + [f"clip.mp4#{i}" for i in range(5)] + ["still.png"]
    assert all(im["status"] == "ok" for im in doc["images"])
    assert {(im["width"], im["height"]) for im in doc["images"][3:8]} == {(96, 64)}

    for name, n, fps, size in (("clip", 5, 10, (96, 64)), ("anim", 3, 10, (48, 40))):
        cap = cv2.VideoCapture(str(out / "videos" / f"{name}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps)
        assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == size
        cap.release()
    # per-frame masks, named <video>#<frame>_<i>; the annotated video replaces per-frame overlays
    ids = {im["file_name"]: im["id"] for im in doc["images"]}
    for i in range(5):
        n_ann = sum(a["image_id"] == ids[f"clip.mp4#{i}"] for a in doc["annotations"])
        assert len(list(out.glob(f"masks/clip#{i:06d}_*.png"))) == n_ann
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["still.jpg"]

    before = (out / "videos" / "clip.mp4").stat().st_mtime_ns
    code, _ = cli(capsys, *args, "--resume")
    assert code == 0 and (out / "videos" / "clip.mp4").stat().st_mtime_ns == before
    assert json.loads((out / "predictions.json").read_text()) == doc


def test_a_broken_video_is_one_error_entry(tiny_pt, tmp_path, capsys):
    src = tmp_path / "clips"
    src.mkdir()
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    out = tmp_path / "out"
    code, err = cli(capsys, "predict", src, "--model", tiny_pt, "--out", out, *TINY)
    assert code == 1
    assert len([line for line in err.splitlines() if "broken.mp4" in line]) == 1
    doc = json.loads((out / "predictions.json").read_text())
    assert [(im["file_name"], im["status"]) for im in doc["images"]] == [("broken.mp4", "error")]
    assert not (out / "videos").exists() or not list((out / "videos").iterdir())


# ------------------------------------------------------------------------------------------------ real model
def test_real_model_outputs_on_anime_composites(renpy, shared_onnx, tmp_path, capsys):
    sys.path.insert(0, str(ROOT))
    from animeseg.predict import Segmenter
    from bench.composites import make_composites

    comps = make_composites(renpy, 3, seed=21, size=(320, 240), max_sprites=2)
    src = tmp_path / "scenes"
    src.mkdir()
    for c in comps:
        Image.fromarray(c.image).save(src / f"{c.name} scene.png")  # spaces, as users' files have
    out = tmp_path / "out"
    model_args = ["--model", shared_onnx, "--imgsz", "320", "--classes", "0"]
    code, err = cli(capsys, "predict", src, *model_args, "--out", out, "--save", "all")
    assert code == 0, err
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["categories"][0] == {"id": 1, "name": "person", "supercategory": "character"}

    seg = Segmenter(shared_onnx, imgsz=320, classes=[0])
    found = matched = characters = 0
    for c, im in zip(comps, doc["images"], strict=True):
        assert im["file_name"] == f"{c.name} scene.png" and im["status"] == "ok"
        key = f"{c.name} scene"
        anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
        direct = seg(c.image)
        # the command loses nothing against the library: same instances, same full-resolution masks
        assert len(anns) == len(direct)
        for a, m, s in zip(anns, direct.masks, direct.scores, strict=True):
            assert np.array_equal(decode_rle(a["segmentation"]), m)
            assert a["score"] == pytest.approx(float(s), abs=1e-5) and a["category_name"] == "person"
        masks = [decode_rle(a["segmentation"]) for a in anns]
        found += len(masks)
        union = np.any(masks, axis=0) if masks else np.zeros(c.image.shape[:2], bool)
        assert np.array_equal(read_mask(out / "semantic" / f"{key}.png"), union)
        whole = read_rgba(out / "cutouts" / f"{key}.png")
        assert np.array_equal(whole[..., 3] > 0, union)
        assert np.array_equal(whole[..., :3][union], c.image[union])
        lines = (out / "labels" / f"{key}.txt").read_text().splitlines()
        assert len(lines) == len(masks)
        for i, (a, m) in enumerate(zip(anns, masks, strict=True)):
            x, y, w, h = (int(v) for v in a["bbox"])
            cut = read_rgba(out / "cutouts" / f"{key}_{i}.png")
            assert cut.shape[:2] == (h, w)
            assert np.array_equal(cut[..., 3] == 255, m[y : y + h, x : x + w])  # alpha is the mask
            xy = np.array(lines[i].split()[1:], float).reshape(-1, 2) * [320, 240]
            assert mask_iou(polygon_to_mask(xy, 240, 320), m) > 0.85
        # and the characters are really found (this int8 nano model misses a heavily overlapped one here)
        matched += sum(max((mask_iou(t, m) for m in masks), default=0.0) > 0.5 for t in c.truth.masks)
        characters += len(c.truth)
    assert found >= 3 and matched >= 3 and matched >= 0.7 * characters


# ------------------------------------------------------------------------------------------------ usage errors
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "{tmp}/missing.pt"], "missing.pt: model file not found"),
        (["--refine", "sam"], "--refine sam needs a SAM checkpoint"),
        (["--refine", "sam", "--sam-checkpoint", "{tmp}/sam.pth"], "sam.pth: model file not found"),
        (["--refine", "sam", "--sam-checkpoint", "{tmp}"], "not an exported SAM"),
        (["--save", "json,mask"], "unknown output kind 'mask'"),
        (["--classes", "person"], "give class ids as integers"),
        (["--refine", "magic"], "magic"),
        (["--conf", "2"], "--conf"),
        (["--device", "nonsense"], "--device nonsense"),
    ],
)
def test_usage_errors_exit_2_in_one_line_before_any_work(
    extra, message, tiny_pt, tmp_path, capsys, monkeypatch, network_attempts
):
    import animeseg.weights as W

    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path / "no-weights")
    monkeypatch.delenv("ANIMESEG_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)  # ./weights is searched too
    img = tmp_path / "a.png"
    Image.fromarray(_gradient(64, 48, 0)).save(img)
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if "--model" not in args:
        args += ["--model", str(tiny_pt)]
    code, err = cli(capsys, "predict", img, "--out", tmp_path / "out", *args)
    assert code == 2
    assert message in err, err
    assert not (tmp_path / "out").exists()
    assert network_attempts() == []
    if "Usage:" not in err:  # our own errors are exactly one line (click's usage errors come with a usage hint)
        assert len(err.strip().splitlines()) == 1, err


def test_help_documents_every_option(capsys):
    code = 0
    try:
        main(["predict", "--help"])
    except SystemExit as e:
        code = e.code
    text = capsys.readouterr().out
    assert code == 0
    for option in (
        "--model",
        "--imgsz",
        "--conf",
        "--iou",
        "--max-det",
        "--device",
        "--classes",
        "--out",
        "--save",
        "--refine",
        "--refine-sam",
        "--sam-checkpoint",
        "--sam-type",
        "--resume",
    ):
        assert option in text


def test_messages_print_as_plain_text(capsys):
    """File names and hints holding brackets print as they are, from the CLI or through the library's logger."""
    from animeseg.cli.console import error, warn
    from animeseg.cli.render import setup_logging
    from animeseg.progress import logger

    setup_logging()
    warn("[bold]a[/bold].png: skipped")
    error("install it with pip install -e '.[web]'")
    logger.warning("[red]b[/red].png: not an image")
    logger.error("[dim]c[/dim].png: truncated")
    err = capsys.readouterr().err
    for text in ("[bold]a[/bold].png: skipped", "'.[web]'", "[red]b[/red].png: not", "[dim]c[/dim].png: trunc"):
        assert text in err, err


# ------------------------------------------------------------------------------------------------ runner
class _FakeSegmenter:
    """One disc per image; raises on images whose top-left pixel is pure red (a stand-in for a crashing model)."""

    names = {0: "character"}

    def __call__(self, image):
        from animeseg.instances import Instances

        if tuple(image[0, 0]) == (255, 0, 0):
            raise RuntimeError("model exploded\nsecond line")
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        m = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (min(h, w) / 4) ** 2
        inst = Instances(np.zeros((1, 4)), [0.8], [0], m[None], dict(self.names))
        inst.boxes = inst.boxes_from_masks()
        return inst


def test_runner_goes_on_after_a_model_failure_and_cleans_temp_files(tmp_path):
    from animeseg.media import expand_sources
    from animeseg.runner import run

    src = tmp_path / "in"
    _images(3, src)
    bad = np.zeros((40, 40, 3), np.uint8)
    bad[0, 0] = (255, 0, 0)
    Image.fromarray(bad).save(src / "red.png")
    out = tmp_path / "out"
    leftover = out / "masks" / ".img 00_0.k2j3.tmp.png"  # what a killed run leaves behind
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    keep = out / "masks" / ".keep"
    keep.write_bytes(b"")

    seen = []
    summary = run(expand_sources([src]), _FakeSegmenter(), out, ["json", "masks"], on_item=seen.append)
    assert [r.status for r in seen] == ["ok", "ok", "error", "ok"]
    assert seen[2].name == "red.png" and seen[2].error == "RuntimeError: model exploded"
    assert (summary.succeeded, summary.failed, summary.skipped, summary.instances, summary.exit_code) == (3, 1, 0, 3, 1)
    assert not leftover.exists() and keep.exists()
    doc = json.loads((out / "predictions.json").read_text())
    assert [im["status"] for im in doc["images"]] == ["ok", "ok", "error", "ok"]
    assert doc["categories"] == [{"id": 1, "name": "character", "supercategory": "character"}]

    again = run(expand_sources([src]), _FakeSegmenter(), out, ["json", "masks"], resume=True)
    assert (again.skipped, again.failed, again.images) == (3, 1, 0)
    assert json.loads((out / "predictions.json").read_text()) == doc
    # asking for more outputs than the records cover redoes those inputs
    more = run(expand_sources([src]), _FakeSegmenter(), out, ["json", "masks", "txt"], resume=True)
    assert (more.skipped, more.succeeded) == (0, 3) and len(list(out.rglob("labels/**/*.txt"))) == 3


# ------------------------------------------------------------------------------------------------ refinement
def _by_image(doc: dict) -> dict[str, list[dict]]:
    ids = {im["id"]: im["file_name"] for im in doc["images"]}
    out: dict[str, list[dict]] = {name: [] for name in ids.values()}
    for a in doc["annotations"]:
        out[ids[a["image_id"]]].append(a)
    return out


def test_refine_grabcut_keeps_every_instance_and_records_why(renpy, shared_onnx, tmp_path, capsys):
    from animeseg.instances import Instances
    from bench.composites import coco_mask_ap, make_composites

    comps = make_composites(renpy, 2, seed=31, size=(320, 240), max_sprites=2)
    src = tmp_path / "scenes"
    src.mkdir()
    for c in comps:
        Image.fromarray(c.image).save(src / f"{c.name}.png")
    model_args = ["--model", shared_onnx, "--imgsz", "320", "--classes", "0", "--save", "json,masks"]
    code, err = cli(capsys, "predict", src, *model_args, "--out", tmp_path / "plain")
    assert code == 0, err
    code, err = cli(capsys, "predict", src, *model_args, "--out", tmp_path / "gc", "--refine", "grabcut")
    assert code == 0, err
    plain = _by_image(json.loads((tmp_path / "plain" / "predictions.json").read_text()))
    refined = _by_image(json.loads((tmp_path / "gc" / "predictions.json").read_text()))
    assert {k: len(v) for k, v in refined.items()} == {k: len(v) for k, v in plain.items()}  # none dropped or added
    anns = [a for v in refined.values() for a in v]
    assert anns
    for a in anns:
        assert a["refine"]["method"] == "grabcut" and a["refined"] == a["refine"]["refined"]
        assert isinstance(a["refine"]["reason"], str) and a["refine"]["reason"]
    for name, v in refined.items():  # the files hold the fused masks
        for i, a in enumerate(v):
            m = read_mask(tmp_path / "gc" / "masks" / f"{Path(name).stem}_{i}.png")
            assert np.array_equal(m, decode_rle(a["segmentation"]))

    def instances(v):
        masks = np.array([decode_rle(a["segmentation"]) for a in v], bool).reshape(-1, 240, 320)
        return Instances(np.zeros((len(v), 4)), [a["score"] for a in v], np.zeros(len(v)), masks)

    names = [f"{c.name}.png" for c in comps]
    ap_plain = coco_mask_ap(comps, [instances(plain[n]) for n in names])
    ap_refined = coco_mask_ap(comps, [instances(refined[n]) for n in names])
    # the gain itself is measured on more images by bench/predict.py
    assert ap_plain > 0.3 and ap_refined >= ap_plain - 0.05


def test_refine_sam_with_a_small_checkpoint(tiny_pt, tmp_path, capsys):
    import torch

    from animeseg.sam import TINY as TINY_SAM
    from animeseg.sam import build_sam, save_sam

    torch.manual_seed(0)
    ckpt = save_sam(build_sam(TINY_SAM), tmp_path / "tiny-sam.pth")
    src = tmp_path / "in"
    _images(2, src)
    code, err = cli(capsys, "predict", src, "--model", tiny_pt, "--out", tmp_path / "plain", *TINY)
    assert code == 0, err
    args = ["predict", src, "--model", tiny_pt, "--refine", "sam", "--sam-checkpoint", ckpt, *TINY]
    code, err = cli(capsys, *args, "--out", tmp_path / "sam", "--save", "json,masks")
    assert code == 0, err
    plain = _by_image(json.loads((tmp_path / "plain" / "predictions.json").read_text()))
    refined = _by_image(json.loads((tmp_path / "sam" / "predictions.json").read_text()))
    assert {k: len(v) for k, v in refined.items()} == {k: len(v) for k, v in plain.items()}
    assert sum(len(v) for v in refined.values()) > 0  # the random model does detect: the next line checks something
    assert all(a["refine"]["method"] == "sam" for v in refined.values() for a in v)

    # the design card's spelling: --refine-sam is --refine sam, to the byte
    short = ["predict", src, "--model", tiny_pt, "--refine-sam", "--sam-checkpoint", ckpt, *TINY]
    code, err = cli(capsys, *short, "--out", tmp_path / "short", "--save", "json,masks")
    assert code == 0, err
    doc = "predictions.json"
    assert (tmp_path / "short" / doc).read_bytes() == (tmp_path / "sam" / doc).read_bytes()
    code, err = cli(capsys, *short, "--refine", "grabcut", "--out", tmp_path / "both")
    assert code == 2 and "--refine-sam means --refine sam" in err

    # a model type that does not match the checkpoint: one line, before any image is read
    code, err = cli(capsys, *args, "--out", tmp_path / "typo", "--sam-type", "vit_b")
    assert code == 2 and "does not match the checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "typo").exists()
