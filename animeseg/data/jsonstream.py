"""Stream a large JSON file (a COCO annotation file) one top-level element at a time.

``json.load`` of COCO-2017's 450 MB train annotations takes several GB of memory; this reads it in 4 MB chunks and
yields the elements of each top-level array with their byte offset and length, so a caller can keep a compact
index (offsets, a few integers) and read any element again later with :func:`read_element`.

The text is decoded as Latin-1 while scanning, which makes character offsets equal byte offsets; strings with
non-ASCII characters therefore come out garbled from :func:`iter_elements`, and callers that need exact text
(file names, category names) re-read the element with :func:`read_element`, which decodes UTF-8 properly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from animeseg.errors import InputError

CHUNK = 1 << 22
_SLACK = 1 << 20  # no single token (string, number) of a COCO file is this long
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class _Reader:
    def __init__(self, path: Path, f, chunk: int):
        self.path, self.f, self.chunk = path, f, chunk
        self.buf, self.pos, self.base, self.eof = "", 0, 0, False

    def fill(self) -> bool:
        """Append the next chunk (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        data = self.f.read(self.chunk)
        if not data:
            self.eof = True
            return False
        if self.pos:
            self.base += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        self.buf += data.decode("latin-1")
        return True

    def peek(self) -> str:
        """The next non-blank character ('' at the end of the file)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.fill():
                return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def take(self, expected: str) -> None:
        c = self.peek()
        if c != expected:
            self.fail(f"expected '{expected}', found {repr(c) if c else 'the end of the file'}")
        self.pos += 1

    def value(self) -> tuple[Any, int, int]:
        """The next JSON value with its byte offset and length."""
        self.peek()
        while True:
            try:
                v, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # An element cut by the chunk end fails near the end; an error far before it is a real one.
                if e.pos > len(self.buf) - _SLACK and self.fill():
                    continue
                self.fail(e.msg, self.base + e.pos)
            if end == len(self.buf) and isinstance(v, (int, float)) and self.fill():
                continue  # a number that ends the chunk may go on in the next one
            start = self.base + self.pos
            self.pos = end
            return v, start, self.base + end - start

    def fail(self, msg: str, offset: int | None = None) -> None:
        offset = self.base + self.pos if offset is None else offset
        raise InputError(self.path, f"JSON does not parse ({msg} at line {_line_of(self.path, offset)})")


def _line_of(path: Path, offset: int) -> int:
    line = 1
    with open(path, "rb") as f:
        done = 0
        while done < offset:
            block = f.read(min(CHUNK, offset - done))
            if not block:
                break
            line += block.count(b"\n")
            done += len(block)
    return line


def iter_elements(path: str | Path, chunk: int = CHUNK) -> Iterator[tuple[str, int, Any, int, int]]:
    """Yield ``(key, index, value, offset, length)`` for the top-level object of a JSON file.

    Elements of a top-level array come one by one (``index`` 0, 1, ...); any other top-level value comes whole
    with ``index`` -1. Raises :class:`InputError` naming the line when the file is not valid JSON.
    """
    path = Path(path)
    with open(path, "rb") as f:
        r = _Reader(path, f, chunk)
        r.fill()
        if r.buf.startswith("\xef\xbb\xbf"):  # UTF-8 byte order mark, as Latin-1
            r.pos = 3
        if r.peek() != "{":
            r.fail("the file does not hold a JSON object")
        r.take("{")
        if r.peek() == "}":
            return
        while True:
            key, _, _ = r.value()
            if not isinstance(key, str):
                r.fail("expected a key")
            r.take(":")
            if r.peek() == "[":
                r.take("[")
                if r.peek() == "]":
                    r.take("]")
                else:
                    i = 0
                    while True:
                        v, off, n = r.value()
                        yield key, i, v, off, n
                        i += 1
                        c = r.peek()
                        if c == "]":
                            r.take("]")
                            break
                        r.take(",")
            else:
                v, off, n = r.value()
                yield key, -1, v, off, n
            if r.peek() == "}":
                r.take("}")
                break
            r.take(",")
        if r.peek():
            r.fail("extra data after the JSON object")


def read_element(f, offset: int, length: int) -> Any:
    """Parse the element at ``offset`` (``length`` bytes) of an open binary file, decoding UTF-8 exactly."""
    f.seek(offset)
    return json.loads(f.read(length))
