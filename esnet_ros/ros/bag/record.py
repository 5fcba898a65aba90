"""Synthetic recordings and ground truth read back from recordings.

- :func:`write_synthetic_bag` (``esnet synth --bag DIR``): synthetic street scenes as a rosbag2, the
  images on ``/camera/image_raw`` (``bgr8``) and their ground-truth trainIds on ``/camera/labels_gt``
  (``mono8``, 255 = ignore) with the same stamps, as the synthetic camera publishes them;
- :func:`label_pairs` (``esnet evaluate --bag DIR --gt-topic T``): the ``(prediction, ground truth)``
  label images of a segmented recording, matched by header stamp.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import cv2
import numpy as np
from rosbags.typesys.store import Typestore

from esnet_ros.core.labels import LabelSet
from esnet_ros.data.synth import label_ids_to_train_ids, scene_pairs
from esnet_ros.ros.bag.reader import BagInput
from esnet_ros.ros.bag.writer import BagOutput, typestore
from esnet_ros.training.metrics import ConfusionMatrix

__all__ = [
    "IMAGE_TOPIC",
    "GT_TOPIC",
    "PREDICTION_TOPIC",
    "write_synthetic_bag",
    "image_message",
    "label_pairs",
    "bag_confusion",
]

IMAGE_TOPIC = "/camera/image_raw"
GT_TOPIC = "/camera/labels_gt"
PREDICTION_TOPIC = "/esnet/labels"
FRAME_ID = "camera"


def image_message(store: Typestore, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = FRAME_ID):
    """A ``sensor_msgs/msg/Image`` of ``rosbags`` (no rclpy) holding ``array``."""
    types = store.types
    header = types["std_msgs/msg/Header"](
        types["builtin_interfaces/msg/Time"](stamp_ns // 10**9, stamp_ns % 10**9), frame_id
    )
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    return types["sensor_msgs/msg/Image"](
        header, height, width, encoding, 0, array.strides[0], array.reshape(-1).view(np.uint8)
    )


def write_synthetic_bag(
    out: str | os.PathLike,
    count: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (1280, 720),
    rate_hz: float = 10.0,
    storage: str = "mcap",
    start_ns: int = 1_700_000_000 * 10**9,
    overwrite: bool = False,
) -> pathlib.Path:
    """Record ``count`` synthetic scenes (scene ``i`` of split ``val`` for ``seed``) at ``rate_hz``."""
    if count < 1:
        raise ValueError(f"--bag needs at least one scene (got {count}); pass --val N with N >= 1")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz={rate_hz} must be > 0")
    store = typestore()
    bag = BagOutput(out, storage=storage, overwrite=overwrite)
    try:
        for topic in (IMAGE_TOPIC, GT_TOPIC):
            bag.add(topic, "sensor_msgs/msg/Image")
        for i, (bgr, label_ids) in enumerate(scene_pairs(count, seed=seed, size=size)):
            stamp = start_ns + round(i * 1e9 / rate_hz)
            train_ids = label_ids_to_train_ids(label_ids)
            for topic, array, encoding in ((GT_TOPIC, train_ids, "mono8"), (IMAGE_TOPIC, bgr, "bgr8")):
                msg = image_message(store, array, encoding, stamp)
                bag.write(topic, stamp, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    except BaseException:
        bag.abort()
        raise
    return bag.close()


def _mono8(store: Typestore, raw: bytes, topic: str) -> tuple[int, np.ndarray]:
    msg = store.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    if msg.encoding not in ("mono8", "8UC1"):
        raise ValueError(f"{topic} has encoding {msg.encoding}; label images must be mono8 (class ids)")
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width]
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, rows


def label_pairs(
    path: str | os.PathLike, gt_topic: str = GT_TOPIC, prediction_topic: str = PREDICTION_TOPIC
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(prediction, ground truth)`` ``(H,W) uint8`` pairs with equal header stamps, in recording order.

    A prediction at network resolution is compared after nearest upsampling to the ground truth's size.
    """
    store = typestore()
    with BagInput(path) as bag:
        for topic in (gt_topic, prediction_topic):
            if topic not in bag.topics:
                found = "; ".join(t.describe() for t in bag.topics.values())
                raise ValueError(
                    f"{path} has no topic {topic} (topics: {found}); segment the recording with "
                    f"esnet bag --copy-topics {gt_topic} first"
                )
        truth: dict[int, np.ndarray] = {}
        predictions: dict[int, np.ndarray] = {}
        for topic, _, raw in bag.messages({gt_topic, prediction_topic}):
            stamp, labels = _mono8(store, raw, topic)
            mine, other = (truth, predictions) if topic == gt_topic else (predictions, truth)
            if stamp in other:
                gt, pred = (labels, other.pop(stamp)) if topic == gt_topic else (other.pop(stamp), labels)
                if pred.shape != gt.shape:
                    pred = cv2.resize(pred, gt.shape[::-1], interpolation=cv2.INTER_NEAREST)
                yield pred, gt
            else:
                mine[stamp] = labels


def bag_confusion(
    path: str | os.PathLike, labels: LabelSet, gt_topic: str = GT_TOPIC, prediction_topic: str = PREDICTION_TOPIC
) -> tuple[ConfusionMatrix, int]:
    """The confusion matrix of a segmented recording against its ground truth, and the number of frames.

    ``esnet evaluate --bag DIR --gt-topic T`` reports from it what ``esnet evaluate`` reports for a folder.
    """
    confmat = ConfusionMatrix.for_labels(labels)
    frames = 0
    for prediction, truth in label_pairs(path, gt_topic, prediction_topic):
        confmat.update(truth, prediction)
        frames += 1
    if not frames:
        raise ValueError(
            f"{path}: no {prediction_topic} message has the stamp of a {gt_topic} message; "
            f"segment the recording with esnet bag --copy-topics {gt_topic}"
        )
    return confmat, frames
