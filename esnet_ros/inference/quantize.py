"""int8 on the CPU: post-training static quantization of an exported ESNet (ONNX Runtime or NNCF).

Calibration runs the fp32 model on images the user supplies (ideally from the deployment's
camera; the synthetic set from ``esnet synth`` for the demo model), preprocessed by the engine's
own kernel (:func:`esnet_ros.inference.cpu_ops.network_input`, which the :class:`Segmenter` runs:
the same resize and ``ModelMeta.normalization`` as the node), and records activation ranges; weights
are quantized per channel (int8, symmetric), activations per tensor (uint8).  The result is a QDQ ONNX model that ONNX
Runtime runs with its int8 (VNNI/AMX where the CPU has them) kernels; the esnet_ros metadata is
copied over.

Two quantizers write that QDQ model (``quantizer=``): ``onnxruntime`` (``quantize_static``, the
layout ONNX Runtime runs fastest) and ``nncf`` (NNCF's ONNX backend: symmetric activations where
they pay, the pattern OpenVINO fuses best: the CamVid model at 480x360, 640x480 camera, 2-core EPYC
without VNNI: 58 ms a frame on OpenVINO vs 73 ms for the ``onnxruntime`` quantizer's file).  The
bundled model's int8 companion is the ``nncf`` one (``esnet bundle --int8-calibration-dir``).

Usually run through ``esnet export --int8 --calibration-dir DIR``; then
``Segmenter("esnet_int8.onnx", precision="int8")`` or the node with ``weights:=esnet_int8.onnx``.
:func:`esnet_ros.training.evaluation.compare_predictions` measures what int8 costs.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterator

import numpy as np

from esnet_ros.core.image_files import calibration_images, read_bgr
from esnet_ros.core.metadata import ModelMeta
from esnet_ros.inference.cpu_ops import network_input
from esnet_ros.inference.onnx_export import read_onnx_metadata, write_onnx_metadata

__all__ = ["CALIBRATION_METHODS", "QUANTIZERS", "calibration_input", "quantize_model"]

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
QUANTIZERS = ("onnxruntime", "nncf")


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
    quantizer: str = "onnxruntime",
    calibration_size: tuple[int, int] | None = None,
) -> pathlib.Path:
    """Write an int8 (QDQ) copy of ``fp32_onnx`` calibrated on images from ``calibration_dir``.

    ``calibration_size``: the network input ``(W, H)`` to calibrate at; needed for a ``--dynamic``
    export (the ``nncf`` quantizer keeps it dynamic), else the export's fixed size.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r} must be one of: {', '.join(CALIBRATION_METHODS)}")
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer={quantizer!r} must be one of: {', '.join(QUANTIZERS)}")
    meta = read_onnx_metadata(fp32_onnx)
    size = calibration_size or meta.onnx_input_size
    if size is None:
        raise ValueError(
            "int8 calibration of a dynamic export needs calibration_size=(W, H); or export without --dynamic"
        )
    if quantizer == "onnxruntime" and meta.onnx_input_size is None:
        raise ValueError(
            "quantizer=onnxruntime needs a fixed-size export; export without --dynamic (or use quantizer=nncf)"
        )
    files = calibration_images(calibration_dir, num_images)
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    log.info("calibrating int8 (%s) on %d images from %s", quantizer, len(files), calibration_dir)
    if quantizer == "nncf":
        _quantize_nncf(fp32_onnx, output, [calibration_input(f, meta, size) for f in files])
    else:
        _quantize_onnxruntime(fp32_onnx, output, (calibration_input(f, meta, size) for f in files), method)
    calibration = {
        "images": len(files),
        "method": method if quantizer == "onnxruntime" else "nncf-mixed",
        "quantizer": quantizer,
        "directory": str(calibration_dir),
        "size": list(size),
    }
    write_onnx_metadata(output, meta.replace(onnx_precision="int8", int8_calibration=calibration))
    return output


def _quantize_onnxruntime(
    fp32_onnx: str | pathlib.Path, output: pathlib.Path, inputs: Iterator[np.ndarray], method: str
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(inputs, None)
            return None if x is None else {"input": x}

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


def _quantize_nncf(fp32_onnx: str | pathlib.Path, output: pathlib.Path, inputs: list[np.ndarray]) -> None:
    try:
        import nncf
    except ImportError as exc:
        raise ValueError("quantizer=nncf needs NNCF: pip install nncf (or use quantizer=onnxruntime)") from exc
    import onnx

    dataset = nncf.Dataset(inputs, lambda x: {"input": x})
    quantized = nncf.quantize(
        onnx.load(str(fp32_onnx)), dataset, subset_size=len(inputs), preset=nncf.QuantizationPreset.MIXED
    )
    onnx.save(quantized, str(output))
