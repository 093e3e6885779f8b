"""Model files: the official checkpoints animeseg knows, where they live, and how they are fetched and checked.

Nothing here touches the network except :func:`download`, which only ``animeseg weights download`` calls. Every
other command finds its models on disk (``weights/`` by default) and fails with one line saying how to get them.

Digests: the SAM SHA-256 values are the ones pinned for Meta's published files by many independent projects
(micro_sam, 3D Slicer's SlicerSegmentAnything, ...), with the published byte sizes. Ultralytics publishes no
digest for its YOLOv8 files; the values below are those of the official ``yolov8{n,s,m}-seg.pt`` as found
identically in several independent mirrors (Hugging Face LFS records). The light SAM family (MobileSAM, SAM 2.1)
comes with no published digest: those entries are marked unverified and their downloads installed unchecked.
torchvision publishes the first 8 hex digits of each file's SHA-256 in its name
(``maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth``) and ``torch.hub`` checks that prefix; the Mask R-CNN starting
points are held to the same prefix. ``animeseg weights list`` says which is which. A download whose digest
differs is never installed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from animeseg.errors import AnimesegError, MissingWeightsError

_YOLO_RELEASES = ("v8.4.0", "v0.0.0")  # the release Ultralytics 8.4 uses, then the one that first published them
_YOLO_URL = "https://github.com/ultralytics/assets/releases/download/{release}/{file}"
_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/{file}"

_MIRRORS = "agreed by independent mirrors of the official file (Ultralytics publishes no digest)"
_SAM_PINS = "Meta's published file, digest pinned by independent projects"
_UNVERIFIED = "no digest published by the authors: unverified (`animeseg weights verify` shows what you got)"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{file}"
_MOBILE_SAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
_TORCHVISION_URL = "https://download.pytorch.org/models/{file}"
_TORCHVISION_PREFIX = "torchvision's published digest prefix (in its file name; torch.hub checks the same)"


@dataclass(frozen=True)
class OfficialWeights:
    """One official checkpoint: its short name, file name, where to get it and what it must hash to."""

    name: str
    filename: str
    kind: str  # "yolo", "sam" or "maskrcnn"
    urls: tuple[str, ...]
    sha256: str | None  # the full digest, or the prefix a publisher gives (torchvision: 8+ hex digits)
    size: int | None
    digest_source: str
    description: str

    @property
    def url(self) -> str:
        """The first (preferred) address."""
        return self.urls[0]


def _yolo(name: str, sha256: str, size: int, description: str) -> OfficialWeights:
    file = f"{name}.pt"
    urls = tuple(_YOLO_URL.format(release=r, file=file) for r in _YOLO_RELEASES)
    return OfficialWeights(name, file, "yolo", urls, sha256, size, _MIRRORS, description)


def _sam(name: str, file: str, sha256: str, size: int, description: str) -> OfficialWeights:
    return OfficialWeights(name, file, "sam", (_SAM_URL.format(file=file),), sha256, size, _SAM_PINS, description)


def _light(name: str, file: str, url: str, description: str) -> OfficialWeights:
    """A light-family SAM file: its authors publish neither digest nor size, so neither is checked."""
    return OfficialWeights(name, file, "sam", (url,), None, None, _UNVERIFIED, description)


def _torchvision(name: str, file: str, description: str) -> OfficialWeights:
    """A torchvision COCO checkpoint: its file name carries the first hex digits of its SHA-256."""
    prefix = re.search(r"-([0-9a-f]{8,})\.pth$", file).group(1)
    urls = (_TORCHVISION_URL.format(file=file),)
    return OfficialWeights(name, file, "maskrcnn", urls, prefix, None, _TORCHVISION_PREFIX, description)


#: The official files, in the order ``weights list`` shows them.
OFFICIAL: dict[str, OfficialWeights] = {
    w.name: w
    for w in (
        _yolo(
            "yolov8n-seg",
            "d39e867b2c3a5dbc1aa764411544b475cb14727bf6af1ec46c238f8bb1351ab9",
            7_054_355,
            "YOLOv8n-seg, COCO (fastest)",
        ),
        _yolo(
            "yolov8s-seg",
            "c035c6c5f9c48ee962518ef648854c2cc5e60fa404fac443e17d306fdda16543",
            23_897_299,
            "YOLOv8s-seg, COCO",
        ),
        _yolo(
            "yolov8m-seg",
            "f9fc740ca0824e14b44681d491dc601efa664ec6ecea9a870acf876053826448",
            54_899_779,
            "YOLOv8m-seg, COCO (train's default starting point)",
        ),
        _sam(
            "sam_vit_b",
            "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375_042_383,
            "Segment Anything ViT-B (fastest on CPU)",
        ),
        _sam(
            "sam_vit_l",
            "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            1_249_524_607,
            "Segment Anything ViT-L",
        ),
        _sam(
            "sam_vit_h",
            "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            2_564_550_879,
            "Segment Anything ViT-H (best, slowest)",
        ),
        _light("mobile_sam", "mobile_sam.pt", _MOBILE_SAM_URL, "MobileSAM: SAM's decoder, a 5M TinyViT encoder"),
        *(
            _light(
                f"sam2.1_{size[0]}",
                f"sam2.1_hiera_{size}.pt",
                _SAM2_URL.format(file=f"sam2.1_hiera_{size}.pt"),
                f"SAM 2.1 Hiera {label}",
            )
            for size, label in (("tiny", "tiny (CPU)"), ("small", "small"), ("base_plus", "base+"), ("large", "large"))
        ),
        _torchvision(
            "maskrcnn_resnet50_fpn_v2",
            "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
            "Mask R-CNN ResNet-50-FPN v2, COCO (train --arch maskrcnn)",
        ),
        _torchvision(
            "fasterrcnn_mobilenet_v3_large_fpn",
            "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
            "Faster R-CNN MobileNetV3-Large FPN, COCO: start of --backbone mobilenet_v3_large_fpn (mask head new)",
        ),
    )
}

#: The COCO checkpoint each Mask R-CNN backbone starts from (``animeseg.maskrcnn.model.BACKBONES``).
MASKRCNN_PRETRAINED = {
    "resnet50_fpn_v2": "maskrcnn_resnet50_fpn_v2",
    "mobilenet_v3_large_fpn": "fasterrcnn_mobilenet_v3_large_fpn",
}

#: The model that ships inside the package (see docs/model.md): an fp32 ONNX for CPU inference and the
#: checkpoint it was exported from, for fine-tuning and export. Used when no --model is given and no
#: animeseg-trained weights are in the weights folder.
PACKAGED_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_NAME = "anime-yolov8n-seg"


def _default_weights_dir() -> Path:
    """``weights/`` of the source checkout animeseg runs from, else ``./weights``."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file() and (repo / "weights").is_dir():
        return repo / "weights"
    return Path.cwd() / "weights"


