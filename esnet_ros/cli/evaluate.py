"""``esnet evaluate``: mIoU, category mIoU, per-class IoU and pixel accuracy of what the node would publish.

    esnet evaluate --weights W --data DIR --split val --json out.json [--upsample bilinear] [--confusion-png cm.png]
    esnet evaluate --bag SEGMENTED --gt-topic /camera/labels_gt --json out.json    # a recording, see esnet bag

Every image goes through the node's engine (see :mod:`esnet_ros.training.evaluation`) and is scored
at the full label resolution as the Cityscapes benchmark does.  The JSON holds ``miou``,
``category_miou``, ``per_class_iou`` (class name -> IoU; ``null`` for classes with neither ground
truth nor predictions), ``per_category_iou`` and ``pixel_accuracy``, all fractions 0..1.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import time

from esnet_ros.cli.engine_options import add_engine_arguments, build_segmenter
from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights
from esnet_ros.core.labels import load_labels_yaml
from esnet_ros.core.sizes import parse_size
from esnet_ros.core.summary import json_safe
from esnet_ros.data.datasets import LABEL_KINDS, SegmentationDataset
from esnet_ros.training.evaluation import CameraModel, evaluate_dataset, evaluation_report, metrics_report
from esnet_ros.training.metrics import save_confusion_png

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="dataset folder (Cityscapes layout, or images/ + labels/)")
    parser.add_argument(
        "--bag",
        default=None,
        help="instead of --data: a recording segmented by `esnet bag --copy-topics GT_TOPIC` "
        "(its /esnet/labels scored against GT_TOPIC, frames matched by stamp)",
    )
    parser.add_argument(
        "--gt-topic", default="/camera/labels_gt", help="--bag: the ground-truth topic (trainIds, mono8)"
    )
    parser.add_argument("--split", default="val")
    parser.add_argument(
        "--label-kind",
        default="labelIds",
        choices=LABEL_KINDS,
        help="Cityscapes layout: *_gtFine_labelIds.png (default) or *_gtFine_labelTrainIds.png",
    )
    parser.add_argument(
        "--camera-size",
        default=None,
        metavar="WxH",
        help="resize each image to this camera resolution first (labels scored at their own)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=None,
        metavar="Q",
        help="JPEG-compress each image at quality Q first, as a compressed image transport does",
    )
    parser.add_argument("--json", default=None, help="write the metrics to this JSON file")
    parser.add_argument("--confusion-png", default=None, help="write the confusion matrix to this PNG")
    add_engine_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if (args.data is None) == (args.bag is None):
        raise ValueError(
            "esnet evaluate needs --data DIR (images and labels) or --bag DIR (a recording segmented "
            "by esnet bag), one of the two"
        )
    if args.bag:
        return _run_bag(args)
    segmenter = build_segmenter(args)
    dataset = SegmentationDataset(args.data, args.split, segmenter.labels, label_kind=args.label_kind)
    start = time.perf_counter()
    camera = None
    if args.camera_size or args.jpeg_quality is not None:
        camera = CameraModel(
            parse_size(args.camera_size, "--camera-size", network=False) if args.camera_size else None,
            args.jpeg_quality,
        )
    confmat = evaluate_dataset(segmenter, dataset, upsample=args.upsample, progress=True, camera=camera)
    report = evaluation_report(
        confmat, segmenter, dataset, upsample=args.upsample, seconds=time.perf_counter() - start, camera=camera
    )
    _write(args, confmat, report, title=f"{segmenter.labels.name} {args.split}")
    return 0


def _run_bag(args: argparse.Namespace) -> int:
    """Score a segmented recording: what the node published (as esnet bag wrote it) against the ground truth."""
    from esnet_ros.ros.bag.record import bag_confusion  # rosbags: only for recordings

    labels = (
        load_labels_yaml(args.labels)
        if args.labels
        else load_checkpoint(resolve_weights(args.weights or None), "cpu")[1].labels
    )
    start = time.perf_counter()
    confmat, frames = bag_confusion(args.bag, labels, args.gt_topic)
    report = {
        **metrics_report(confmat, images=frames),
        "bag": str(args.bag),
        "gt_topic": args.gt_topic,
        "evaluated_at": "the published labels' resolution",
        "seconds": round(time.perf_counter() - start, 2),
    }
    _write(args, confmat, report, title=f"{labels.name} {pathlib.Path(args.bag).name}")
    return 0


def _write(args: argparse.Namespace, confmat, report: dict, title: str) -> None:
    print(confmat)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_safe(report), indent=2) + "\n")
        log.info("wrote %s", path)
    if args.confusion_png:
        save_confusion_png(confmat, args.confusion_png, title=title)
        log.info("wrote %s", args.confusion_png)
