"""``esnet evaluate``: mIoU, category mIoU, per-class IoU and pixel accuracy of what the engine publishes.

    esnet evaluate --weights W --data DIR --split val [--upsample nearest|bilinear] --json out.json
                   [--confusion-png cm.png]

The library is :mod:`esnet_ros.training.evaluation`; predictions come from the node's engine.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib

from esnet_ros.core.labels import load_labels_yaml
from esnet_ros.core.sizes import parse_size
from esnet_ros.core.summary import json_safe
from esnet_ros.data.datasets import LABEL_KINDS, SegmentationDataset
from esnet_ros.inference.backends import BACKENDS, PRECISIONS
from esnet_ros.inference.segmenter import DEFAULT_UPSAMPLE, UPSAMPLE_MODES, Segmenter
from esnet_ros.training.evaluation import evaluation_report
from esnet_ros.training.metrics import save_confusion_png

__all__ = ["add_arguments", "add_engine_arguments", "build_segmenter", "run"]

log = logging.getLogger(__name__)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The engine's options, shared by ``esnet evaluate`` and ``esnet predict``."""
    parser.add_argument("--weights", default="", help="checkpoint or .onnx export (default: the bundled demo model)")
    parser.add_argument("--labels", default=None, help="labels YAML overriding the checkpoint's class list")
    parser.add_argument("--input-size", default=None,
                        help="network input WIDTHxHEIGHT (default: the size the checkpoint was trained at)")
    parser.add_argument("--upsample", default=DEFAULT_UPSAMPLE, choices=UPSAMPLE_MODES,
                        help=f"labels to the image's size: nearest labels, or bilinear logits then argmax "
                             f"(default {DEFAULT_UPSAMPLE}, as the node)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--backend", default="torch", choices=BACKENDS, help="inference backend (default torch)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or int8 (an int8 .onnx)")


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    """The engine as the arguments of :func:`add_engine_arguments` describe it."""
    return Segmenter(
        args.weights,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        input_size=parse_size(args.input_size) if args.input_size else None,
        labels=load_labels_yaml(args.labels) if args.labels else None,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (Cityscapes layout, or images/ + labels/)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--label-kind", default="labelIds", choices=LABEL_KINDS,
                        help="Cityscapes layout: *_gtFine_labelIds.png (default) or *_gtFine_labelTrainIds.png")
    add_engine_arguments(parser)
    parser.add_argument("--json", default=None, help="write the metrics to this JSON file")
    parser.add_argument("--confusion-png", default=None, help="write the confusion matrix to this PNG")


def run(args: argparse.Namespace) -> int:
    segmenter = build_segmenter(args)
    dataset = SegmentationDataset(args.data, args.split, segmenter.labels, label_kind=args.label_kind)
    report, confmat = evaluation_report(segmenter, dataset, upsample=args.upsample, progress=True)
    print(confmat)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_safe(report), indent=2) + "\n")
        log.info("wrote %s", path)
    if args.confusion_png:
        save_confusion_png(confmat, args.confusion_png, title=f"{segmenter.labels.name} {args.split}")
        log.info("wrote %s", args.confusion_png)
    return 0
