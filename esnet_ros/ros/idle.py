"""Why nothing is published: one diagnosis a second, on ``/diagnostics`` and in one throttled warning.

:meth:`IdleWatch.update` looks at what an active node sees when no output has been published for
:data:`IDLE_AFTER_S` and names the first cause that applies:

1. ``no_camera``: no publisher on the image topic (the camera is not running, or ``image_topic`` is wrong);
2. ``camera_qos``: camera publishers exist but none matches the subscription's reliability (naming both);
3. ``no_frames``: matched publishers, but no frame has arrived (a stalled driver, a network that drops them);
4. ``no_subscriber``: frames arrive but no output has a subscriber (every output is lazy);
5. ``spatial``: esnet/points or esnet/camera_info are subscribed but skipped (depth or camera_info missing,
   or never within ``sync_slop_s``, with the measured offset: :class:`~esnet_ros.ros.spatial.SpatialOutputs`).

The node puts the sentence under ``idle_reason`` in ``/diagnostics`` (status WARN) and logs it every
:data:`WARN_EVERY_S` while it holds; it is cleared as soon as outputs flow again.
"""

from __future__ import annotations

import time
from typing import Any

from rclpy.qos import ReliabilityPolicy

__all__ = ["IdleWatch", "IDLE_AFTER_S", "WARN_EVERY_S"]

IDLE_AFTER_S = 3.0
WARN_EVERY_S = 10.0


class IdleWatch:
    """Tracks the node's counters between diagnostics ticks and says why nothing was published."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self._last = (time.monotonic(), 0, 0)  # (when outputs last moved, frames received, messages published)
        self.reason = ""

    def update(self, received: int, published: int, spatial_wanted: bool, spatial_problem: str) -> str:
        """The idle reason now ("" while outputs flow); logs it (throttled) when it holds.

        ``received``: frames received so far; ``published``: output messages published so far (any output)."""
        now, (since, last_received, last_published) = time.monotonic(), self._last
        if published > last_published or received < last_received:  # outputs flowed (or the counters reset)
            self._last, self.reason = (now, received, published), ""
            return ""
        self._last = (since, received, published)
        if now - since < IDLE_AFTER_S:
            return ""
        self.reason = self._diagnose(received > last_received, spatial_wanted, spatial_problem)
        if self.reason:
            self.node.get_logger().warning(
                f"nothing published for {now - since:.0f} s: {self.reason}", throttle_duration_sec=WARN_EVERY_S
            )
        return self.reason

    def _diagnose(self, frames_arrive: bool, spatial_wanted: bool, spatial_problem: str) -> str:
        node = self.node
        sub = node.input_subscription
        if sub is None:
            return ""
        topic = sub.topic_name
        publishers = node.get_publishers_info_by_topic(topic)
        if not publishers:
            return (
                f"no_camera: no publisher on {topic}; start the camera driver or set image_topic "
                f"(or remap) to its topic"
            )
        ours = sub.qos_profile.reliability
        if ours == ReliabilityPolicy.RELIABLE and all(p.qos_profile.reliability != ours for p in publishers):
            names = ", ".join(sorted({p.node_name for p in publishers}))
            return (
                f"camera_qos: {topic} is published best_effort ({names}) but this node subscribes reliable; "
                f"set input_qos.reliability:=auto or best_effort"
            )
        if not frames_arrive:
            return f"no_frames: {len(publishers)} publisher(s) on {topic} but no frame arrived"
        if not node.subscribed_outputs() and not spatial_wanted:
            return (
                "no_subscriber: frames arrive but no output (esnet/labels, color, overlay, confidence, stats, "
                "points, camera_info) has a subscriber; every output is computed only while subscribed"
            )
        if spatial_wanted and spatial_problem:
            return f"spatial: {spatial_problem}"
        return ""
