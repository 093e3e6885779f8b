"""animeseg: anime-character instance segmentation.

The library's stages live in one module each (``animeseg.data``, ``animeseg.train``, ``animeseg.predict``,
``animeseg.refine``, ``animeseg.fusion``, ``animeseg.writers``, ``animeseg.export``, ``animeseg.evaluate``);
:class:`~animeseg.instances.Instances` is the record that flows between them.

Importing animeseg has no side effects: the offline set-up of Ultralytics (:func:`animeseg._offline.ensure_offline`)
runs once, lazily, right before Ultralytics is first imported (:func:`animeseg._offline.import_ultralytics`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from animeseg._offline import ensure_offline
from animeseg.instances import Instances

__version__ = "0.1.0"
__all__ = ["Instances", "__version__", "cut", "ensure_offline", "segment"]


def segment(image: np.ndarray | str | Path, model: str | Path | None = None, **options: Any) -> Instances:
    """The characters of one image, in one call: ``animeseg.segment(image)`` -> :class:`Instances`.

    ``image``: RGB (H, W, 3) uint8 or an image file. Without ``model``, the packaged anime model with its own
    defaults; ``options`` (``refiner``, ``conf``, ``imgsz``, ``classes``...) as for
    :class:`animeseg.predict.Segmenter`. The model loads on the first call and is reused (see
    :func:`animeseg.predict.segment`).
    """
    from animeseg.predict import segment as _segment

    return _segment(image, model, **options)


def cut(image: np.ndarray | str | Path, model: str | Path | None = None, **options: Any) -> np.ndarray:
    """The image with every character kept and the background transparent: RGBA (H, W, 4) uint8.

    ``animeseg.segment(image, model, **options)`` then the union of its masks as alpha; ``alpha="matte"`` gives
    soft edges (see :func:`animeseg.background.cut`).
    """
    from animeseg.background import cut as _cut

    return _cut(image, model, **options)


# A library stays silent unless its caller configures logging (the command line does); without this, logging's
# last-resort handler would print the library's warnings to stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())
