"""Layered Photoshop files (PSD, version 1, 8-bit RGB): the one writer of the format in animeseg.

Krita, GIMP, Photoshop, Clip Studio Paint and Photopea open these files. Written here with NumPy and the standard
library only, so the core install needs nothing more; psd-tools (the ``dev`` extra) reads them back in the tests.
What is written:

* the file header (RGB, 8 bits per channel, 3 channels in the merged image);
* one image resource, *version info* with ``hasRealMergedData`` set, so readers trust the merged image;
* the layers, bottom first, each with channels alpha (-1), red, green and blue cropped to the layer's bounds,
  its name both as a Pascal string and as a ``luni`` (Unicode) block, normal blending, full opacity, visible;
* the merged (flattened) image, which is what viewers that do not composite layers show.

Every channel is PackBits (RLE) compressed, the one compression every reader of the format supports. Sizes above
30,000 pixels a side need the large-document variant (PSB) and are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Largest width or height a PSD file may have (larger ones are PSB, which this module does not write).
MAX_SIDE = 30_000


@dataclass
class Layer:
    """One pixel layer: ``rgba`` (h, w, 4) uint8, straight (not premultiplied) alpha, placed with its top-left
    corner at (``left``, ``top``) in the document (it may reach outside it; readers clip)."""

    name: str
    rgba: np.ndarray
    left: int = 0
    top: int = 0


def composite(base: np.ndarray, layers: Sequence[Layer]) -> np.ndarray:
    """RGB (H, W, 3) uint8: the layers (bottom first) blended over the RGB ``base`` with normal blending, as
    every editor shows them."""
    out = base[..., :3].astype(np.float32)
    h, w = out.shape[:2]
    for layer in layers:
        lh, lw = layer.rgba.shape[:2]
        y0, x0 = max(layer.top, 0), max(layer.left, 0)
        y1, x1 = min(layer.top + lh, h), min(layer.left + lw, w)
        if y1 <= y0 or x1 <= x0:
            continue
        part = layer.rgba[y0 - layer.top : y1 - layer.top, x0 - layer.left : x1 - layer.left].astype(np.float32)
        a = part[..., 3:] / 255.0
        out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1.0 - a) + part[..., :3] * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def encode_psd(merged: np.ndarray, layers: Sequence[Layer]) -> bytes:
    """The bytes of a PSD file whose merged image is the RGB ``merged`` (H, W, 3) uint8 and whose layers are
    ``layers``, bottom first. Raises ValueError for a document larger than :data:`MAX_SIDE` a side."""
    if merged.ndim != 3 or merged.shape[2] != 3 or merged.dtype != np.uint8:
        raise ValueError(f"merged image must be (H, W, 3) uint8, got {merged.shape} {merged.dtype}")
    h, w = merged.shape[:2]
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"image too large for a PSD file ({w}x{h}; at most {MAX_SIDE} pixels a side)")
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    colour_mode = struct.pack(">I", 0)
    resources = _section(_resource(0x0421, _version_info()))
    return header + colour_mode + resources + _layer_section(layers) + _merged(merged)


# ------------------------------------------------------------------------------------------------ sections
def _section(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _pad(data: bytes, multiple: int) -> bytes:
    return data + b"\0" * (-len(data) % multiple)


def _unicode(text: str) -> bytes:
    """Photoshop's Unicode string: a UTF-16 code-unit count, then the UTF-16BE units."""
    units = text.encode("utf-16-be")
    return struct.pack(">I", len(units) // 2) + units


def _resource(resource_id: int, data: bytes) -> bytes:
    """One image resource block: signature, id, empty (padded) name, then the data padded to even length."""
    return b"8BIM" + struct.pack(">H", resource_id) + b"\0\0" + struct.pack(">I", len(data)) + _pad(data, 2)


def _version_info() -> bytes:
    """Resource 0x0421 (version info): a real merged image is present, so readers may show it as is."""
    return struct.pack(">IB", 1, 1) + _unicode("animeseg") + _unicode("animeseg") + struct.pack(">I", 1)


def _pascal_name(name: str) -> bytes:
    """The legacy layer name: a Pascal string (at most 255 bytes, Latin-1 with '?' for the rest) padded to 4."""
    raw = name.encode("latin-1", "replace")[:255]
    return _pad(bytes([len(raw)]) + raw, 4)


def _layer_section(layers: Sequence[Layer]) -> bytes:
    records, channel_data = [], []
    for layer in layers:
        rgba = np.ascontiguousarray(layer.rgba, dtype=np.uint8)
        if rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError(f"layer {layer.name!r} must be (h, w, 4) uint8, got {rgba.shape}")
        lh, lw = rgba.shape[:2]
        channels = []
        for channel_id, plane in ((-1, 3), (0, 0), (1, 1), (2, 2)):
            counts, data = packbits_rows(rgba[..., plane])
            block = struct.pack(">H", 1) + counts.astype(">u2").tobytes() + data
            channels.append((channel_id, block))
        luni = _unicode(layer.name)
        extra = (
            struct.pack(">I", 0)  # no layer mask
            + struct.pack(">I", 0)  # no blending ranges
            + _pascal_name(layer.name)
            + b"8BIMluni"
            + struct.pack(">I", len(_pad(luni, 4)))
            + _pad(luni, 4)
        )
        record = struct.pack(">iiiiH", layer.top, layer.left, layer.top + lh, layer.left + lw, len(channels))
        record += b"".join(struct.pack(">hI", cid, len(block)) for cid, block in channels)
        # normal blending, opacity 255, no clipping, flags 0 (visible), filler
        record += b"8BIMnorm" + struct.pack(">BBBB", 255, 0, 0, 0) + _section(extra)
        records.append(record)
        channel_data.extend(block for _, block in channels)
    layer_info = struct.pack(">h", len(layers)) + b"".join(records) + b"".join(channel_data)
    layer_info = _pad(layer_info, 4)
    global_mask = struct.pack(">I", 0)
    return _section(_section(layer_info) + global_mask)


def _merged(image: np.ndarray) -> bytes:
    """The image data section: RLE, every channel's row byte counts first, then every channel's rows."""
    counts, data = zip(*(packbits_rows(image[..., c]) for c in range(3)), strict=True)
    return struct.pack(">H", 1) + np.concatenate(counts).astype(">u2").tobytes() + b"".join(data)


# ------------------------------------------------------------------------------------------------ PackBits
def packbits_rows(plane: np.ndarray) -> tuple[np.ndarray, bytes]:
    """PackBits (Apple's RLE, as PSD stores it) of each row of the uint8 ``plane`` (h, w): returns the byte
    count of each encoded row (h,) int64 and the encoded rows, concatenated.

    Runs of 3 or more equal bytes become repeat packets (header ``257 - n``, then the byte), everything else
    literal packets (header ``n - 1``, then n bytes); packets hold at most 128 bytes and never cross a row.
    Vectorised over the whole plane: no Python loop per row or per packet.
    """
    plane = np.ascontiguousarray(plane, dtype=np.uint8)
    h, w = plane.shape
    if h == 0 or w == 0:
        return np.zeros(h, np.int64), b""
    flat = plane.reshape(-1)
    n = flat.size
    change = np.empty(n, bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::w] = True  # a row always starts a new run
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, n))
    repeat = lengths >= 3
    rows = starts // w

    # literal blocks: maximal sequences of short runs within one row
    first = np.ones(len(starts), bool)
    first[1:] = repeat[:-1] | (rows[1:] != rows[:-1])
    lit_first = ~repeat & first
    lit_id = np.cumsum(lit_first) - 1
    lit_starts = starts[lit_first]
    lit_lengths = np.bincount(lit_id[~repeat], weights=lengths[~repeat], minlength=len(lit_starts)).astype(np.int64)

    block_starts = np.concatenate([starts[repeat], lit_starts])
    block_lengths = np.concatenate([lengths[repeat], lit_lengths])
    block_repeat = np.concatenate([np.ones(repeat.sum(), bool), np.zeros(len(lit_starts), bool)])
    order = np.argsort(block_starts, kind="stable")
    block_starts, block_lengths, block_repeat = block_starts[order], block_lengths[order], block_repeat[order]

    # packets: blocks cut into pieces of at most 128 bytes
    pieces = (block_lengths + 127) // 128
    block_of = np.repeat(np.arange(len(pieces)), pieces)
    piece = np.arange(len(block_of)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    p_start = block_starts[block_of] + 128 * piece
    p_count = np.minimum(128, block_lengths[block_of] - 128 * piece)
    p_repeat = block_repeat[block_of]
    p_size = np.where(p_repeat, 2, 1 + p_count)
    p_at = np.cumsum(p_size) - p_size

    out = np.empty(int(p_size.sum()), np.uint8)
    # a repeat "packet" of one byte gets header 0, which is the same two bytes as a one-byte literal
    out[p_at] = np.where(p_repeat, (257 - p_count) & 0xFF, p_count - 1).astype(np.uint8)
    out[p_at[p_repeat] + 1] = flat[p_start[p_repeat]]
    lit_count, lit_src, lit_dst = p_count[~p_repeat], p_start[~p_repeat], p_at[~p_repeat] + 1
    if len(lit_count):
        offset = np.arange(int(lit_count.sum())) - np.repeat(np.cumsum(lit_count) - lit_count, lit_count)
        out[np.repeat(lit_dst, lit_count) + offset] = flat[np.repeat(lit_src, lit_count) + offset]
    counts = np.bincount(p_start // w, weights=p_size, minlength=h).astype(np.int64)
    return counts, out.tobytes()


def unpackbits(data: bytes, size: int) -> bytes:
    """Decode PackBits ``data`` into ``size`` bytes (the inverse of :func:`packbits_rows` on one row)."""
    out, i = bytearray(), 0
    while len(out) < size and i < len(data):
        header = data[i]
        if header < 128:
            out += data[i + 1 : i + 2 + header]
            i += 2 + header
        elif header > 128:
            out += bytes([data[i + 1]]) * (257 - header)
            i += 2
        else:
            i += 1
    return bytes(out)
