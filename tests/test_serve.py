"""`animeseg serve`: the batch behind the page (same outputs as `animeseg predict`, bad inputs, nothing left
half-written) and the page itself, driven in a real headless Chromium.

The browser test needs Gradio (``pip install -e '.[web]'``), Playwright's Python package and Debian's
``chromium`` (``apt-get install chromium``); it skips, saying which is missing, where one is. Playwright never
downloads a browser here: it drives ``/usr/bin/chromium``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animeseg.cli import main
from animeseg.web.jobs import MAX_VIDEO_FRAMES, PAGE_SAVE, prune_jobs, run_job, write_zip

CHROMIUM = Path("/usr/bin/chromium")
# Two real sprites whose detections include scores between 0.25 and 0.36 (0.34 on sylvie): at confidence 0.36
# a page that ignored the confidence it was given would show more cut-outs than `animeseg predict --conf 0.36`.
IMAGES = ("eileen vhappy.png", "sylvie green giggle.png")
CONF, IMGSZ = 0.36, 320


def _predict(images: list[Path], model: Path, out: Path, *extra: str) -> Path:
    """`animeseg predict` with the page's outputs; returns ``out``."""
    args = ["predict", *map(str, images), "--model", str(model), "--imgsz", str(IMGSZ), "--conf", str(CONF)]
    with pytest.raises(SystemExit) as ex:
        main([*args, "--save", ",".join(PAGE_SAVE), "--out", str(out), *extra])
    assert ex.value.code in (0, None)
    return out


