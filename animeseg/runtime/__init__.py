"""animeseg's own inference runtime for ONNX models: no torch, no Ultralytics.

* :mod:`~animeseg.runtime.session`: :func:`~animeseg.runtime.session.create_session`, the one place inference
  sessions are made (ONNX Runtime or OpenVINO, fp32 or bf16, threads), for detectors and refiners alike;
* :mod:`~animeseg.runtime.yolo`: Ultralytics YOLO-seg exports run natively
  (:class:`~animeseg.runtime.yolo.YoloOnnxDetector`), the same instances as Ultralytics on the same file;
* :mod:`~animeseg.runtime.metadata`: an ONNX file's metadata without the ``onnx`` package.

Importing this package imports neither backend: sessions import theirs when they are made.
"""
