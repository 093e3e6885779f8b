"""Official weights: registry, default model, verify, and download (offline failure; resume against a local
HTTP server on 127.0.0.1; nothing is ever fetched from the internet)."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import run_cli as cli

from animeseg import weights as W
from animeseg.errors import AnimesegError, MissingWeightsError

# The real socket functions, taken before the autouse fixture in conftest.py blocks them for each test.
_REAL_GETADDRINFO = socket.getaddrinfo
_REAL_CREATE_CONNECTION = socket.create_connection
_REAL_CONNECT = socket.socket.connect


# ------------------------------------------------------------------------------------------------ registry
def test_registry_is_complete_and_well_formed():
    pinned = ["yolov8n-seg", "yolov8s-seg", "yolov8m-seg", "sam_vit_b", "sam_vit_l", "sam_vit_h"]
    light = ["mobile_sam", "sam2.1_t", "sam2.1_s", "sam2.1_b", "sam2.1_l"]
    torchvision = ["maskrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn"]
    assert list(W.OFFICIAL) == pinned + light + torchvision
    for w in W.OFFICIAL.values():
        if w.name in pinned:
            assert w.sha256 and W.is_sha256(w.sha256) and w.size and w.size > 1_000_000
        elif w.name in torchvision:  # the digest prefix torchvision publishes in the file name
            assert w.kind == "maskrcnn" and w.size is None and w.filename.endswith(f"-{w.sha256}.pth")
            assert len(w.sha256) == 8 and w.url == f"https://download.pytorch.org/models/{w.filename}"
        else:  # no digest published: marked unverified, nothing to check a download against
            assert w.sha256 is None and w.size is None and "unverified" in w.digest_source and w.kind == "sam"
        assert all(u.startswith("https://") and u.endswith("/" + w.filename) for u in w.urls)
    assert W.OFFICIAL["sam2.1_t"].filename == "sam2.1_hiera_tiny.pt"
    assert W.OFFICIAL["sam_vit_b"].filename == "sam_vit_b_01ec64.pth"
    assert W.OFFICIAL["yolov8m-seg"].url.endswith("/v8.4.0/yolov8m-seg.pt")


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("yolov8m-seg", "yolov8m-seg"),
        ("yolov8s-seg.pt", "yolov8s-seg"),
        ("weights/yolov8n-seg.pt", "yolov8n-seg"),
        ("sam_vit_b", "sam_vit_b"),
        ("vit_l", "sam_vit_l"),
        ("sam_vit_h_4b8939.pth", "sam_vit_h"),
        ("SAM_VIT_B", "sam_vit_b"),
        ("mobile_sam", "mobile_sam"),
        ("sam2.1_hiera_tiny.pt", "sam2.1_t"),
        ("sam2.1_l", "sam2.1_l"),
    ],
)
def test_find_accepts_names_and_file_names(alias, name):
    assert W.find(alias).name == name


def test_find_rejects_unknown_names():
    with pytest.raises(AnimesegError, match="unknown weights 'yolov9-seg'; known: yolov8n-seg"):
        W.find("yolov9-seg")


# ------------------------------------------------------------------------------------------------ default model
def test_default_model_prefers_animeseg_trained_weights(tmp_path):
    packaged = W.packaged_model("onnx")
    assert W.default_model(tmp_path) == packaged
    official = tmp_path / "yolov8m-seg.pt"
    official.write_bytes(b"x")
    assert W.default_model(tmp_path) == packaged  # a COCO file is used only when named with --model
    (tmp_path / "lonely.pt").write_bytes(b"x")  # no sidecar: not animeseg-trained
    assert W.default_model(tmp_path) == packaged
    older = tmp_path / "anime-a.pt"
    older.write_bytes(b"x")
    (tmp_path / "anime-a.json").write_text("{}")
    newer = tmp_path / "anime-b.pt"
    newer.write_bytes(b"x")
    (tmp_path / "anime-b.json").write_text("{}")
    os.utime(older, (time.time() - 100, time.time() - 100))
    assert W.default_model(tmp_path) == newer
    assert W.trained_weights(tmp_path) == [newer, older]


def test_weights_folders_searched(tmp_path, monkeypatch):
    project, here, env = tmp_path / "project", tmp_path / "here", tmp_path / "env"
    for d in (project / "weights", here / "weights", env):
        d.mkdir(parents=True)
    monkeypatch.setattr(W, "WEIGHTS_DIR", project / "weights")
    monkeypatch.delenv("ANIMESEG_WEIGHTS", raising=False)
    monkeypatch.chdir(here)
    assert W.search_dirs() == [project / "weights", Path("weights").resolve()]
    # `animeseg train` run from another folder leaves its weights in ./weights: predict finds them
    trained = here / "weights" / "animeseg-run1.pt"
    trained.write_bytes(b"x")
    trained.with_suffix(".json").write_text("{}")
    (project / "weights" / "yolov8m-seg.pt").write_bytes(b"x")
    assert W.default_model() == trained
    # $ANIMESEG_WEIGHTS is the one folder when set (downloads go there too)
    monkeypatch.setenv("ANIMESEG_WEIGHTS", str(env))
    assert W.search_dirs() == [env] and W.weights_dir() == env
    # no animeseg-trained weights there (an official COCO file does not count): the packaged anime model
    (env / "yolov8m-seg.pt").write_bytes(b"x")
    assert W.default_model() == W.packaged_model("onnx")
    monkeypatch.setattr(W, "PACKAGED_DIR", tmp_path / "broken-install")
    with pytest.raises(MissingWeightsError, match="packaged model is missing"):
        W.default_model()


def test_default_sam_picks_an_official_file(tmp_path):
    assert W.default_sam(tmp_path) is None
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    assert W.default_sam(tmp_path) == tmp_path / "sam_vit_b_01ec64.pth"
    (tmp_path / "sam_vit_l_0b3195.pth").write_bytes(b"x")
    assert W.default_sam(tmp_path) == tmp_path / "sam_vit_l_0b3195.pth"


# ------------------------------------------------------------------------------------------------ verify
def test_verify_against_a_known_digest(tmp_path, capsys):
    data = b"animeseg test weights\n" * 1000
    digest = hashlib.sha256(data).hexdigest()
    f = tmp_path / "model.pt"
    f.write_bytes(data)
    assert W.sha256_file(f, chunk=1000) == digest
    assert W.verify(f, digest.upper()).ok is True
    assert W.verify(f, "0" * 64).ok is False
    assert W.verify(f, None).ok is None

    code, err = cli(capsys, "weights", "verify", str(f), "--sha256", digest)
    assert code == 0 and digest in err
    code, err = cli(capsys, "weights", "verify", str(f), "--sha256", "f" * 64)
    assert code == 1 and "does not match" in err and len(err.strip().splitlines()) == 1
    code, err = cli(capsys, "weights", "verify", str(f), "--sha256", "nothex")
    assert code == 2
    code, err = cli(capsys, "weights", "verify", str(f))
    assert code == 2 and "not an official file name" in err


def test_verify_official_files_in_a_folder(tmp_path, capsys):
    code, err = cli(capsys, "weights", "verify", "--dir", str(tmp_path))
    assert code == 0 and "nothing to verify" in err
    fake = tmp_path / "yolov8n-seg.pt"
    fake.write_bytes(b"not the real file")
    code, err = cli(capsys, "weights", "verify", "--dir", str(tmp_path))
    assert code == 1
    assert f"{fake}: SHA-256 {hashlib.sha256(b'not the real file').hexdigest()} does not match" in err
    code, err = cli(capsys, "weights", "verify", "yolov8n-seg.pt", "--dir", str(tmp_path))
    assert code == 1
    code, err = cli(capsys, "weights", "verify", str(tmp_path / "sam_vit_b_01ec64.pth"))
    assert code == 1 and "model file not found" in err


def test_list_shows_every_file_digest_and_status(tmp_path, capsys):
    (tmp_path / "yolov8n-seg.pt").write_bytes(b"x" * W.OFFICIAL["yolov8n-seg"].size)
    (tmp_path / "sam_vit_b_01ec64.pth.part").write_bytes(b"x")
    code, err = cli(capsys, "weights", "list", "--dir", str(tmp_path))
    assert code == 0
    for w in W.OFFICIAL.values():
        if w.kind == "maskrcnn":
            assert f"{w.sha256 + ' (published prefix)':64}  {w.filename}" in err
            continue
        assert f"{w.sha256 or 'not published':64}  {w.filename}" in err  # full digests, sha256sum format
    assert "present" in err and "partial download" in err and "missing" in err
    assert "Ultralytics publishes no digest" in err
    assert "mobile_sam, sam2.1_t, sam2.1_s, sam2.1_b, sam2.1_l: no digest published by the authors: unverified" in err


# ------------------------------------------------------------------------------------------------ download
def test_download_offline_fails_in_one_line(tmp_path, capsys, network_attempts):
    code, err = cli(capsys, "weights", "download", "yolov8n-seg", "--dir", str(tmp_path))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    url = W.OFFICIAL["yolov8n-seg"].url
    assert f"fetch {url} by hand and save it as {tmp_path / 'yolov8n-seg.pt'}" in lines[0]
    assert network_attempts()  # it did try (this is the one command allowed to)
    assert not (tmp_path / "yolov8n-seg.pt").exists()
    code, err = cli(capsys, "weights", "download", "--dir", str(tmp_path))
    assert code == 2  # nothing named


class _Server:
    """A local HTTP server for one file that honours Range requests; it can cut the first response short."""

    def __init__(self, data: bytes, cut_after: int | None = None, ranges: bool = True):
        self.data, self.cut_after, self.ranges = data, cut_after, ranges
        self.requests: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append(rng)
                start = 0
                if rng and server.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(server.data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                else:
                    self.send_response(200)
                body = server.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    cut, server.cut_after = server.cut_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model.pt"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def loopback(monkeypatch):
    """Allow connections to 127.0.0.1 only (the conftest blocks every connection)."""

    def local(host) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise OSError(f"network blocked in tests: {host}")

    def getaddrinfo(host, *a, **k):
        local(host)
        return _REAL_GETADDRINFO(host, *a, **k)

    def create_connection(address, *a, **k):
        local(address[0])
        return _REAL_CREATE_CONNECTION(address, *a, **k)

    def connect(self, address):
        if self.family != socket.AF_UNIX:
            local(address[0])
        return _REAL_CONNECT(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket.socket, "connect", connect)


def _entry(url: str, data: bytes, **kw) -> W.OfficialWeights:
    base = W.OFFICIAL["yolov8n-seg"]
    return replace(base, urls=(url,), sha256=hashlib.sha256(data).hexdigest(), size=len(data), **kw)


def test_download_resumes_a_cut_transfer_and_verifies(tmp_path, loopback):
    data = os.urandom(300_000)
    server = _Server(data, cut_after=120_000)
    try:
        entry = _entry(server.url, data)
        seen: list[tuple[int | None, int]] = []
        with pytest.raises(W.DownloadError, match="run again to resume"):
            W.download(entry, tmp_path, on_start=lambda t, h: seen.append((t, h)), chunk=16_384)
        part = tmp_path / "yolov8n-seg.pt.part"
        assert part.is_file() and 0 < part.stat().st_size < len(data)
        have = part.stat().st_size
        assert not (tmp_path / "yolov8n-seg.pt").exists()

        got = []
        path = W.download(entry, tmp_path, on_start=lambda t, h: seen.append((t, h)), on_bytes=got.append)
        assert path == tmp_path / "yolov8n-seg.pt" and path.read_bytes() == data
        assert not part.exists()
        assert server.requests == [None, f"bytes={have}-"]  # the second request only asked for the rest
        assert seen[-1] == (len(data), have) and sum(got) == len(data) - have

        # already there and verified: no request at all
        W.download(entry, tmp_path)
        assert len(server.requests) == 2
    finally:
        server.close()


def test_download_restarts_when_the_server_ignores_range(tmp_path, loopback):
    data = os.urandom(50_000)
    server = _Server(data, ranges=False)
    try:
        (tmp_path / "yolov8n-seg.pt.part").write_bytes(data[:1000])
        path = W.download(_entry(server.url, data), tmp_path)
        assert path.read_bytes() == data and server.requests == ["bytes=1000-"]
    finally:
        server.close()


def test_download_with_a_wrong_digest_installs_nothing(tmp_path, loopback, capsys, monkeypatch):
    data = os.urandom(20_000)
    server = _Server(data)
    try:
        entry = replace(_entry(server.url, data), sha256="0" * 64)
        monkeypatch.setitem(W.OFFICIAL, "yolov8n-seg", entry)
        code, err = cli(capsys, "weights", "download", "yolov8n-seg", "--dir", str(tmp_path))
        assert code == 1
        assert f"SHA-256 {hashlib.sha256(data).hexdigest()} does not match the expected {'0' * 64}" in err
        assert server.url in err and len(err.strip().splitlines()) == 1
        assert sorted(os.listdir(tmp_path)) == []
    finally:
        server.close()


def test_download_command_shows_progress_and_verifies(tmp_path, loopback, capsys, monkeypatch):
    data = os.urandom(40_000)
    server = _Server(data)
    try:
        monkeypatch.setitem(W.OFFICIAL, "yolov8n-seg", _entry(server.url, data))
        monkeypatch.setenv("ANIMESEG_PROGRESS", "1")
        code, err = cli(capsys, "weights", "download", "yolov8n-seg", "--dir", str(tmp_path))
        assert code == 0, err
        assert "sha256 verified" in err and "yolov8n-seg" in err
        assert (tmp_path / "yolov8n-seg.pt").read_bytes() == data
        code, err = cli(capsys, "weights", "verify", "--dir", str(tmp_path))
        assert code == 0 and "ok yolov8n-seg" in err
    finally:
        server.close()


def test_download_of_an_unverified_file_says_so_and_keeps_it(tmp_path, loopback, capsys, monkeypatch):
    data = os.urandom(30_000)
    server = _Server(data)
    try:
        entry = replace(W.OFFICIAL["mobile_sam"], urls=(server.url,))
        monkeypatch.setitem(W.OFFICIAL, "mobile_sam", entry)
        code, err = cli(capsys, "weights", "download", "mobile_sam", "--dir", str(tmp_path))
        assert code == 0, err
        digest = hashlib.sha256(data).hexdigest()
        assert f"no published digest, unverified: sha256 {digest}" in err and "sha256 verified" not in err
        assert (tmp_path / "mobile_sam.pt").read_bytes() == data
        asked = len(server.requests)  # a second download keeps the file: nothing to check it against or fetch
        code, err = cli(capsys, "weights", "download", "mobile_sam", "--dir", str(tmp_path))
        assert code == 0 and len(server.requests) == asked and (tmp_path / "mobile_sam.pt").read_bytes() == data
    finally:
        server.close()


def test_other_commands_never_download(tmp_path, capsys, network_attempts, monkeypatch):
    monkeypatch.setattr(W, "WEIGHTS_DIR", tmp_path)
    monkeypatch.delenv("ANIMESEG_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    # no --model: the packaged model segments; the empty file is one bad input, and nothing is fetched
    code, err = cli(capsys, "predict", str(img), "--out", str(tmp_path / "out"))
    assert code == 1 and "a.png" in err
    assert network_attempts() == []
    assert Path(tmp_path).joinpath("yolov8m-seg.pt").exists() is False
    monkeypatch.setattr(W, "PACKAGED_DIR", tmp_path / "broken-install")
    code, err = cli(capsys, "predict", str(img), "--out", str(tmp_path / "out2"))
    assert code == 2 and "no --model given" in err and "--model PATH" in err
    assert not (tmp_path / "out2").exists() and network_attempts() == []
