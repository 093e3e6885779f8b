"""Turn the SOURCES of ``animeseg predict`` into a list of inputs: image files, folders (recursive), globs and
videos (mp4, avi, mkv, webm, mov, animated GIF), each with a name relative to its source root.

Outputs mirror those names under ``--out``, so two ``a.png`` in different folders never collide. Bad inputs
(a missing path, a glob that matches nothing, a folder named like an image) become ``error`` items here rather
than exceptions, so a batch reports them and goes on; unreadable files are found when they are read.
"""

from __future__ import annotations

import glob
import os
import posixpath
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animeseg._lazy import cv2
from animeseg.errors import InputError
from animeseg.io import IMAGE_EXTS, VIDEO_EXTS

#: Video containers read with OpenCV; animated GIFs are read with Pillow.
MOVIE_EXTS = tuple(e for e in VIDEO_EXTS if e != ".gif")
MEDIA_EXTS = tuple(dict.fromkeys(IMAGE_EXTS + VIDEO_EXTS))
_GLOB_CHARS = "*?["


@dataclass
class MediaItem:
    """One input of a prediction run.

    Attributes:
        path: the file (or, for an error item, whatever was named) on disk.
        name: POSIX path relative to its source root (``sub/a.png``); ``file_name`` in predictions.json.
        key: output stem, unique within the run (``sub/a``); outputs are ``<kind folder>/<key>...``.
        kind: ``image``, ``video`` or ``error``.
        error: the one-line reason for an ``error`` item.
        frames: number of frames a video claims to have (None when unknown; 1 for images).
    """

    path: Path
    name: str
    key: str
    kind: str
    error: str | None = None
    frames: int | None = 1

    def frame_name(self, index: int) -> str:
        """``file_name`` of a video frame in predictions.json: ``<video>#<frame>``."""
        return f"{self.name}#{index}"

    def frame_key(self, index: int) -> str:
        """Output stem of a video frame (zero-padded so files sort in frame order)."""
        return f"{self.key}#{index:06d}"


