"""Training, for both architectures: one package, the same data, results and sidecars.

* :mod:`~animeseg.train.yolo`: fine-tune an Ultralytics YOLOv8-seg (``animeseg train``), with
  :mod:`~animeseg.train.args` (the study's arguments), :mod:`~animeseg.train.trainer` and
  :mod:`~animeseg.train.amp` (Ultralytics' trainer with its AMP check kept offline);
* :mod:`~animeseg.train.maskrcnn`: fine-tune torchvision's Mask R-CNN with PyTorch Lightning
  (``animeseg train --arch maskrcnn``), with :mod:`~animeseg.train.maskrcnn_runs` (devices, starting weights,
  checkpoints to resume); the network, its dataset and Lightning module live in :mod:`animeseg.maskrcnn`;
* :mod:`~animeseg.train.refiner`: train the learned refiner's network (``--refine learned``, run by
  ``recipes/anime-refiner/``) on crops made by :mod:`~animeseg.train.refiner_data`, and export it to ONNX;
* shared: :mod:`~animeseg.train.data` (``--data``: a built dataset, or a ``datasets.yaml`` built first),
  :mod:`~animeseg.train.result` (:class:`TrainResult`, the weights folder) and :mod:`~animeseg.train.sidecar`
  (what the JSON sidecar next to the weights records).

Importing this package imports neither torch, Ultralytics nor Lightning; training does.
"""

from __future__ import annotations

from animeseg.train.args import DDP_BATCH_PER_GPU, STUDY_DEFAULTS, parse_extra, train_arguments
from animeseg.train.data import resolve_data
from animeseg.train.maskrcnn import train_maskrcnn
from animeseg.train.result import TrainResult, default_weights_dir
from animeseg.train.yolo import train

__all__ = [
    "DDP_BATCH_PER_GPU",
    "STUDY_DEFAULTS",
    "TrainResult",
    "default_weights_dir",
    "parse_extra",
    "resolve_data",
    "train",
    "train_arguments",
    "train_maskrcnn",
]
