"""File input and output shared by every stage: robust image reading and atomic writes.

Every write goes to a temporary file in the destination folder and is renamed into place, so an interrupted run
never leaves a half-written file behind and a resumed run can trust any file it finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from animeseg._lazy import cv2
from animeseg.errors import InputError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif")

#: Largest image we decode (pixels); bigger files are refused rather than exhausting memory.
MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit, made an error instead of a warning
MIN_SIDE = 2


#: Suffixes of PyTorch checkpoint files (YOLO, Mask R-CNN and SAM weights).
TORCH_EXTS = (".pt", ".pth", ".ckpt")


def torch_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be a PyTorch checkpoint, read from its first bytes (None when it may be one).

    ``torch.save`` writes a zip archive (legacy files: a pickle, first byte 0x80); anything else (a text file, an
    image renamed .pt) would fail deep inside the unpickler with an opaque ``KeyError``.
    """
    import zipfile

    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    if not head:
        return "file is empty"
    if head[:1] == b"\x80" or zipfile.is_zipfile(path):
        return None
    return "not a PyTorch checkpoint (torch.save writes a zip archive; this file is something else)"


# --------------------------------------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    The temporary name keeps the suffix so libraries that pick a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; outputs should get the usual permissions (0666 less the umask).
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON atomically (compact by default: these files get large)."""
    seps = (",", ":") if indent is None else (",", ": ")
    return write_text(path, json.dumps(obj, indent=indent, separators=seps, ensure_ascii=False) + "\n")


def encode_image(image: np.ndarray, ext: str, quality: int = 95) -> bytes:
    """Encode an RGB(A) or greyscale uint8 array to the format named by ``ext`` (".png", ".jpg", ...)."""
    arr = np.ascontiguousarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    params: list[int] = []
    if ext.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif ext.lower() == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    try:
        ok, buf = cv2.imencode(ext, arr, params)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode image as {ext}")
    return buf.tobytes()


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> Path:
    """Write an RGB, RGBA or greyscale uint8 array atomically; the format follows the suffix."""
    path = Path(path)
    return write_bytes(path, encode_image(image, path.suffix or ".png", quality))


# --------------------------------------------------------------------------------------------------- reading
def _pil_open(path: Path) -> Image.Image:
    """Pillow's own ``Image.open``: Ultralytics replaces it with one that tries to pip-install pi-heif on any
    unrecognised file, which is a network call and an ImportError offline."""
    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open)(path)


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not an image")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror})") from None
    if size == 0:
        raise InputError(path, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = _pil_open(path)
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise InputError(path, f"image too large ({w}x{h} pixels, limit {MAX_PIXELS:,})")
            im.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(path, "image too large (decompression-bomb limit)") from None
    except UnidentifiedImageError:
        raise InputError(path, "not an image (unrecognised format)") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as e:
        raise InputError(path, f"corrupt or truncated image ({e})") from None
    except (ValueError, SyntaxError) as e:  # Pillow plug-ins raise these on malformed headers
        raise InputError(path, f"corrupt image ({e})") from None
    if min(im.size) < MIN_SIDE:
        raise InputError(path, f"image too small ({im.size[0]}x{im.size[1]})")
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        return im  # a broken EXIF block should not cost the picture


def _to_8bit(im: Image.Image) -> Image.Image:
    """Bring 16-bit and float modes down to 8 bits per channel by range, not by clipping."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return im


def read_image(path: str | Path) -> np.ndarray:
    """Read any common image as upright RGB uint8, shape (H, W, 3).

    EXIF orientation is applied; palette, greyscale, CMYK, 16-bit and alpha images are converted (transparent
    pixels are composited on white, which is how art with alpha is shown). Raises :class:`InputError` with a
    one-line reason for anything that is not a readable image.
    """
    path = Path(path)
    im = _to_8bit(_open(path))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def read_rgba(path: str | Path) -> np.ndarray:
    """Read an image as upright RGBA uint8, shape (H, W, 4); images without alpha get an opaque channel."""
    path = Path(path)
    im = _to_8bit(_open(path))
    return np.ascontiguousarray(np.asarray(im.convert("RGBA"), dtype=np.uint8))


def read_mask(path: str | Path, threshold: int = 127) -> np.ndarray:
    """Read a mask image as bool (H, W): greyscale/binary above ``threshold``; RGBA masks use their alpha."""
    path = Path(path)
    im = _to_8bit(_open(path))
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        if rgba[..., 3].min() < 255:
            return rgba[..., 3] > threshold
    return np.asarray(im.convert("L")) > threshold


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image, upright (EXIF applied), without decoding all pixels where possible."""
    path = Path(path)
    try:
        with _pil_open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return read_image(path).shape[1::-1]
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def list_files(root: str | Path, exts: tuple[str, ...] = IMAGE_EXTS, recursive: bool = True) -> list[Path]:
    """Files under ``root`` with one of ``exts`` (case-insensitive), sorted for reproducibility.

    Hidden files and our own temporary files are skipped; a folder named like an image is not a file and is
    skipped too (the caller sees it only if it names it directly).
    """
    root = Path(root)
    pattern = "**/*" if recursive else "*"
    out = [
        p
        for p in root.glob(pattern)
        if p.suffix.lower() in exts
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(out)
