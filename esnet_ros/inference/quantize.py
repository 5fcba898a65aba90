"""int8 on the CPU: post-training static quantization of an exported ESNet with ONNX Runtime.

Calibration runs the fp32 model on images the user supplies (ideally from the deployment's
camera; the synthetic set from ``esnet synth`` for the demo model), preprocessed by the engine
(:meth:`Segmenter.network_input`, from the model's own metadata), and records activation ranges; weights are quantized per channel (int8, symmetric),
activations per tensor (uint8).  The result is a QDQ ONNX model that ONNX Runtime runs with its
int8 (VNNI/AMX where the CPU has them) kernels; the esnet_ros metadata is copied over.

Usually run through ``esnet export --int8 --calibration-dir DIR``; then
``Segmenter("esnet_int8.onnx", precision="int8")`` or the node with ``weights:=esnet_int8.onnx``.
:func:`esnet_ros.training.evaluation.compare_predictions` measures what int8 costs (pixel agreement
and the mIoU of the int8 labels against the fp32 labels, or against ground truth when given).
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Iterator

import numpy as np

from esnet_ros.core.image_files import calibration_images, read_bgr
from esnet_ros.inference.onnx_export import read_onnx_metadata, set_onnx_metadata
from esnet_ros.inference.segmenter import Segmenter

__all__ = ["quantize_model"]

log = logging.getLogger(__name__)

def _fixed_size_engine(fp32_onnx: str | pathlib.Path, **options: Any) -> Segmenter:
    """The engine on a fixed-size fp32 export (int8 quantization needs fixed shapes)."""
    meta = read_onnx_metadata(fp32_onnx)
    if meta.onnx_input_size is None:
        raise ValueError("int8 quantization needs a fixed-size export; export without --dynamic")
    return Segmenter(fp32_onnx, device="cpu", input_size=meta.onnx_input_size, **options)


def quantize_model(
    fp32_onnx: str | pathlib.Path,
    output: str | pathlib.Path,
    calibration_dir: str | pathlib.Path,
    *,
    num_images: int = 32,
    method: str = "minmax",
) -> pathlib.Path:
    """Write an int8 (QDQ) copy of ``fp32_onnx`` calibrated on images from ``calibration_dir``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    engine = _fixed_size_engine(fp32_onnx)
    files = calibration_images(calibration_dir, num_images)
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ValueError(f"calibration method {method!r} must be one of: {', '.join(methods)}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[pathlib.Path] = iter(files)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self._it, None)
            return None if path is None else {"input": engine.network_input(read_bgr(path), "bgr").numpy()}

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
        calibrate_method=methods[method],
    )
    proto = onnx.load(str(output))
    calibration = {"images": len(files), "method": method, "directory": str(calibration_dir)}
    meta = engine.meta.replace(onnx_path=None, onnx={**engine.meta.onnx, "onnx_precision": "int8",
                                                     "int8_calibration": calibration})
    set_onnx_metadata(proto, meta)
    onnx.save(proto, str(output))
    return output
