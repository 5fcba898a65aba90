"""int8 on the CPU: post-training static quantization of an exported ESNet with ONNX Runtime.

Calibration runs the fp32 model on images the user supplies (ideally from the deployment's
camera; the synthetic set from ``esnet synth`` for the demo model), preprocessed exactly as the
engine does, and records activation ranges; weights are quantized per channel (int8, symmetric),
activations per tensor (uint8).  The result is a QDQ ONNX model that ONNX Runtime runs with its
int8 (VNNI/AMX where the CPU has them) kernels; the esnet_ros metadata is copied over.

Usually run through ``esnet export --int8 --calibration-dir DIR``; then
``Segmenter("esnet_int8.onnx", precision="int8")`` or the node with ``weights:=esnet_int8.onnx``.
:func:`compare_predictions` measures what int8 costs (pixel agreement and the mIoU of the
int8 labels against the fp32 labels, or against ground truth when given).
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

__all__ = ["calibration_images", "preprocess_image", "quantize_model", "compare_predictions"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def calibration_images(directory: str | pathlib.Path, limit: int) -> list[pathlib.Path]:
    """Up to ``limit`` images under ``directory`` (recursive), spread evenly over the sorted list."""
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration directory {root} does not exist; pass a folder of PNG/JPEG images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and "gtFine" not in p.parts)
    if not files:
        raise FileNotFoundError(f"no .png/.jpg images under {root}; pass a folder of camera-like images")
    if limit < 1:
        raise ValueError(f"calibration image count {limit} must be >= 1")
    idx = np.linspace(0, len(files) - 1, num=min(limit, len(files))).round().astype(int)
    return [files[i] for i in sorted(set(idx.tolist()))]


def preprocess_image(path: str | pathlib.Path, meta: Mapping[str, Any], size: tuple[int, int]) -> np.ndarray:
    """An image file -> ``(1,3,H,W)`` float32, normalized as the engine does for this model."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}; is it a PNG/JPEG file?")
    norm = meta["normalization"]
    pixels = bgr if norm["color_order"] == "bgr" else bgr[:, :, ::-1]
    w, h = size
    x = cv2.resize(np.ascontiguousarray(pixels, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    x = (x * float(norm["scale"]) - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _input_size(meta: Mapping[str, Any]) -> tuple[int, int]:
    size = meta.get("onnx_input_size")
    if not size:
        raise ValueError("int8 quantization needs a fixed-size export; export without --dynamic")
    return int(size[0]), int(size[1])


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

    from esnet_ros.inference.onnx_export import META_KEY, read_onnx_metadata

    meta = read_onnx_metadata(fp32_onnx)
    size = _input_size(meta)
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
            return None if path is None else {"input": preprocess_image(path, meta, size)}

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
    info = dict(meta, onnx_precision="int8", int8_calibration={"images": len(files), "method": method,
                                                               "directory": str(calibration_dir)})
    for p in proto.metadata_props:
        if p.key == META_KEY:
            p.value = json.dumps(info, default=str)
            break
    else:
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(info, default=str)
    onnx.save(proto, str(output))
    return output


def compare_predictions(
    fp32_onnx: str | pathlib.Path,
    int8_onnx: str | pathlib.Path,
    images: Sequence[str | pathlib.Path],
    *,
    ground_truth: Sequence[np.ndarray] | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """Labels of the fp32 and int8 models on ``images`` (at network resolution).

    Returns pixel ``agreement``, ``miou_vs_fp32`` (int8 labels scored against fp32 labels) and,
    with ``ground_truth`` (train-id maps at network resolution, 255 = ignore),
    ``miou_fp32``, ``miou_int8`` and ``miou_drop`` (points).
    """
    import onnxruntime as ort

    from esnet_ros.inference.onnx_export import read_onnx_metadata

    meta = read_onnx_metadata(fp32_onnx)
    size = _input_size(meta)
    c = int(meta["num_classes"])
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    s32 = ort.InferenceSession(str(fp32_onnx), opts, providers=["CPUExecutionProvider"])
    s8 = ort.InferenceSession(str(int8_onnx), opts, providers=["CPUExecutionProvider"])
    agree = total = 0
    m_vs = np.zeros((c, c), np.int64)
    m32 = np.zeros((c, c), np.int64)
    m8 = np.zeros((c, c), np.int64)

    def add(mat: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> None:
        ok = truth < c
        mat += np.bincount(truth[ok].astype(np.int64) * c + pred[ok], minlength=c * c).reshape(c, c)

    for i, path in enumerate(images):
        x = preprocess_image(path, meta, size)
        p32 = s32.run(None, {"input": x})[0][0].argmax(0)
        p8 = s8.run(None, {"input": x})[0][0].argmax(0)
        agree += int((p32 == p8).sum())
        total += p32.size
        add(m_vs, p32, p8)
        if ground_truth is not None:
            add(m32, ground_truth[i], p32)
            add(m8, ground_truth[i], p8)
    out = {"agreement": agree / max(total, 1), "miou_vs_fp32": _miou(m_vs), "images": len(images)}
    if ground_truth is not None:
        out.update(miou_fp32=_miou(m32), miou_int8=_miou(m8))
        out["miou_drop"] = 100.0 * (out["miou_fp32"] - out["miou_int8"])
    return out


def _miou(mat: np.ndarray) -> float:
    tp = np.diag(mat).astype(np.float64)
    denom = mat.sum(0) + mat.sum(1) - tp
    present = denom > 0
    return float((tp[present] / denom[present]).mean()) if present.any() else float("nan")
