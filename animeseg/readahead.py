"""Reading the next images while this one is segmented, so decoding (and, where the detector allows it,
detection) overlaps the work on the current image in a batch.

:class:`ReadAhead` is what the batch loop (:mod:`animeseg.runner`) reads images through when it runs them in this
process, in order: asking for one image starts reading the next ones on background threads. With a detector that
runs several images side by side (the native runtime: one inference stream per core), the runner has those
threads detect too, so every core works on an image of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from animeseg.instances import Instances
from animeseg.io import read_image

if TYPE_CHECKING:
    from animeseg.media import MediaItem


class ReadAhead:
    """Reads the images of ``items`` ahead of the one asked for.

    ``read(item)`` returns what ``read`` gives for ``item``'s path (RGB (H, W, 3) uint8 for
    :func:`animeseg.io.read_image`; the runner also passes a function that reads and detects) and starts on the
    ``ahead`` next image items of ``items``, on ``workers`` background threads. An error is raised by the
    ``read`` of the item it belongs to. Items skipped, or asked for out of order, cost at most ``ahead`` reads
    that nobody uses; videos are not read ahead (their frames stream from the decoder).
    """

    def __init__(
        self,
        items: Sequence[MediaItem],
        read: Callable[[Path], Any] = read_image,
        ahead: int = 1,
        workers: int = 1,
    ) -> None:
        self._images = [it for it in items if it.kind == "image"]
        self._index = {it.key: i for i, it in enumerate(self._images)}
        self._read, self._ahead, self._workers = read, ahead, workers
        self._pending: dict[str, Future[Any]] = {}
        self._started: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None

    def read(self, item: MediaItem) -> Any:
        """What ``read`` gives for ``item`` (read ahead when it was among the next ones); starts the ones after."""
        future = self._pending.pop(item.key, None)
        self._started.add(item.key)
        i = self._index.get(item.key)
        if i is not None:
            for upcoming in self._images[i + 1 : i + 1 + self._ahead]:
                if upcoming.key not in self._started:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="animeseg-read")
                    self._started.add(upcoming.key)
                    self._pending[upcoming.key] = self._pool.submit(self._read, upcoming.path)
        return future.result() if future is not None else self._read(item.path)

    def close(self) -> None:
        """Drop reads nobody will ask for and stop the threads."""
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


@dataclass
class Detected:
    """An image and its detector instances, made ahead of their turn by a reader thread."""

    image: np.ndarray
    instances: Instances


def reader_for(items: Sequence[MediaItem], segmenter: Any) -> ReadAhead:
    """How a batch reads ``items`` for ``segmenter``: images one ahead; with a segmenter whose detector runs
    images side by side (``concurrency`` > 1; not tracking, whose frames go in order), as many images read and
    detected ahead on as many threads (each returned as :class:`Detected`; the caller refines them)."""
    workers = int(getattr(segmenter, "concurrency", 1))
    tracking = callable(getattr(segmenter, "start", None))
    if workers < 2 or tracking or not callable(getattr(segmenter, "refine", None)):
        return ReadAhead(items)

    def detect(path: Path) -> Detected:
        image = read_image(path)
        return Detected(image, segmenter.detect(image))

    return ReadAhead(items, detect, ahead=workers, workers=workers)