def _outputs(out: Path) -> dict[str, bytes]:
    """Every output file under ``out`` (resume records excluded), relative POSIX path -> content."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.relative_to(out).as_posix().startswith(".animeseg/")
    }


def _zip_contents(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def _bad_inputs(folder: Path, good: Path) -> dict[str, Path]:
    """A text file named .png, a truncated PNG, a PNG claiming 30000x30000 pixels, an undecodable .mp4 and an
    unsupported video container."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    files["text"] = folder / "notes.png"
    files["text"].write_text("this is not a picture\n")
    data = good.read_bytes()
    files["truncated"] = folder / "truncated.png"
    files["truncated"].write_bytes(data[: len(data) // 2])
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    ihdr = b"IHDR" + struct.pack(">II", 30000, 30000) + bytes(png[24:29])
    png[12:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    files["huge"] = folder / "huge.png"
    files["huge"].write_bytes(bytes(png))
    files["video"] = folder / "clip.mp4"
    files["video"].write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    files["unsupported"] = folder / "clip.flv"
    files["unsupported"].write_bytes(b"FLV\x01" + bytes(100))
    return files


# ------------------------------------------------------------------------------------------------ the batch
def test_job_outputs_equal_predict_with_the_same_settings(renpy, shared_onnx, tmp_path):
    """The page's zip holds exactly what `animeseg predict` writes (byte for byte), with refinement, and its
    galleries list one cut-out and one mask per instance of predictions.json."""
    from animeseg.web.holder import ModelHolder, PageSettings

    images = [renpy / "fg" / name for name in IMAGES]
    engine = ModelHolder(shared_onnx)
    segmenter = engine.segmenter(PageSettings(refine="grabcut", conf=CONF, imgsz=IMGSZ))
    seen = []
    result = run_job(
        images, segmenter, tmp_path / "jobs", on_progress=lambda s: seen.append((s.done, s.total, s.label))
    )

    expected = _outputs(_predict(images, shared_onnx, tmp_path / "cli", "--refine", "grabcut"))
    assert result.zip is not None and result.failures == []
    assert _zip_contents(result.zip) == expected
    doc = json.loads(expected["predictions.json"])
    assert all(a["score"] >= CONF for a in doc["annotations"])
    assert {a["refine"]["method"] for a in doc["annotations"]} == {"grabcut"}
    assert len(result.cutouts) == len(result.masks) == len(doc["annotations"]) == result.instances >= 2
    assert [p.path.name for p in result.overlays] == [Path(n).stem + ".jpg" for n in IMAGES]
    assert all(p.path.is_file() for p in result.cutouts + result.masks + result.overlays)
    assert seen[0][:2] == (0, 2) and seen[-1][:2] == (2, 2)
    assert not (result.folder / "inputs").exists(), "uploads are not kept once the batch is done"


def test_soft_edges_on_the_page_equal_predict_alpha_matte(renpy, shared_onnx, tmp_path):
    """The page's "Cut-out edges: matte" gives the zip `animeseg predict --alpha matte` writes, with soft alpha."""
    from animeseg.web.holder import ModelHolder, PageSettings

    image = [renpy / "fg" / IMAGES[0]]
    settings = PageSettings(conf=CONF, imgsz=IMGSZ, alpha="matte")
    result = run_job(image, ModelHolder(shared_onnx).segmenter(settings), tmp_path / "jobs", alpha=settings.alpha)
    expected = _outputs(_predict(image, shared_onnx, tmp_path / "cli", "--alpha", "matte"))
    assert result.zip is not None and _zip_contents(result.zip) == expected
    alpha = np.asarray(Image.open(result.cutouts[0].path))[..., 3]
    assert ((alpha > 0) & (alpha < 255)).sum() > 100  # soft edges, not a binary staircase


def test_sam_is_offered_with_a_checkpoint_and_matches_predict(renpy, shared_onnx, tmp_path):
    import torch

    from animeseg.refine import RefineOptions
    from animeseg.sam import TINY, build_sam, save_sam
    from animeseg.web.holder import ModelHolder, PageSettings

    torch.manual_seed(0)
    checkpoint = save_sam(build_sam(TINY), tmp_path / "sam_tiny.pth")
    engine = ModelHolder(shared_onnx, refine=RefineOptions(checkpoint, device="cpu"), device="cpu")
    assert engine.refine_methods == ["none", "learned", "grabcut", "sam"]
    image = [renpy / "fg" / IMAGES[0]]
    result = run_job(image, engine.segmenter(PageSettings("sam", CONF, IMGSZ)), tmp_path / "jobs")
    sam_args = ("--refine", "sam", "--sam-checkpoint", str(checkpoint), "--device", "cpu")
    expected = _outputs(_predict(image, shared_onnx, tmp_path / "cli", *sam_args))
    assert _zip_contents(result.zip) == expected
    assert {a["refine"]["method"] for a in json.loads(expected["predictions.json"])["annotations"]} == {"sam"}


def test_a_short_video_gives_every_frame_like_predict(renpy, shared_onnx, tmp_path):
    import cv2

    from animeseg.io import read_image
    from animeseg.predict import Segmenter

    sprite = cv2.resize(read_image(renpy / "fg" / IMAGES[0]), (160, 360))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 360))
    for shift in (0, 8, 16):
        writer.write(cv2.cvtColor(np.roll(sprite, shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    seen = []
    segmenter = Segmenter(shared_onnx, imgsz=IMGSZ, conf=CONF)
    result = run_job([video], segmenter, tmp_path / "jobs", lambda s: seen.append((s.done, s.total, s.label)))
    assert _zip_contents(result.zip) == _outputs(_predict([video], shared_onnx, tmp_path / "cli"))
    assert [p.caption for p in result.overlays] == ["clip.avi#0", "clip.avi#1", "clip.avi#2"]
    assert [p.path.name for p in result.overlays] == [f"clip#00000{i}.jpg" for i in range(3)]
    assert result.images == 3 and len(result.cutouts) == result.instances >= 3
    assert seen[0] == (0, 3, "clip.avi") and seen[-1] == (3, 3, "clip.avi")


def test_engine_loads_the_model_once_and_applies_each_requests_settings(shared_onnx, renpy):
    from animeseg.io import read_image
    from animeseg.predict import Segmenter
    from animeseg.web.holder import ModelHolder, PageSettings

    image = read_image(renpy / "fg" / IMAGES[1])
    engine = ModelHolder(shared_onnx)
    low = engine.segmenter(PageSettings(conf=0.25, imgsz=IMGSZ))
    high = engine.segmenter(PageSettings(conf=CONF, imgsz=IMGSZ))
    assert low.model is high.model is engine.segmenter(PageSettings()).model
    fresh = Segmenter(shared_onnx, imgsz=IMGSZ, conf=CONF)(image)
    got = high(image)
    assert len(low(image)) > len(got) == len(fresh)
    np.testing.assert_array_equal(got.masks, fresh.masks)
    assert engine.refine_methods == ["none", "learned", "grabcut"]
    with pytest.raises(ValueError, match="sam"):
        engine.segmenter(PageSettings(refine="sam"))


def test_a_default_refiner_that_cannot_start_is_said_on_the_page(tmp_path, monkeypatch):
    from animeseg import weights as W
    from animeseg.refine import learned
    from animeseg.web.holder import ModelHolder

    monkeypatch.setattr(learned, "PACKAGED", tmp_path / "gone.onnx")  # the learned refiner's network is missing
    holder = ModelHolder(W.packaged_model())  # whose sidecar asks for the learned refiner
    assert holder.refine_default == "none" and "learned" not in holder.refine_methods
    note = holder.refine_note
    assert note is not None and len(note.splitlines()) == 1
    assert "'learned' cannot start here (" in note and "gone.onnx: the learned refiner's network is missing" in note
    assert ModelHolder(W.packaged_model(), refine_default="grabcut").refine_note is None  # asked-for, available
    if importlib.util.find_spec("gradio") is None:
        pytest.skip("Gradio is not installed (.[web]): the page itself is not built")
    from animeseg.web import page_env

    for key, value in page_env(tmp_path / "gradio").items():
        monkeypatch.setenv(key, value)
    from animeseg.web.page import build_page

    shown = [b.value for b in build_page(holder, tmp_path / "jobs").blocks.values() if b.elem_id == "refine-note"]
    assert [v.replace("\\", "") for v in shown] == [note]


def test_bad_inputs_are_reported_and_leave_nothing_behind(renpy, shared_onnx, tmp_path):
    from animeseg.predict import Segmenter

    good = renpy / "fg" / IMAGES[0]
    bad = _bad_inputs(tmp_path / "bad", good)
    segmenter = Segmenter(shared_onnx, imgsz=IMGSZ, conf=CONF)
    jobs = tmp_path / "jobs"

    only_bad = run_job(list(bad.values()), segmenter, jobs)
    assert only_bad.zip is None and not only_bad.folder.exists()
    assert list(jobs.iterdir()) == []
    messages = "\n".join(only_bad.failures)
    assert len(only_bad.failures) == len(bad)
    for name, problem in [
        ("notes.png", "not an image"),
        ("truncated.png", "truncated"),
        ("huge.png", "too large"),
        ("clip.mp4", "cannot open video"),
        ("clip.flv", "unsupported file type"),
    ]:
        assert any(f.startswith(f"{name}: ") and problem in f for f in only_bad.failures), messages

    mixed = run_job([bad["text"], good, bad["truncated"]], segmenter, jobs)
    assert mixed.succeeded == 1 and len(mixed.failures) == 2
    contents = _zip_contents(mixed.zip)
    doc = json.loads(contents["predictions.json"])
    assert [(i["file_name"], i["status"]) for i in doc["images"]] == [
        ("notes.png", "error"),
        (good.name, "ok"),
        ("truncated.png", "error"),
    ]
    assert not any("notes" in n or "truncated" in n for n in contents if n != "predictions.json")
    assert _temp_files(jobs) == []
    assert [p.name for p in jobs.iterdir()] == [mixed.folder.name]


def test_same_name_twice_and_long_videos(tmp_path, monkeypatch):
    """Two uploads called a.png both get segmented (the second as "a (2).png"); a video longer than the page
    takes is refused by name before any frame is read."""
    import cv2

    from animeseg.instances import Instances

    class Blank:
        names = {0: "character"}

        def __call__(self, image: np.ndarray) -> Instances:
            return Instances.empty(*image.shape[:2], self.names)

    one, two = tmp_path / "1" / "a.png", tmp_path / "2" / "a.png"
    for path, value in ((one, 10), (two, 200)):
        path.parent.mkdir()
        Image.new("RGB", (16, 12), (value,) * 3).save(path)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (16, 12))
    for _ in range(4):
        writer.write(np.zeros((12, 16, 3), np.uint8))
    writer.release()
    monkeypatch.setattr("animeseg.web.jobs.MAX_VIDEO_FRAMES", 3)
    result = run_job([one, two, video], Blank(), tmp_path / "jobs")
    names = [i["file_name"] for i in json.loads(_zip_contents(result.zip)["predictions.json"])["images"]]
    assert names == ["a.png", "a (2).png"]
    assert result.failures == [
        "clip.avi: video too long for the page (4 frames, limit 3); use `animeseg predict` for long videos"
    ]
    assert MAX_VIDEO_FRAMES >= 300


def test_zip_leaves_out_resume_records_and_prune_keeps_the_newest(tmp_path):
    out = tmp_path / "out"
    (out / ".animeseg" / "records").mkdir(parents=True)
    (out / ".animeseg" / "records" / "a.json").write_text("{}")
    (out / "masks").mkdir()
    (out / "masks" / "a_0.png").write_bytes(b"png")
    assert list(_zip_contents(write_zip(out, tmp_path / "z.zip"))) == ["masks/a_0.png"]

    jobs = tmp_path / "jobs"
    for i in range(4):
        (jobs / f"job{i}").mkdir(parents=True)
        os.utime(jobs / f"job{i}", (1000 + i, time.time() - 100 + i))
    os.utime(jobs / "job0", (0, time.time() - 7200))
    assert prune_jobs(jobs, keep=3, max_age_s=3600) == 1  # too old
    assert prune_jobs(jobs, keep=1, max_age_s=3600) == 2  # too many
    assert [p.name for p in jobs.iterdir()] == ["job3"]


# ------------------------------------------------------------------------------------------------ the command
def test_serve_without_gradio_says_how_to_get_it():
    code = "import sys; sys.modules['gradio'] = None; from animeseg.cli import main; main(['serve'])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "pip install -e '.[web]'" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("192.168.1.20", False)],
)
def test_hosts_other_than_loopback_are_told_apart(host, loopback):
    from animeseg.cli.serve import _is_loopback

    assert _is_loopback(host) is loopback


# ------------------------------------------------------------------------------------------------ the page
# Runs `animeseg serve` with every non-loopback lookup or connection refused and written to a log, so the test
# can show that the server itself never reaches the network (the browser's requests are checked separately).
_SERVER = r"""
import os, socket, sys

log = open(os.environ["ANIMESEG_TEST_NET_LOG"], "a", buffering=1)
real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect


def local(host):
    return str(host) in ("localhost", "::1", "0.0.0.0", "") or str(host).startswith("127.")


def getaddrinfo(host, *args, **kwargs):
    if not local(host):
        log.write(f"getaddrinfo {host}\n")
        raise OSError(f"network blocked by the test: {host}")
    return real_getaddrinfo(host, *args, **kwargs)


def connect(self, address):
    if self.family != socket.AF_UNIX and not local(address[0]):
        log.write(f"connect {address}\n")
        raise OSError(f"network blocked by the test: {address}")
    return real_connect(self, address)


socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
from animeseg.cli import main

main(sys.argv[1:])
"""


def _browser_missing() -> str | None:
    if importlib.util.find_spec("gradio") is None:
        return "Gradio not installed (pip install -e '.[web]')"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright not installed (pip install -e '.[web]')"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """`animeseg serve` in a child process; its output lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail("animeseg serve exited:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if text in line:
                return line
        pytest.fail(f"animeseg serve did not print {text!r} within {timeout} s:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:  # exiting takes a few CPU seconds (interpreter clean-up with torch loaded): slow on a busy machine
            return self.proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def test_page_in_a_real_browser(renpy, shared_onnx, tmp_path):
    """Upload real sprites, wait for the overlay, count the cut-outs, download the zip and compare it with
    `animeseg predict`; then a broken file shows its message and a later good upload still works. Neither the
    browser nor the server reaches anything but 127.0.0.1, and stopping the server leaves no files."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    images = [renpy / "fg" / name for name in IMAGES]
    good_again = renpy / "fg" / "eileen happy.png"
    broken = _bad_inputs(tmp_path / "bad", good_again)["text"]
    expected = _outputs(_predict(images, shared_onnx, tmp_path / "cli"))
    expected_again = _outputs(_predict([good_again], shared_onnx, tmp_path / "cli-again"))
    n_instances = len(json.loads(expected["predictions.json"])["annotations"])
    assert n_instances >= 2

    port = _free_port()
    scratch, net_log = tmp_path / "tmp", tmp_path / "net.log"
    scratch.mkdir()
    net_log.touch()
    env = {**os.environ, "TMPDIR": str(scratch), "ANIMESEG_TEST_NET_LOG": str(net_log)}
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # the command must switch analytics off by itself
    server = _Server(["serve", "--model", str(shared_onnx), "--imgsz", str(IMGSZ), "--port", str(port)], env)
    requests: list[str] = []
    try:
        url = server.wait_for("animeseg serve: http", timeout=240).split()[-1]
        assert url == f"http://127.0.0.1:{port}/"
        server.wait_for(f"listening on 127.0.0.1 port {port}: only this computer", timeout=10)
        (workspace,) = scratch.glob("animeseg-serve-*")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            page.locator("#segment").wait_for(timeout=60_000)
            conf = page.locator("#conf input[type=number]")
            conf.fill(str(CONF))
            conf.press("Enter")
            status = page.locator("#status")

            # 1. real images: overlay, one cut-out per instance, and the zip equals `animeseg predict`'s outputs
            page.locator("#inputs input[type=file]").set_input_files([str(p) for p in images])
            status.get_by_text("in 2 images").wait_for(timeout=180_000)
            assert f"confidence {CONF:g}, size {IMGSZ}" in status.inner_text()
            overlays = page.locator("#overlays img")
            overlays.first.wait_for(timeout=30_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('#overlays img')].every(i => i.complete && i.naturalWidth > 0)"
            )
            assert overlays.count() == 2
            assert page.locator("#cutouts img").count() == n_instances
            assert page.locator("#masks img").count() == n_instances
            with page.expect_download() as download:
                page.locator("#download").click()
            zip_path = tmp_path / "page.zip"
            download.value.save_as(zip_path)
            assert _zip_contents(zip_path) == expected

            # 2. a broken file: a message on the page, no results, no zip; the server keeps serving
            page.locator("#inputs button[aria-label='Clear']").click()
            page.locator("#inputs input[type=file]").set_input_files(str(broken))
            status.get_by_text("notes.png: not an image").wait_for(timeout=60_000)
            assert "Could not use 1 file" in status.inner_text()
            assert page.locator("#cutouts img").count() == 0
            assert not page.locator("#download").is_visible()
            assert server.proc.poll() is None

            # ...and a good upload after it works as the first did
            page.locator("#inputs button[aria-label='Clear']").click()
            page.locator("#inputs input[type=file]").set_input_files(str(good_again))
            status.get_by_text("in 1 image").wait_for(timeout=120_000)
            n_again = len(json.loads(expected_again["predictions.json"])["annotations"])
            assert page.locator("#cutouts img").count() == n_again
            with page.expect_download() as download:
                page.locator("#download").click()
            download.value.save_as(tmp_path / "again.zip")
            assert _zip_contents(tmp_path / "again.zip") == expected_again
            browser.close()

        # two batches kept, the broken one left nothing; no temporary file anywhere
        assert len(list((workspace / "jobs").iterdir())) == 2
        assert _temp_files(workspace) == []
    finally:
        code = server.stop()
    assert code == 0, "\n".join(server.lines)
    assert not workspace.exists(), "stopping the server removes its uploads and results"
    hosts = {r.split("/")[2] for r in requests if r.startswith(("http:", "https:", "ws:", "wss:"))}
    assert hosts == {f"127.0.0.1:{port}"}, sorted(r for r in requests if f"127.0.0.1:{port}" not in r)
    assert net_log.read_text() == "", "the server tried to reach the network"
