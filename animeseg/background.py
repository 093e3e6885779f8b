"""Removing the background, the single most common job, in one call: the image with every character kept and
the background transparent.

    >>> import animeseg
    >>> rgba = animeseg.cut("art/page.png")      # (H, W, 4) uint8: the characters, transparent elsewhere

It is :func:`animeseg.segment` (the default model with its defaults, or any :class:`~animeseg.predict.Segmenter`)
followed by the whole-image cut-out ``predict --save cutouts`` writes as ``cutouts/<name>.png``
(:func:`animeseg.writers.cutout` of the union of the instances' masks); ``animeseg cut`` is its command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from animeseg.instances import Instances
from animeseg.writers import cutout, semantic_mask


def cut_out(image: np.ndarray, instances: Instances, alpha: str = "binary") -> np.ndarray:
    """RGBA (H, W, 4) uint8: ``image`` (RGB (H, W, 3)) transparent outside every instance of ``instances``;
    ``alpha`` ``binary`` (the masks) or ``matte`` (soft edges, see :func:`animeseg.writers.cutout`)."""
    return cutout(image, semantic_mask(instances), alpha=alpha)


def cut(
    image: np.ndarray | str | Path,
    model: str | Path | None = None,
    *,
    alpha: str = "binary",
    segmenter: Any = None,
    **options: Any,
) -> np.ndarray:
    """The characters of ``image`` (RGB (H, W, 3) uint8 or an image file) on a transparent background: RGBA
    (H, W, 4) uint8.

    ``segmenter`` (a :class:`~animeseg.predict.Segmenter`) finds them; without one, :func:`animeseg.segment`
    with ``model`` and ``options`` (``refine``, ``conf``, ``imgsz``, ``classes``..., as the command line names
    them) does. An unknown option is a :class:`TypeError` listing the accepted ones.
    """
    from animeseg.predict import REFINE_ALIAS, check_keywords, keywords_of, segment_keywords

    accepted = [k for k in keywords_of(cut) if k != "options"] + [k for k in segment_keywords() if k != "model"]
    check_keywords("cut", {k: v for k, v in options.items() if k != REFINE_ALIAS}, accepted)
    if isinstance(image, (str, Path)):
        from animeseg.io import read_image

        image = read_image(image)
    if segmenter is not None:
        instances = segmenter(image)
    else:
        from animeseg.predict import segment

        instances = segment(image, model, **options)
    return cut_out(image, instances, alpha)
