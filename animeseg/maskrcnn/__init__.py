"""torchvision's Mask R-CNN as animeseg's second architecture, through the same data, predict, eval and export.

* :mod:`~animeseg.maskrcnn.model`: building the network (ResNet-50-FPN v2 or MobileNetV3-Large FPN), the animeseg
  checkpoint format, and :func:`~animeseg.maskrcnn.model.architecture` (which family a model file is);
* :mod:`~animeseg.maskrcnn.dataset`: a built dataset's exact RLE ground truth as training pairs;
* :mod:`~animeseg.maskrcnn.module`: the Lightning module that :mod:`animeseg.train.maskrcnn` trains (the
  ``maskrcnn`` extra);
* :mod:`~animeseg.maskrcnn.detector`: the :class:`~animeseg.detector.Detector` ``Segmenter`` uses, for a
  checkpoint and for its ONNX export (on ONNX Runtime);
* :mod:`~animeseg.maskrcnn.export`: ONNX export and its parity check.

Importing this package imports neither torch nor Lightning.
"""
