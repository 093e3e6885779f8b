"""A model file's metadata: an ONNX file's ``metadata_props`` read straight from its protobuf, without the ``onnx``
package, or an OpenVINO IR's (``.xml``) ``rt_info/framework``, where OpenVINO's converter keeps them.

Exporters record what a runtime needs beside the graph: Ultralytics its class names, stride, task and input size;
animeseg's Mask R-CNN export its architecture. Reading them with ``onnx.load`` parses the whole graph (and needs
``onnx`` at run time); here only the model's top-level fields are walked and the graph is skipped by its length.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import BinaryIO

from animeseg.errors import InputError

_METADATA_FIELD = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {key = 1; value = 2}


def _varint(f: BinaryIO) -> int | None:
    """The next base-128 varint of ``f``, or None at the end of the file."""
    shift = result = 0
    while True:
        byte = f.read(1)
        if not byte:
            return None
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _entry(data: bytes) -> tuple[str, str]:
    """(key, value) of one serialised StringStringEntryProto."""
    key = value = ""
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        length = shift = 0
        while True:
            b = data[i]
            i += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        text = data[i : i + length].decode("utf-8", errors="replace")
        i += length
        if tag >> 3 == 1:
            key = text
        elif tag >> 3 == 2:
            value = text
    return key, value


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX model at ``path`` (key -> value); a file that is not a readable ONNX
    protobuf is a one-line :class:`InputError`."""
    path = Path(path)
    meta: dict[str, str] = {}
    try:
        size = path.stat().st_size
        if size == 0:
            raise ValueError("empty file")
        with open(path, "rb") as f:
            while (tag := _varint(f)) is not None:
                field, wire = tag >> 3, tag & 7
                if wire == 0:
                    _varint(f)
                elif wire == 1:
                    f.seek(8, 1)
                elif wire == 5:
                    f.seek(4, 1)
                elif wire == 2:
                    length = _varint(f)
                    if length is None:
                        raise ValueError("truncated field")
                    if field == _METADATA_FIELD:
                        key, value = _entry(f.read(length))
                        meta[key] = value
                    else:
                        f.seek(length, 1)  # the graph and its weights: skipped, never read
                    if f.tell() > size:
                        raise ValueError("truncated file")
                else:
                    raise ValueError(f"unexpected wire type {wire}")
    except OSError as e:
        raise InputError(path, f"cannot read model file ({e.strerror or e})") from None
    except (ValueError, IndexError) as e:
        raise InputError(path, f"not an ONNX model ({e})") from None
    return meta


def model_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an ONNX model or an OpenVINO IR (``.xml``): key -> value; a file that cannot be read is a
    one-line :class:`InputError`."""
    path = Path(path)
    if path.suffix.lower() != ".xml":
        return onnx_metadata(path)
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise InputError(path, f"not an OpenVINO model ({e})") from None
    framework = root.find("rt_info/framework")
    return {} if framework is None else {child.tag: child.get("value", "") for child in framework}


def class_names(meta: dict[str, str]) -> dict[int, str]:
    """Class id -> name from Ultralytics' ``names`` metadata (a Python dict literal); empty when absent."""
    try:
        names = ast.literal_eval(meta.get("names", "{}"))
    except (ValueError, SyntaxError):
        return {}
    if isinstance(names, list):
        names = dict(enumerate(names))
    return {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}
