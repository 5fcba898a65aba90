"""The monitor of a harnessed run: one rclpy node in this process that watches the segmentation node.

:class:`Monitor` records the node's labels (latency: camera stamp -> received here), stats and
``/diagnostics``, and scores labels against the synthetic camera's ground truth, matched by stamp,
with the one mIoU (:class:`esnet_ros.training.metrics.ConfusionMatrix`); :func:`drain_and_count`
reads the node's settled counters after the camera stopped.  Used by ``esnet demo`` and ``esnet soak``.

rclpy, the message packages and torch (for scoring) are imported only when a monitor is made, so
the CLIs' ``--help`` start fast and work without ROS.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from esnet_ros.ros.images import ImageConversionError, image_to_numpy, to_color_input
from esnet_ros.tooling.harness import CAMERA_TOPIC, COUNTERS, GT_TOPIC, NODE_NAME, OUTPUT_TOPICS, Child, interruptible

__all__ = ["Monitor", "CameraCount", "Pictures", "NODE_STAGES", "message_array", "drain_and_count", "close_run"]

#: the stage times of a SegmentationStats message, in pipeline order (reported by demo, soak and bench)
NODE_STAGES = ("decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "publish_ms", "total_ms", "age_ms")

log = logging.getLogger(__name__)


class CameraCount(NamedTuple):
    """The camera's ``frames_published`` and when its diagnostics said so."""

    time: float  # time.monotonic() when the status was received
    published: int


class Pictures(NamedTuple):
    """The camera frame, the class colors and the overlay of one stamp (sensor_msgs/Image messages)."""

    stamp: int  # header stamp, ns
    input: Any  # None where the camera frame of that stamp was not received
    color: Any
    overlay: Any


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def message_array(msg) -> np.ndarray | None:
    """A sensor_msgs/Image as ``(H,W,3)`` BGR (color encodings) or ``(H,W)`` (mono8), via
    :mod:`esnet_ros.ros.images`; ``None`` for a message it refuses (the monitor counts it unmatched)."""
    try:
        if msg.encoding == "mono8":
            return image_to_numpy(msg)
        color = to_color_input(msg)
    except ImageConversionError:
        return None
    return color.image[..., ::-1] if color.color_order == "rgb" else color.image


def _counter(values: dict[str, str], name: str) -> int | None:
    """A counter from a diagnostics status (``received``, ``received_total``, ``frames_received``, ...)."""
    for key in (name, f"{name}_total", f"frames_{name}", f"{name}_frames", f"{name} frames", f"total_{name}"):
        if key in values:
            try:
                return int(float(values[key]))
            except ValueError:
                return None
    return None