#: A fixed weights folder that replaces the default one (tests and embedding applications set it); None: the
#: default, worked out at each call (the working directory may change after import).
WEIGHTS_DIR: Path | None = None


def weights_dir(path: str | Path | None = None) -> Path:
    """The weights folder downloads go to: ``path`` when given, else ``$ANIMESEG_WEIGHTS``, else
    :data:`WEIGHTS_DIR` when set, else ``weights/`` of the source checkout or of the working directory."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("ANIMESEG_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return WEIGHTS_DIR if WEIGHTS_DIR is not None else _default_weights_dir()


def search_dirs(path: str | Path | None = None) -> list[Path]:
    """Folders searched for models: ``path`` alone when given; else :func:`weights_dir` and, when different,
    ``./weights`` (where ``animeseg train`` run from elsewhere leaves its weights)."""
    first = weights_dir(path)
    if path is not None or os.environ.get("ANIMESEG_WEIGHTS"):
        return [first]
    dirs = [first]
    local = Path.cwd() / "weights"
    if local.resolve() != first.resolve():
        dirs.append(local)
    return dirs


# ------------------------------------------------------------------------------------------------ lookup
def find(name: str) -> OfficialWeights:
    """The official entry for ``name``: ``yolov8m-seg``, ``yolov8m-seg.pt``, ``sam_vit_b``, ``vit_b`` or the file
    name ``sam_vit_b_01ec64.pth``. Raises :class:`AnimesegError` listing the known names otherwise."""
    key = Path(str(name)).name.lower()
    for w in OFFICIAL.values():
        if key in (w.name, w.filename, w.name.removeprefix("sam_"), Path(w.filename).stem):
            return w
    raise AnimesegError(f"unknown weights {name!r}; known: {', '.join(OFFICIAL)}")


def official_path(entry: OfficialWeights | str, directory: str | Path | None = None) -> Path:
    """Where an official file lives (or would live) in the weights folder."""
    entry = find(entry) if isinstance(entry, str) else entry
    return weights_dir(directory) / entry.filename


def trained_weights(directory: str | Path | None = None) -> list[Path]:
    """animeseg-trained weights (``NAME.pt``/``NAME.onnx`` with a ``NAME.json`` sidecar, as ``animeseg train``
    leaves them) in the searched folders (see :func:`search_dirs`), newest first."""
    found = [
        p
        for root in search_dirs(directory)
        if root.is_dir()
        for p in root.iterdir()
        if p.suffix in (".pt", ".onnx") and p.is_file() and p.with_suffix(".json").is_file()
    ]
    return sorted(found, key=lambda p: (-p.stat().st_mtime, p.name))


def find_official(name: str, directory: str | Path | None = None) -> Path | None:
    """An official file in the searched folders (see :func:`search_dirs`), or None."""
    for root in search_dirs(directory):
        path = official_path(name, root)
        if path.is_file():
            return path
    return None


def packaged_model(form: str = "onnx") -> Path:
    """The packaged default model: ``onnx`` (CPU inference) or ``pt`` (the checkpoint, for training/export)."""
    return PACKAGED_DIR / f"{DEFAULT_NAME}.{form}"


def model_settings(model: str | Path) -> dict[str, float]:
    """Default ``imgsz``, ``conf`` and NMS ``iou`` for ``model``, from its sidecar
    (:func:`animeseg.settings.model_defaults`): the packaged model's were chosen by measurement on held-out art
    (docs/model.md); others keep Ultralytics'."""
    from animeseg.settings import model_defaults

    detect = model_defaults(model).detect
    return {"imgsz": detect.imgsz, "conf": detect.conf, "iou": detect.iou}


