"""Scoring what the engine publishes: a dataset's mIoU through :class:`Segmenter`, and int8 vs fp32.

Predictions come from the node's own engine (:class:`esnet_ros.inference.segmenter.Segmenter`),
evaluated at the **full label resolution**, with its ``upsample`` option (``nearest`` labels by
default, as the node publishes them; ``bilinear`` logits then argmax, as the Cityscapes benchmark
usually scores). ``esnet predict`` writes exactly these predictions, so the official
``cityscapesscripts`` evaluation of its ``labelIds`` PNGs gives the same numbers. The metrics are
:class:`esnet_ros.training.metrics.ConfusionMatrix`'s (the one mIoU of the package).

The report holds ``miou``, ``category_miou``, ``per_class_iou`` (class name -> IoU; ``None`` for
classes with neither ground truth nor predictions), ``per_category_iou`` and ``pixel_accuracy``,
all fractions 0..1. ``esnet evaluate`` is :mod:`esnet_ros.cli.evaluate`.
"""

from __future__ import annotations

import logging
import pathlib
import time
from typing import Any, Sequence

import numpy as np

from esnet_ros.core.image_files import read_bgr
from esnet_ros.data.datasets import SegmentationDataset
from esnet_ros.inference.segmenter import DEFAULT_UPSAMPLE, Segmenter
from esnet_ros.training.metrics import ConfusionMatrix

__all__ = ["evaluate_dataset", "evaluation_report", "compare_predictions"]

log = logging.getLogger(__name__)


def evaluate_dataset(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    *,
    upsample: str = DEFAULT_UPSAMPLE,
    progress: bool = False,
) -> ConfusionMatrix:
    """Confusion matrix of ``segmenter``'s labels over every image of ``dataset`` at full label resolution."""
    confmat = ConfusionMatrix.for_labels(dataset.labels)
    indices = range(len(dataset))
    if progress:
        from tqdm import tqdm  # the progress bar only for interactive runs

        indices = tqdm(indices, desc=f"evaluate {dataset.split}", unit="image")
    for i in indices:
        image, label = dataset.load(i)
        confmat.update(label, segmenter(image, color_order="rgb", upsample=upsample).labels)
    return confmat


def evaluation_report(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    *,
    upsample: str = DEFAULT_UPSAMPLE,
    progress: bool = False,
) -> tuple[dict[str, Any], ConfusionMatrix]:
    """``(report, confusion matrix)``: the metrics plus what produced them (weights, sizes, time)."""
    start = time.perf_counter()
    confmat = evaluate_dataset(segmenter, dataset, upsample=upsample, progress=progress)
    result = confmat.compute()
    report = {
        "miou": result["miou"],
        "category_miou": result["category_miou"],
        "per_class_iou": result["per_class_iou"],
        "per_category_iou": result["per_category_iou"],
        "pixel_accuracy": result["pixel_accuracy"],
        "num_images": len(dataset),
        "pixels": result["pixels"],
        "split": dataset.split,
        "data": str(dataset.root),
        "weights": segmenter.meta.onnx_path or segmenter.meta.source,
        "input_size": list(segmenter.input_size),
        "upsample": upsample,
        "backend": segmenter.backend.name,
        "precision": segmenter.precision,
        "evaluated_at": "full label resolution",
        "seconds": round(time.perf_counter() - start, 2),
    }
    return report, confmat


def compare_predictions(
    fp32_onnx: str | pathlib.Path,
    int8_onnx: str | pathlib.Path,
    images: Sequence[str | pathlib.Path],
    *,
    ground_truth: Sequence[np.ndarray] | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """Labels of an fp32 and an int8 export on ``images`` (at network resolution), both through the engine.

    Returns pixel ``agreement``, ``miou_vs_fp32`` (int8 labels scored against fp32 labels) and,
    with ``ground_truth`` (train-id maps at network resolution, 255 = ignore),
    ``miou_fp32``, ``miou_int8`` and ``miou_drop`` (points).
    """
    options = {"threads": threads} if threads else None
    fp32 = Segmenter(fp32_onnx, device="cpu", backend="onnxruntime", precision="fp32", backend_options=options)
    int8 = Segmenter(int8_onnx, device="cpu", backend="onnxruntime", precision="int8", backend_options=options)
    vs_fp32, m32, m8 = (ConfusionMatrix.for_labels(fp32.labels) for _ in range(3))
    agree = total = 0
    for i, path in enumerate(images):
        bgr = read_bgr(path)
        p32 = fp32(bgr, color_order="bgr", resolution="network").labels
        p8 = int8(bgr, color_order="bgr", resolution="network").labels
        agree += int((p32 == p8).sum())
        total += p32.size
        vs_fp32.update(p32, p8)
        if ground_truth is not None:
            m32.update(ground_truth[i], p32)
            m8.update(ground_truth[i], p8)
    out = {"agreement": agree / max(total, 1), "miou_vs_fp32": vs_fp32.compute()["miou"], "images": len(images)}
    if ground_truth is not None:
        out.update(miou_fp32=m32.compute()["miou"], miou_int8=m8.compute()["miou"])
        out["miou_drop"] = 100.0 * (out["miou_fp32"] - out["miou_int8"])
    return out