def is_glob(text: str) -> bool:
    return any(c in text for c in _GLOB_CHARS)


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: names are made relative to it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _is_animated_gif(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return bool(getattr(im, "is_animated", False))
    except Exception:
        return False  # read_image will say what is wrong with it


def _video_frame_count(path: Path) -> int | None:
    if path.suffix.lower() == ".gif":
        from PIL import Image

        try:
            with Image.open(path) as im:
                return int(getattr(im, "n_frames", 1))
        except Exception:
            return None
    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
    return n if n > 0 else None


def _kind(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in MOVIE_EXTS:
        return "video"
    if ext == ".gif" and _is_animated_gif(path):
        return "video"
    return "image"


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _scan_folder(root: Path, exclude: Path | None) -> list[tuple[Path, bool]]:
    """(path, is_folder_named_like_media) under ``root`` in path order; hidden entries and ``exclude`` skipped."""
    found: list[tuple[Path, bool]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not _inside(here / d, exclude)]
        found += [(here / d, True) for d in dirnames if Path(d).suffix.lower() in MEDIA_EXTS]
        found += [
            (here / f, False)
            for f in filenames
            if not f.startswith(".") and Path(f).suffix.lower() in MEDIA_EXTS and not _inside(here / f, exclude)
        ]
    return sorted(found, key=lambda t: t[0].relative_to(root).parts)


@dataclass
class _Found:
    path: Path
    root: Path
    error: str | None = None
    name: str | None = None  # as the user typed it (a missing path, a glob that matched nothing)


def _collect(sources: Iterable[str | Path], exclude: Path | None) -> list[_Found]:
    found: list[_Found] = []
    for source in sources:
        text = str(source)
        path = Path(text).expanduser()
        if path.is_dir():
            for p, is_dir in _scan_folder(path, exclude):
                found.append(_Found(p, path, "is a folder, not an image" if is_dir else None))
        elif path.exists() or path.is_symlink():
            found.append(_Found(path, path.parent))
        elif is_glob(text):
            root = _glob_root(text)
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            hits = 0
            for m in matches:
                if m.is_dir():
                    if m.suffix.lower() in MEDIA_EXTS:
                        found.append(_Found(m, root, "is a folder, not an image"))
                        hits += 1
                    continue
                if m.suffix.lower() in MEDIA_EXTS and not _inside(m, exclude):
                    found.append(_Found(m, root))
                    hits += 1
            if not hits:
                found.append(_Found(path, path.parent, "no image or video files match this pattern", text))
        else:
            found.append(_Found(path, path.parent, "no such file or folder", text))
    return found


def _unique(values: list[str]) -> list[bool]:
    """True where a value occurs more than once (case-insensitively: outputs may land on such filesystems)."""
    counts = Counter(v.lower() for v in values)
    return [counts[v.lower()] > 1 for v in values]


def _relname(f: _Found) -> str:
    if f.name is not None:
        return f.name
    try:
        return f.path.relative_to(f.root).as_posix()
    except ValueError:
        return f.path.name


def _root_label(root: Path, index: int) -> str:
    name = root.resolve().name if str(root) not in ("", ".") else Path.cwd().name
    return name or f"source{index}"


def expand_sources(sources: Iterable[str | Path], exclude: str | Path | None = None) -> list[MediaItem]:
    """Every input named by ``sources``, in order, as :class:`MediaItem` records.

    A folder is searched recursively for images and videos (hidden entries skipped); a glob is expanded with
    ``**`` support and names are relative to its fixed leading folder; a file's name is its own file name.
    ``exclude`` (the output folder) is never read as input. The same file named twice is listed once. Names
    that would collide get their source root's folder name in front; output keys drop the extension unless two
    inputs differ only by it (``a.png`` and ``a.jpg`` give ``a_png`` and ``a_jpg``).
    """
    exclude_path = Path(exclude).resolve() if exclude is not None else None
    seen: set[Path] = set()
    found: list[_Found] = []
    for f in _collect(sources, exclude_path):
        if f.error is None:
            real = f.path.resolve()
            if real in seen:
                continue
            seen.add(real)
        found.append(f)

    names = [_relname(f) for f in found]
    clash = _unique(names)
    roots: dict[Path, int] = {}
    for i, f in enumerate(found):
        if clash[i]:
            idx = roots.setdefault(f.root.resolve(), len(roots))
            names[i] = f"{_root_label(f.root, idx)}/{names[i]}"
    clash = _unique(names)
    for i, f in enumerate(found):  # same folder name on both sides: number the roots
        if clash[i]:
            names[i] = f"{roots.setdefault(f.root.resolve(), len(roots))}-{names[i]}"

    split = [posixpath.splitext(n) for n in names]  # names are POSIX paths
    keys = [stem for stem, _ in split]
    clash = _unique(keys)
    for i, (stem, ext) in enumerate(split):
        if clash[i] and ext:
            keys[i] = f"{stem}_{ext[1:]}"

    items = []
    for f, name, key in zip(found, names, keys, strict=True):
        if f.error is not None:
            items.append(MediaItem(f.path, name, key, "error", f.error, frames=None))
            continue
        kind = _kind(f.path) if f.path.is_file() else "image"
        frames = _video_frame_count(f.path) if kind == "video" else 1
        items.append(MediaItem(f.path, name, key, kind, None, frames))
    return items


# ------------------------------------------------------------------------------------------------ video frames
def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not a video")
    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror})") from None
    if not head:
        raise InputError(path, "empty file")


def video_fps(path: str | Path, default: float = 25.0) -> float:
    """Frames per second of a video (GIF: from its first frame's duration); ``default`` when unknown."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        try:
            with Image.open(path) as im:
                ms = float(im.info.get("duration") or 100)
        except Exception:
            return default
        return 1000.0 / ms if ms > 0 else default
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if 0 < fps < 1000 else default


def _gif_frames(path: Path) -> Iterator[np.ndarray]:
    from PIL import Image, ImageSequence

    try:
        im = Image.open(path)
    except Exception as e:
        raise InputError(path, f"not a readable GIF ({e})") from None
    with im:
        try:
            for frame in ImageSequence.Iterator(im):
                rgba = np.asarray(frame.convert("RGBA"), dtype=np.float32)
                alpha = rgba[..., 3:] / 255.0
                yield np.clip(rgba[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
        except (OSError, ValueError, EOFError) as e:
            raise InputError(path, f"corrupt GIF ({e})") from None


def _cv2_frames(path: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(path, "cannot open video (unsupported or corrupt)")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()


def iter_frames(path: str | Path) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB uint8 (H, W, 3)) for every frame of a video or animated GIF, in order.

    Raises :class:`InputError` (one line) when the file cannot be opened or holds no frame at all.
    """
    path = Path(path)
    _check_readable(path)
    frames = _gif_frames(path) if path.suffix.lower() == ".gif" else _cv2_frames(path)
    count = 0
    for count, frame in enumerate(frames, start=1):
        yield count - 1, frame
    if count == 0:
        raise InputError(path, "no frames could be decoded (corrupt or unsupported video)")