def example_image() -> Path:
    """The example image of a source checkout (three Ren'Py tutorial sprites on a meadow, MIT)."""
    return Path(__file__).resolve().parents[1] / "examples" / "renpy-meadow.jpg"


def default_model(directory: str | Path | None = None) -> Path:
    """The model ``predict`` uses without ``--model``: the newest animeseg-trained weights in
    :func:`search_dirs`, else the packaged anime model. Never downloads."""
    trained = trained_weights(directory)
    if trained:
        return trained[0]
    packaged = packaged_model()
    if packaged.is_file():
        return packaged
    raise MissingWeightsError(
        packaged,
        "no --model given, no animeseg-trained weights and the packaged model is missing (a broken install?): "
        "reinstall animeseg or pass --model PATH",
    )


def default_sam(directory: str | Path | None = None) -> Path | None:
    """An official SAM checkpoint in the searched folders (the largest ViT model if several, else the largest
    light one), else None."""
    for name in ("sam_vit_h", "sam_vit_l", "sam_vit_b", "sam2.1_l", "sam2.1_b", "sam2.1_s", "sam2.1_t", "mobile_sam"):
        path = find_official(name, directory)
        if path is not None:
            return path
    return None


# ------------------------------------------------------------------------------------------------ hashing
def sha256_file(path: str | Path, on_bytes: Callable[[int], None] | None = None, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks; ``on_bytes(n)`` is called after each chunk (for progress)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return digest.hexdigest()


def is_sha256(text: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]{64}", text or "") is not None


@dataclass
class Verification:
    """Outcome of checking one file: ``ok`` is None when there is no digest to check against."""

    path: Path
    expected: str | None
    actual: str
    ok: bool | None


def verify(path: str | Path, expected: str | None, on_bytes: Callable[[int], None] | None = None) -> Verification:
    """Hash ``path`` and compare with ``expected`` (hex, any case; a published prefix must start the digest).
    Missing files raise MissingWeightsError."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(path)
    actual = sha256_file(path, on_bytes)
    ok = None if not expected else actual.startswith(expected.lower())
    return Verification(path, expected.lower() if expected else None, actual, ok)


# ------------------------------------------------------------------------------------------------ download
def part_path(dest: Path) -> Path:
    """Where the bytes of an unfinished download of ``dest`` are kept."""
    return dest.with_name(dest.name + ".part")


def manual_hint(entry: OfficialWeights, dest: Path) -> str:
    return f"fetch {entry.url} by hand and save it as {dest}"


def download(
    entry: OfficialWeights | str,
    directory: str | Path | None = None,
    *,
    on_start: Callable[[int | None, int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    timeout: float = 30.0,
    chunk: int = 1 << 20,
) -> Path:
    """Fetch an official file into the weights folder, resuming a ``.part`` file left by an earlier attempt
    (HTTP Range), then check its SHA-256 and move it into place. Returns the final path.

    A file already present with the right digest is kept as is. ``on_start(total, already)`` is called once per
    attempt with the full size (None if unknown) and the bytes already on disk, ``on_bytes(n)`` for each chunk.
    Without network it raises one :class:`AnimesegError` line naming the address to fetch by hand and where to
    put the file. A digest mismatch removes the bad download and raises.
    """
    entry = find(entry) if isinstance(entry, str) else entry
    dest = official_path(entry, directory)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (entry.sha256 is None or verify(dest, entry.sha256).ok):
        return dest  # an unverified file cannot be checked, so one already there is kept
    part = part_path(dest)
    errors: list[str] = []
    for url in entry.urls:
        try:
            _fetch(url, part, entry.size, on_start, on_bytes, timeout, chunk)
        except _FetchError as e:
            errors.append(f"{url}: {e}")
            continue
        check = verify(part, entry.sha256)
        if check.ok is False:
            part.unlink(missing_ok=True)
            errors.append(f"{url}: SHA-256 {check.actual} does not match the expected {check.expected}")
            continue
        os.replace(part, dest)
        return dest
    offline = [e for e in errors if "no connection" in e]
    reasons = offline[0] if len(offline) == len(errors) else "; ".join(errors)
    raise DownloadError(f"cannot download {entry.name} ({reasons}); {manual_hint(entry, dest)}")


class DownloadError(AnimesegError):
    """A download that could not complete (no network, server error, wrong digest)."""

    exit_code = 1


class _FetchError(Exception):
    pass


def _fetch(
    url: str,
    part: Path,
    size: int | None,
    on_start: Callable[[int | None, int], None] | None,
    on_bytes: Callable[[int], None] | None,
    timeout: float,
    chunk: int,
) -> None:
    """Complete ``part`` from ``url``, continuing from its current length when the server honours Range."""
    have = part.stat().st_size if part.is_file() else 0
    if size is not None and have > size:  # not a prefix of the file we want: start again
        part.unlink()
        have = 0
    if size is not None and have == size:
        if on_start:
            on_start(size, have)
        return
    request = urllib.request.Request(url, headers={"User-Agent": "animeseg"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (https/http addresses only)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part is complete (the digest decides)
            if on_start:
                on_start(have, have)
            return
        raise _FetchError(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise _FetchError(f"no connection ({reason})") from None
    with response:
        status = getattr(response, "status", 200)
        if status != 206:  # server sent the whole file: restart from zero
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        if on_start:
            on_start(total, have)
        mode = "ab" if have else "wb"
        try:
            with open(part, mode) as f:
                while block := response.read(chunk):
                    f.write(block)
                    if on_bytes:
                        on_bytes(len(block))
        except (OSError, http.client.HTTPException) as e:  # dropped: what arrived stays in .part for next time
            raise _FetchError(f"interrupted after {part.stat().st_size:,} bytes ({e}); run again to resume") from None
    got = part.stat().st_size
    if total is not None and got < total:
        raise _FetchError(f"incomplete ({got:,} of {total:,} bytes); run again to resume")
