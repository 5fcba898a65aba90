"""``esnet evaluate``: mIoU, category mIoU, per-class IoU and pixel accuracy, as Cityscapes measures them.

Predictions are made at the network input size and evaluated at the **full label resolution**:
the logits are bilinearly upsampled to each ground-truth image's size before the argmax (what
the Cityscapes benchmark scores).  ``esnet predict`` writes exactly these predictions, so the
official ``cityscapesscripts`` evaluation of its ``labelIds`` PNGs gives the same numbers.

    esnet evaluate --weights W --data DIR --split val --json out.json [--confusion-png cm.png]

The JSON holds ``miou``, ``category_miou``, ``per_class_iou`` (class name -> IoU; ``null`` for
classes with neither ground truth nor predictions), ``per_category_iou`` and ``pixel_accuracy``,
all fractions 0..1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pathlib
import time
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from esnet_ros.core.checkpoint import labels_from_meta, load_checkpoint, resolve_weights
from esnet_ros.data.datasets import LABEL_KINDS, Resize, SegmentationDataset
from esnet_ros.core.labels import load_labels_yaml
from esnet_ros.training.metrics import ConfusionMatrix, save_confusion_png
from esnet_ros.core.model import check_input_size

__all__ = ["add_arguments", "run", "evaluate_dataset", "Predictor", "load_model", "json_safe"]

log = logging.getLogger(__name__)


def json_safe(value: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def load_model(weights: str | None, device: torch.device, labels_yaml: str | None = None):
    """``(model, meta, labels)`` from a checkpoint (the bundled demo model when ``weights`` is empty)."""
    path = resolve_weights(weights)
    labels = load_labels_yaml(labels_yaml) if labels_yaml else None
    model, meta = load_checkpoint(path, device, labels=labels)
    return model, meta, labels_from_meta(meta)


class Predictor:
    """Full-resolution train ids from uint8 images: resize (bilinear) to the network input,
    normalize as the checkpoint records, run, upsample the logits bilinearly, argmax.

    The training loop's validation and ``esnet evaluate``/``esnet predict`` all use this math.
    """

    def __init__(self, model: torch.nn.Module, meta: Mapping[str, Any], device: torch.device,
                 input_size: tuple[int, int] | None = None) -> None:
        size = tuple(input_size) if input_size else tuple(meta.get("input_size", (1024, 512)))
        check_input_size(int(size[0]), int(size[1]), what="network input")
        self.model = model.eval()
        self.device = device
        self.input_size = (int(size[0]), int(size[1]))
        norm = meta["normalization"]
        self.color_order = norm["color_order"]
        std = torch.tensor(norm["std"], dtype=torch.float32).view(1, 3, 1, 1)
        self.gain = (float(norm["scale"]) / std).to(device)
        self.bias = (-torch.tensor(norm["mean"], dtype=torch.float32).view(1, 3, 1, 1) / std).to(device)

    def preprocess(self, image_rgb: np.ndarray) -> torch.Tensor:
        """``(H,W,3)`` uint8 RGB -> ``(1,3,h,w)`` normalized network input."""
        resized, _ = Resize(self.input_size, resize_label=False)(image_rgb, np.zeros((1, 1), np.uint8))
        x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)[None].float().to(self.device)
        if self.color_order == "bgr":
            x = x.flip(1)
        return x * self.gain + self.bias

    @torch.inference_mode()
    def logits(self, image_rgb: np.ndarray) -> torch.Tensor:
        """``(C,H,W)`` float logits at the image's resolution."""
        out = self.model(self.preprocess(image_rgb))
        h, w = image_rgb.shape[:2]
        if tuple(out.shape[2:]) != (h, w):
            out = F.interpolate(out.float(), size=(h, w), mode="bilinear", align_corners=False)
        return out[0]

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        """``(H,W)`` uint8 train ids at the image's resolution."""
        return self.logits(image_rgb).argmax(0).to(torch.uint8).cpu().numpy()


def evaluate_dataset(predictor: Predictor, dataset: SegmentationDataset, *, progress: bool = False) -> ConfusionMatrix:
    """Confusion matrix of ``predictor`` over every image of ``dataset`` at full label resolution."""
    confmat = ConfusionMatrix.for_labels(dataset.labels)
    indices = range(len(dataset))
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"evaluate {dataset.split}", unit="image")
    for i in indices:
        image, label = dataset.load(i)
        confmat.update(torch.from_numpy(label), torch.from_numpy(predictor(image)))
    return confmat


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default="", help="checkpoint (default: the bundled demo model)")
    parser.add_argument("--data", required=True, help="dataset folder (Cityscapes layout, or images/ + labels/)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--labels", default=None, help="labels YAML overriding the checkpoint's class list")
    parser.add_argument("--label-kind", default="labelIds", choices=LABEL_KINDS,
                        help="Cityscapes layout: *_gtFine_labelIds.png (default) or *_gtFine_labelTrainIds.png")
    parser.add_argument("--input-size", default=None,
                        help="network input WIDTHxHEIGHT (default: the size the checkpoint was trained at)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", default=None, help="write the metrics to this JSON file")
    parser.add_argument("--confusion-png", default=None, help="write the confusion matrix to this PNG")


def run(args: argparse.Namespace) -> int:
    from esnet_ros.inference.backends import resolve_device
    from esnet_ros.training.train import parse_size

    device = resolve_device(args.device)
    model, meta, labels = load_model(args.weights, device, args.labels)
    size = parse_size(args.input_size) if args.input_size else None
    predictor = Predictor(model, meta, device, size)
    dataset = SegmentationDataset(args.data, args.split, labels, label_kind=args.label_kind)
    start = time.perf_counter()
    confmat = evaluate_dataset(predictor, dataset, progress=True)
    result = confmat.compute()
    report = {
        "miou": result["miou"],
        "category_miou": result["category_miou"],
        "per_class_iou": result["per_class_iou"],
        "per_category_iou": result["per_category_iou"],
        "pixel_accuracy": result["pixel_accuracy"],
        "num_images": len(dataset),
        "pixels": result["pixels"],
        "split": args.split,
        "data": str(args.data),
        "weights": str(meta.get("source", args.weights)),
        "input_size": list(predictor.input_size),
        "evaluated_at": "full label resolution",
        "seconds": round(time.perf_counter() - start, 2),
    }
    print(confmat)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_safe(report), indent=2) + "\n")
        log.info("wrote %s", path)
    if args.confusion_png:
        save_confusion_png(confmat, args.confusion_png, title=f"{labels.name} {args.split}")
        log.info("wrote %s", args.confusion_png)
    return 0
