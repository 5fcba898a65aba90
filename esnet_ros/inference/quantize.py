"""int8 on the CPU: post-training static quantization of an exported ESNet with ONNX Runtime.

Calibration runs the fp32 model on images the user supplies (ideally from the deployment's
camera; the synthetic set from ``esnet synth`` for the demo model), preprocessed by the engine's
own kernel (:func:`esnet_ros.inference.cpu_ops.network_input`, which the :class:`Segmenter` runs:
the same resize and ``ModelMeta.normalization`` as the node), and records activation ranges; weights are quantized per channel
(int8, symmetric), activations per tensor (uint8).  The result is a QDQ ONNX model that ONNX
Runtime runs with its int8 (VNNI/AMX where the CPU has them) kernels; the esnet_ros metadata is
copied over.

Usually run through ``esnet export --int8 --calibration-dir DIR``; then
``Segmenter("esnet_int8.onnx", precision="int8")`` or the node with ``weights:=esnet_int8.onnx``.
:func:`esnet_ros.training.evaluation.compare_predictions` measures what int8 costs.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Iterator

import numpy as np

from esnet_ros.core.image_files import calibration_images, read_bgr
from esnet_ros.core.metadata import ModelMeta
from esnet_ros.inference.cpu_ops import network_input
from esnet_ros.inference.onnx_export import read_onnx_metadata, write_onnx_metadata

__all__ = ["CALIBRATION_METHODS", "calibration_input", "quantize_model"]

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def calibration_input(path: str | pathlib.Path, meta: ModelMeta, size: tuple[int, int]) -> np.ndarray:
    """The ``(1,3,h,w)`` float32 network input for the image file ``path``, as the engine makes it."""
    return network_input(read_bgr(path), meta.normalization, size, color_order="bgr")


def quantize_model(
    fp32_onnx: str | pathlib.Path,
    output: str | pathlib.Path,
    calibration_dir: str | pathlib.Path,
    *,
    num_images: int = 32,
    method: str = "minmax",
) -> pathlib.Path:
    """Write an int8 (QDQ) copy of ``fp32_onnx`` calibrated on images from ``calibration_dir``."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r} must be one of: {', '.join(CALIBRATION_METHODS)}")
    meta = read_onnx_metadata(fp32_onnx)
    if meta.onnx_input_size is None:
        raise ValueError("int8 quantization needs a fixed-size export; export without --dynamic")
    files = calibration_images(calibration_dir, num_images)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[pathlib.Path] = iter(files)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self._it, None)
            return None if path is None else {"input": calibration_input(path, meta, meta.onnx_input_size)}

    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    log.info("calibrating int8 on %d images from %s", len(files), calibration_dir)
    quantize_static(
        str(fp32_onnx),
        str(output),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=getattr(CalibrationMethod, {"minmax": "MinMax"}.get(method, method.capitalize())),
    )
    calibration = {"images": len(files), "method": method, "directory": str(calibration_dir)}
    write_onnx_metadata(output, meta.replace(onnx_precision="int8", int8_calibration=calibration))
    return output