class Monitor:
    """One rclpy node in this process that listens to the segmentation node (and the camera).

    Records labels (latency: camera stamp -> received here, from DDS's reception timestamp) and
    the node's per-frame stats, scores labels against ground truth matched by stamp, and keeps the
    latest ``/diagnostics`` status of every node.  :meth:`subscribe_pictures` adds the color,
    overlay and camera topics (the node computes color and overlay only while someone listens).
    """

    def __init__(
        self,
        context,
        *,
        camera_topic: str = CAMERA_TOPIC,
        ground_truth: bool = True,
        stats: bool = True,
        labels=None,
        name: str = "esnet_demo_monitor",
        all_outputs: bool = False,
    ) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.camera_topic = camera_topic
        self._gt_wanted = ground_truth
        self.labels = labels
        self._init_records()
        self._subscribe(stats=stats, ground_truth=ground_truth, all_outputs=all_outputs)
        if ground_truth and labels is not None:
            self.reset()

    def _init_records(self) -> None:
        """What the callbacks fill in."""
        self.label_times: list[float] = []  # monotonic time of each labels message
        self.latencies_ms: list[tuple[float, float]] = []  # (monotonic time, ms)
        self.label_shapes: set[tuple[int, int]] = set()
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.diagnostics_time: dict[str, float] = {}
        self.stats: list[Any] = []
        self.scores = None  # a ConfusionMatrix while scoring against ground truth
        self.frames_scored = 0
        self.unmatched_labels = 0
        self._gt: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._pending: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._cache: dict[str, collections.OrderedDict[int, Any]] = {
            k: collections.OrderedDict() for k in ("input", "color", "overlay")
        }
        self.recording = True
        self._picture_subs: list[Any] = []
        self.outputs_received: collections.Counter[str] = collections.Counter()

    def _subscribe(self, *, stats: bool, ground_truth: bool, all_outputs: bool) -> None:
        """Labels and ``/diagnostics``; stats, ground truth and the other outputs when asked for."""
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, OUTPUT_TOPICS["labels"], self._on_labels, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        if stats:
            from esnet_ros.msg import SegmentationStats

            self.node.create_subscription(SegmentationStats, OUTPUT_TOPICS["stats"], self._on_stats, 50)
        if ground_truth:
            self.node.create_subscription(
                Image, GT_TOPIC, self._on_gt, QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
            )
        for name in ("color", "overlay", "confidence") if all_outputs else ():  # every output computed and sent
            # raw: only counted, so the serialized bytes are never turned into Python messages
            self.node.create_subscription(
                Image,
                OUTPUT_TOPICS[name],
                lambda _msg, name=name: self.outputs_received.update((name,)),
                reliable,
                raw=True,
            )

    def reset(self) -> None:
        """Forget what was measured so far (labels, latencies, stats, scores): a new measuring window."""
        self.label_times.clear()
        self.latencies_ms.clear()
        self.stats.clear()
        if self.labels is not None and self._gt_wanted:
            # torch is imported only by a scoring monitor (start-up of `esnet soak` and `--help` stays light)
            from esnet_ros.training.metrics import ConfusionMatrix

            self.scores = ConfusionMatrix.for_labels(self.labels)
            self.frames_scored = 0

    # -- callbacks (cheap: keep references, score when a pair is complete) --------------------------

    def _on_labels(self, msg, info) -> None:  # two arguments: rclpy passes the MessageInfo
        now = time.monotonic()
        received_ns = info.get("received_timestamp") or time.time_ns()
        stamp = _stamp_ns(msg.header.stamp)
        if not self.recording:
            return
        self.label_times.append(now)
        self.latencies_ms.append((now, (received_ns - stamp) / 1e6))
        self.label_shapes.add((int(msg.height), int(msg.width)))
        if self.scores is not None:
            if stamp in self._gt:
                self._score(self._gt.pop(stamp), msg)
            else:
                self._pending[stamp] = msg
                while len(self._pending) > 30:
                    self._pending.popitem(last=False)
                    self.unmatched_labels += 1

    def _on_gt(self, msg) -> None:
        stamp = _stamp_ns(msg.header.stamp)
        if stamp in self._pending:
            self._score(msg, self._pending.pop(stamp))
            return
        self._gt[stamp] = msg
        while len(self._gt) > 60:
            self._gt.popitem(last=False)

    def _score(self, gt_msg, labels_msg) -> None:
        gt, pred = message_array(gt_msg), message_array(labels_msg)
        if gt is None or pred is None or gt.shape != pred.shape:
            self.unmatched_labels += 1
            return
        try:
            self.scores.update(gt, pred)
        except ValueError as exc:  # ids outside the label set: counted, named once in the log
            if not self.unmatched_labels:
                log.warning("cannot score labels against ground truth: %s", exc)
            self.unmatched_labels += 1
            return
        self.frames_scored += 1

    def quality(self) -> dict[str, Any] | None:
        """mIoU, category mIoU, per-class IoU and pixel accuracy so far (0..1), ``None`` before a scored frame."""
        if self.scores is None or not self.frames_scored:
            return None
        res = self.scores.compute()
        return {
            "miou": res["miou"],
            "category_miou": res["category_miou"],
            "per_class_iou": res["per_class_iou"],
            "pixel_accuracy": res["pixel_accuracy"],
            "frames_scored": self.frames_scored,
        }

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}
            self.diagnostics_time[status.name] = time.monotonic()

    def _on_stats(self, msg) -> None:
        if self.recording:
            self.stats.append(msg)
            if len(self.stats) > 100_000:
                del self.stats[: len(self.stats) // 2]

    def _keep(self, kind: str, msg) -> None:
        cache = self._cache[kind]
        cache[_stamp_ns(msg.header.stamp)] = msg
        while len(cache) > 16:
            cache.popitem(last=False)

    def subscribe_pictures(self, camera: bool = True) -> None:
        """Keep the newest color and overlay messages, and camera frames when ``camera`` (matching its reliability)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        for kind in ("color", "overlay"):
            self._picture_subs.append(
                self.node.create_subscription(Image, OUTPUT_TOPICS[kind], lambda m, k=kind: self._keep(k, m), reliable)
            )
        if camera:
            offers_reliable = any(
                info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                for info in self.node.get_publishers_info_by_topic(self.camera_topic)
            )
            qos = QoSProfile(
                depth=2, reliability=ReliabilityPolicy.RELIABLE if offers_reliable else ReliabilityPolicy.BEST_EFFORT
            )
            self._picture_subs.append(
                self.node.create_subscription(Image, self.camera_topic, lambda m: self._keep("input", m), qos)
            )

    # -- queries ----------------------------------------------------------------------------------

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            try:
                self.executor.spin_once(timeout_sec=min(left, 0.05))
            except RuntimeError:
                if interruptible.signalled:  # Ctrl-C/SIGTERM during a message's conversion (see interruptible)
                    raise KeyboardInterrupt from None
                raise

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, children: Iterable[Child] = ()) -> bool:
        """Spin until ``predicate()``; :class:`DemoError` if a child dies; ``False`` on timeout."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return True
            for child in children:
                child.check_alive()
            self.spin(0.1)
        return predicate()

    def node_status(self) -> dict[str, str] | None:
        """The segmentation node's latest diagnostics values (the status named after the node)."""
        for name, values in self.diagnostics.items():
            if NODE_NAME in name and _counter(values, "received") is not None:
                return values
        for name, values in self.diagnostics.items():
            if _counter(values, "received") is not None and "camera" not in name:
                return values
        return None

    def camera_status(self) -> dict[str, str] | None:
        for values in self.diagnostics.values():
            if "frames_published" in values:
                return values
        return None

    def camera_published_at(self) -> CameraCount | None:
        """The camera's ``frames_published`` from its latest diagnostics, and when they came."""
        for name, values in self.diagnostics.items():
            if "frames_published" in values:
                return CameraCount(self.diagnostics_time[name], int(values["frames_published"]))
        return None

    def counters(self) -> dict[str, int | None]:
        values = self.node_status() or {}
        return {name: _counter(values, name) for name in COUNTERS}

    def kept(self, kind: str) -> list[tuple[int, Any]]:
        """``[(stamp ns, message)]`` kept of ``kind`` (``"input"``, ``"color"``, ``"overlay"``), oldest first."""
        return list(self._cache[kind].items())

    def triples(self) -> list[Pictures]:
        """The kept stamps that have all three pictures (input, color, overlay), oldest first."""
        inputs, colors = self._cache["input"], self._cache["color"]
        return [
            Pictures(stamp, inputs[stamp], colors[stamp], overlay)
            for stamp, overlay in self._cache["overlay"].items()
            if stamp in colors and stamp in inputs
        ]

    def latest_triple(self) -> Pictures | None:
        """The newest stamp that has all three pictures; else the newest with color and overlay (``input`` None)."""
        complete = self.triples()
        if complete:
            return complete[-1]
        colors, overlays = self._cache["color"], self._cache["overlay"]
        both = [stamp for stamp in overlays if stamp in colors]
        return Pictures(both[-1], None, colors[both[-1]], overlays[both[-1]]) if both else None

    def destroy(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def drain_and_count(monitor: Monitor, timeout_s: float = 10.0) -> tuple[dict[str, int | None], bool]:
    """After the camera stopped: wait until the node's counters settle; ``(counters, identity holds)``."""

    def settled() -> bool:
        c = monitor.counters()
        if any(v is None for v in c.values()):
            return False
        return c["received"] == c["processed"] + c["dropped"] + c["rejected"]

    last = None
    stable_since = time.monotonic()
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        monitor.spin(0.2)
        c = monitor.counters()
        if c != last:
            last, stable_since = c, time.monotonic()
        elif settled() and time.monotonic() - stable_since > 1.5:  # unchanged across a diagnostics period
            break
    counters = monitor.counters()
    return counters, settled()


def close_run(children: list, monitor: Monitor | None, context) -> None:
    """The end of a demo or soak run, whatever happened: stop the children still alive, drop the monitor,
    shut the rclpy context down."""
    for child in children:
        if child.alive():
            child.stop()
    if monitor is not None:
        monitor.destroy()
    context.try_shutdown()
