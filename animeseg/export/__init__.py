"""ONNX export of the detector and of Segment Anything, each followed by a parity check against PyTorch.

* :mod:`animeseg.export.detector`: the YOLO-seg detector through Ultralytics' own exporter (fp32, fp16, int8);
* :mod:`animeseg.export.sam`: SAM's encoder and batched box decoder as two graphs in one folder with ``sam.json``;
* :mod:`animeseg.export.parity`: what each check measured, the limits (:data:`THRESHOLDS`) and reference inputs.

The parity checks run the exported graphs and the PyTorch model on the same image and compare masks (IoU) and
raw outputs (largest absolute difference). Everything here returns results; ``animeseg export onnx`` shows them.
"""

from animeseg.export.common import precision_name, quantize
from animeseg.export.detector import (
    calibration_images,
    check_detector,
    detector_path,
    export_detector,
    export_openvino,
)
from animeseg.export.parity import THRESHOLDS, Parity, default_boxes, mask_ious, raise_if_failed, sample_image
from animeseg.export.sam import (
    OPSET,
    SamDecoderOnnx,
    SamEncoderOnnx,
    check_sam,
    export_sam,
    require_vit,
    sam_folder_name,
)

__all__ = [
    "OPSET",
    "THRESHOLDS",
    "calibration_images",
    "Parity",
    "SamDecoderOnnx",
    "SamEncoderOnnx",
    "check_detector",
    "check_sam",
    "default_boxes",
    "detector_path",
    "export_detector",
    "export_openvino",
    "export_sam",
    "mask_ious",
    "precision_name",
    "quantize",
    "raise_if_failed",
    "require_vit",
    "sample_image",
    "sam_folder_name",
]
