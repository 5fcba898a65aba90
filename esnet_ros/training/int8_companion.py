"""A model's int8 companion: NNCF-quantized beside its weights, with the accuracy it was validated at.

:func:`build_int8_companion` writes ``NAME_int8.onnx`` next to ``NAME.safetensors``:

1. the checkpoint exported to ONNX (BatchNorm folded, dynamic input size);
2. quantized to int8 QDQ by NNCF (:func:`esnet_ros.inference.quantize.quantize_model`, ``quantizer="nncf"``),
   calibrated on images of the model's **training** split, preprocessed by the engine at the model's
   input size;
3. validated: the fp32 checkpoint and the int8 file segment the **validation** split through the same
   :class:`~esnet_ros.inference.segmenter.Segmenter` (OpenVINO, as ``precision=auto`` would run it), scored
   by :func:`~esnet_ros.training.evaluation.evaluate_dataset`; the result goes into the file's metadata as
   ``int8_validation`` (``miou_fp32``, ``miou_int8``, ``miou_loss_points``, the split, the CPU).

``precision=auto`` then runs the companion where ``miou_loss_points`` is at most
:data:`~esnet_ros.inference.auto_precision.INT8_MAX_LOSS` (:mod:`esnet_ros.inference.auto_precision`).
"""

from __future__ import annotations

import pathlib
import platform
import tempfile
import time
from typing import Any

from esnet_ros.core.checkpoint import load_checkpoint
from esnet_ros.data.datasets import SegmentationDataset
from esnet_ros.inference.auto_precision import INT8_MAX_LOSS
from esnet_ros.inference.devices import cpu_isa, openvino_version
from esnet_ros.inference.onnx_export import export_onnx, read_onnx_metadata, write_onnx_metadata
from esnet_ros.inference.quantize import quantize_model
from esnet_ros.inference.segmenter import Segmenter
from esnet_ros.training.evaluation import evaluate_dataset

__all__ = ["companion_path", "build_int8_companion", "validate_int8"]


def companion_path(weights: str | pathlib.Path) -> pathlib.Path:
    """Where ``weights``' int8 companion lives: ``NAME_int8.onnx`` beside ``NAME.safetensors``."""
    weights = pathlib.Path(weights)
    return weights.with_name(f"{weights.stem}_int8.onnx")


def _cpu_name() -> str:
    for line in (
        pathlib.Path("/proc/cpuinfo").read_text().splitlines() if pathlib.Path("/proc/cpuinfo").exists() else ()
    ):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def validate_int8(
    weights: str | pathlib.Path,
    int8_onnx: str | pathlib.Path,
    data: str | pathlib.Path,
    split: str,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """mIoU of the fp32 ``weights`` and of ``int8_onnx`` on ``data``'s ``split``, through the engine on OpenVINO."""
    fp32 = Segmenter(weights, device="cpu", backend="openvino", precision="fp32")
    int8 = Segmenter(int8_onnx, device="cpu", backend="openvino", precision="int8", input_size=fp32.input_size)
    dataset = SegmentationDataset(data, split, fp32.labels)
    start = time.perf_counter()
    m32 = evaluate_dataset(fp32, dataset, progress=progress).compute()["miou"]
    m8 = evaluate_dataset(int8, dataset, progress=progress).compute()["miou"]
    isa = cpu_isa()
    return {
        "dataset": fp32.labels.name,
        "split": split,
        "images": len(dataset),
        "input_size": list(fp32.input_size),
        "backend": f"openvino {openvino_version()}",
        "miou_fp32": round(float(m32), 6),
        "miou_int8": round(float(m8), 6),
        "miou_loss_points": round(100.0 * float(m32 - m8), 3),
        "max_loss_for_auto": INT8_MAX_LOSS,
        "cpu": _cpu_name(),
        "cpu_flags": sorted(flag for flag, present in isa.items() if present),
        "seconds": round(time.perf_counter() - start, 1),
    }


def build_int8_companion(
    weights: str | pathlib.Path,
    calibration_dir: str | pathlib.Path,
    data: str | pathlib.Path,
    *,
    split: str = "val",
    calibration_images: int = 128,
    output: str | pathlib.Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write ``weights``' int8 companion (see the module docstring); returns its ``int8_validation``."""
    weights = pathlib.Path(weights)
    output = pathlib.Path(output) if output is not None else companion_path(weights)
    model, meta = load_checkpoint(weights, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, meta, pathlib.Path(tmp) / "fp32.onnx", input_size=meta.input_size, dynamic=True)
        quantize_model(
            fp32,
            output,
            calibration_dir,
            num_images=calibration_images,
            quantizer="nncf",
            calibration_size=meta.input_size,
        )
    validation = validate_int8(weights, output, data, split, progress=progress)
    qmeta = read_onnx_metadata(output)
    calibration = {**dict(qmeta.int8_calibration or {}), "directory": pathlib.Path(calibration_dir).name}
    write_onnx_metadata(output, qmeta.replace(int8_calibration=calibration, int8_validation=validation))
    return validation
