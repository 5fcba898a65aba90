"""Scoring the engine: a dataset's mIoU as the node would segment it, and what int8 costs.

:func:`evaluate_dataset` runs every image through the same :class:`Segmenter` the node runs
(``upsample`` as the node's parameter of that name) and scores its labels at the **full label
resolution** with :class:`ConfusionMatrix` (the Cityscapes benchmark's rules).  ``esnet predict``
writes exactly these labels, so the official ``cityscapesscripts`` evaluation of its
``labelIds`` PNGs gives the same numbers.

The report (:func:`evaluation_report`) holds ``miou``, ``per_class_iou`` (class name -> IoU; NaN
for classes with neither ground truth nor predictions), ``class_avg_acc`` and ``per_class_acc``
(recall), ``pixel_acc`` (= ``pixel_accuracy``), and for class lists with categories (Cityscapes)
``category_miou`` and ``per_category_iou``, all fractions 0..1. For CamVid these are its
standard protocol: 11-class mIoU over the whole split, class average and global accuracy.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from esnet_ros.core.image_files import read_bgr, resize_frame
from esnet_ros.data.datasets import SegmentationDataset
from esnet_ros.inference.segmenter import DEFAULT_UPSAMPLE, Segmenter
from esnet_ros.training.metrics import ConfusionMatrix

__all__ = ["CameraModel", "metrics_report", "evaluate_dataset", "evaluation_report", "compare_predictions"]


@dataclasses.dataclass(frozen=True)
class CameraModel:
    """What a user's camera does to a dataset image before the node sees it.

    ``size``: the camera's resolution (the image is resized to it; the node's labels are then
    resized back to the ground truth's grid, nearest, to be scored). ``jpeg_quality``: the frame
    travels JPEG-compressed at this quality (a ``compressed`` image transport).
    """

    size: tuple[int, int] | None = None
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality {self.jpeg_quality} is outside 1..100")
        if self.size is not None and min(self.size) < 1:
            raise ValueError(f"camera size {self.size[0]}x{self.size[1]} must be positive")

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        if self.size is not None:
            rgb = resize_frame(rgb, self.size)
        if self.jpeg_quality is not None:
            ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise ValueError(f"OpenCV could not JPEG-encode a {rgb.shape[1]}x{rgb.shape[0]} image")
            rgb = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
        return np.ascontiguousarray(rgb)

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size) if self.size else None, "jpeg_quality": self.jpeg_quality}


def evaluate_dataset(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    *,
    upsample: str = DEFAULT_UPSAMPLE,
    progress: bool = False,
    camera: CameraModel | None = None,
) -> ConfusionMatrix:
    """Confusion matrix of ``segmenter``'s labels over every image of ``dataset``, at full label resolution
    (each image first through ``camera``, when given)."""
    confmat = ConfusionMatrix.for_labels(dataset.labels)
    indices: Any = range(len(dataset))
    if progress:
        import sys

        from tqdm import tqdm  # a progress bar for the CLI only, and only on a terminal (not in a log)

        indices = tqdm(indices, desc=f"evaluate {dataset.split}", unit="image", disable=not sys.stderr.isatty())
    for i in indices:
        image, label = dataset.load(i)
        if camera is not None:
            image = camera.apply(image)
        predicted = segmenter(image, "rgb", upsample=upsample).labels
        if predicted.shape != label.shape:
            predicted = cv2.resize(predicted, label.shape[::-1], interpolation=cv2.INTER_NEAREST)
        confmat.update(label, predicted)
    return confmat


def metrics_report(confmat: ConfusionMatrix, *, images: int) -> dict[str, Any]:
    """The metrics every ``esnet evaluate`` report starts with, for a folder or a recording."""
    result = confmat.compute()
    keys = ("miou", "class_avg_acc", "pixel_acc", "per_class_iou", "per_class_acc", "pixel_accuracy")
    if confmat.categories is not None:
        keys += ("category_miou", "per_category_iou")
    return {**{key: result[key] for key in keys}, "num_images": images, "pixels": result["pixels"]}


def evaluation_report(
    confmat: ConfusionMatrix,
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    *,
    upsample: str,
    seconds: float,
    camera: CameraModel | None = None,
) -> dict[str, Any]:
    """The JSON report of ``esnet evaluate`` (NaN where undefined: pass it through ``json_safe``)."""
    return {
        **({"camera": camera.to_dict()} if camera is not None else {}),
        **metrics_report(confmat, images=len(dataset)),
        "split": dataset.split,
        "data": str(dataset.root),
        "weights": str(segmenter.meta.source or segmenter.meta.onnx_path or ""),
        "input_size": list(segmenter.input_size),
        "backend": segmenter.backend.name,
        "precision": segmenter.precision,
        "precision_reason": segmenter.precision_reason,
        "upsample": upsample,
        "evaluated_at": "full label resolution",
        "seconds": round(seconds, 2),
    }


def compare_predictions(
    fp32_onnx: str | pathlib.Path,
    int8_onnx: str | pathlib.Path,
    images: Sequence[str | pathlib.Path],
    *,
    ground_truth: Sequence[np.ndarray] | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """Labels of the fp32 and int8 models on ``images``, through the engine, at network resolution.

    Returns pixel ``agreement``, ``miou_vs_fp32`` (int8 labels scored against fp32 labels) and,
    with ``ground_truth`` (train-id maps at network resolution, 255 = ignore),
    ``miou_fp32``, ``miou_int8`` and ``miou_drop`` (points).
    """
    fp32 = Segmenter(fp32_onnx, device="cpu", backend="onnxruntime", precision="fp32", num_threads=threads or 0)
    int8 = Segmenter(int8_onnx, device="cpu", backend="onnxruntime", precision="int8", num_threads=threads or 0)
    labels = fp32.labels
    vs_fp32, m32, m8 = (ConfusionMatrix.for_labels(labels) for _ in range(3))
    agree = total = 0
    started = time.perf_counter()
    for i, path in enumerate(images):
        image = read_bgr(path)
        p32 = fp32(image, "bgr", resolution="network").labels
        p8 = int8(image, "bgr", resolution="network").labels
        agree += int((p32 == p8).sum())
        total += p32.size
        vs_fp32.update(p32, p8)
        if ground_truth is not None:
            m32.update(ground_truth[i], p32)
            m8.update(ground_truth[i], p8)
    out = {
        "agreement": agree / max(total, 1),
        "miou_vs_fp32": vs_fp32.compute()["miou"],
        "images": len(images),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if ground_truth is not None:
        out.update(miou_fp32=m32.compute()["miou"], miou_int8=m8.compute()["miou"])
        out["miou_drop"] = 100.0 * (out["miou_fp32"] - out["miou_int8"])
    return out
