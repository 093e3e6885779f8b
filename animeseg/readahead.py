"""Reading the next image while this one is segmented, so decoding overlaps inference in a batch.

:class:`ReadAhead` is what the batch loop (:mod:`animeseg.runner`) reads images through when it runs them in this
process, in order: asking for one image starts reading the next on a background thread. One image ahead is enough
on a CPU, where decoding takes a fraction of inference and the cores are otherwise busy with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from animeseg.io import read_image

if TYPE_CHECKING:
    from animeseg.media import MediaItem


class ReadAhead:
    """Reads the images of ``items`` one ahead of the one asked for.

    ``read(item)`` returns the image of ``item`` (what ``read`` gives: RGB (H, W, 3) uint8 for
    :func:`animeseg.io.read_image`) and starts reading the next image item of ``items``. A read error is raised
    by the ``read`` of the item it belongs to. Items skipped, or asked for out of order, cost at most one
    read each that nobody uses; videos are not read ahead (their frames stream from the decoder).
    """

    def __init__(self, items: Sequence[MediaItem], read: Callable[[Path], np.ndarray] = read_image) -> None:
        images = [it for it in items if it.kind == "image"]
        self._next = {a.key: b for a, b in zip(images, images[1:], strict=False)}
        self._read = read
        self._pending: dict[str, Future[np.ndarray]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def read(self, item: MediaItem) -> np.ndarray:
        """The image of ``item``, read ahead when it was the next one; starts reading the one after it."""
        future = self._pending.pop(item.key, None)
        upcoming = self._next.get(item.key)
        if upcoming is not None and upcoming.key not in self._pending:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="animeseg-read")
            self._pending[upcoming.key] = self._pool.submit(self._read, upcoming.path)
        return future.result() if future is not None else self._read(item.path)

    def close(self) -> None:
        """Drop reads nobody will ask for and stop the thread."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
