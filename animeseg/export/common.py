"""What the detector and SAM exports share: precision names and ONNX Runtime int8 quantisation."""

from __future__ import annotations

from pathlib import Path

from animeseg.errors import AnimesegError


def quantize(src: Path, dst: Path, large: bool = False) -> None:
    """Dynamic int8 quantisation of weights (activations quantised on the fly), for CPU inference."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # u8 weights (U8U8): on x86 CPUs without VNNI the default s8 weights saturate 16-bit sums (VPMADDUBSW) and
    # lose most of the accuracy (vit_b embedding error 18% vs 2% measured here), for no speed gain.
    # The quantiser logs a "run pre-processing" hint through the root logger; a NullHandler keeps logging's
    # last-resort handler from printing it (and from configuring the root logger for the whole process).
    root, quiet = logging.getLogger(), logging.NullHandler()
    root.addHandler(quiet)
    try:
        quantize_dynamic(src, dst, weight_type=QuantType.QUInt8, use_external_data_format=large)
    finally:
        root.removeHandler(quiet)


def precision_name(half: bool, int8: bool) -> str:
    if half and int8:
        raise AnimesegError("choose one of --half and --int8, not both")
    return "int8" if int8 else "fp16" if half else "fp32"
