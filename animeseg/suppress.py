"""Containment-aware suppression: one character never comes out as several overlapping instances.

Box NMS keeps a detection of a raised arm, a tail or the lower half of a character beside the detection of the
whole: their boxes overlap little, so IoU says they are different objects. Their masks say otherwise: the part
lies inside the whole. :func:`suppress_contained` drops every instance whose mask lies mostly inside the mask of
a higher-scoring one.
"""

from __future__ import annotations

import numpy as np

from animeseg.instances import Instances


def suppress_contained(instances: Instances, contained: float) -> Instances:
    """``instances`` without those whose mask lies inside a higher-scoring one's mask by more than ``contained``
    of its own area (the default, :attr:`animeseg.settings.DetectSettings.contained`, was measured on held-out
    art: docs/refinement.md).

    Instances are (N, H, W) masks; the kept ones keep their order. ``contained`` >= 1 keeps everything.
    """
    n = len(instances)
    if n < 2 or contained >= 1:
        return instances
    flat = instances.masks.reshape(n, -1)
    areas = flat.sum(1)
    order = np.argsort(-instances.scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if areas[i] == 0:
            keep.append(int(i))
            continue
        inside = max((np.count_nonzero(flat[i] & flat[j]) for j in keep), default=0)
        if inside <= contained * areas[i]:
            keep.append(int(i))
    if len(keep) == n:
        return instances
    return instances[np.sort(np.asarray(keep))]
