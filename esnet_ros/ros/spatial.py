"""Labels in 3D: ``esnet/points`` (organized PointCloud2) and ``esnet/camera_info`` (the labels' camera).

:class:`SpatialOutputs` belongs to the node. It subscribes to the camera's ``camera_info`` (the
``camera_info_topic`` parameter, by default the one beside ``image_topic``, as image_transport names
it) and, when ``depth_topic`` is set, to a depth image registered to the color camera (16UC1 in
millimetres or 32FC1 in metres). Every camera image, depth and camera_info goes through a
:class:`~esnet_ros.ros.sync.StampSync` (message_filters' exact policy, or the approximate one with
``sync_slop_s`` > 0); a completed set is kept by the image's stamp until that frame's labels exist.

For each processed frame with a matched set, and only while they have subscribers:

- ``esnet/camera_info``: the camera_info of the labels' resolution and header (copied at
  ``output_resolution:=input``; K, P and the ROI scaled at ``:=network``);
- ``esnet/points``: height x width = the labels' size; x, y, z from the pinhole model in the camera's
  optical frame (the image's frame_id and stamp), the depth resampled to the labels' grid by nearest
  neighbour (:mod:`esnet_ros.core.depth`); ``rgb`` the class color, ``label`` equal to ``esnet/labels``,
  ``confidence`` 0..1; invalid depth (0, NaN, inf) gives NaN x/y/z and ``is_dense`` false
  (:mod:`esnet_ros.ros.cloud`).

A frame without its partners still gets its 2D outputs; the cloud is skipped and counted under a cause
(:data:`SKIP_CAUSES`) that ``/diagnostics`` shows, with one throttled warning naming it (a depth image
of another encoding, a size that does not divide, a camera_info with K all zero or another size, depth or
camera_info missing or never within the slop, with the measured offset).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from esnet_ros.core.depth import check_camera_info, depth_to_metres, organized_points, resample_nearest
from esnet_ros.ros.cloud import PointCloudBuffer, scaled_camera_info
from esnet_ros.ros.sync import StampSync, stamp_ns

__all__ = ["SpatialOutputs", "SPATIAL_OUTPUTS", "SPATIAL_PARAMS", "SKIP_CAUSES", "camera_info_topic", "depth_array"]

SPATIAL_OUTPUTS = ("points", "camera_info")
#: parameters that re-create the subscriptions when they change
SPATIAL_PARAMS = ("depth_topic", "camera_info_topic", "sync_slop_s", "image_topic")
SKIP_CAUSES = (
    "camera_info_missing",
    "depth_missing",
    "not_synchronized",
    "depth_encoding",
    "depth_size",
    "camera_info_invalid",
    "error",
)
_KEPT_SETS = 30  # matched sets waiting for their frame's labels
_WARN_EVERY_S = 5.0


def camera_info_topic(values: dict[str, Any]) -> str:
    """``camera_info_topic``, or the ``camera_info`` beside ``image_topic`` (image_transport's rule)."""
    explicit = str(values.get("camera_info_topic", "")).strip()
    if explicit:
        return explicit
    image = str(values["image_topic"]).strip().rstrip("/")
    return f"{image.rsplit('/', 1)[0]}/camera_info" if "/" in image else "camera_info"


def depth_array(msg: Any) -> np.ndarray:
    """A depth ``sensor_msgs/Image`` as an ``(H, W)`` array view (uint16 or float32); ValueError names the problem."""
    dtype = {"16UC1": np.dtype("u2"), "mono16": np.dtype("u2"), "32FC1": np.dtype("f4")}.get(msg.encoding)
    if dtype is None:
        raise ValueError(f"depth encoding {msg.encoding!r} is not 16UC1 (millimetres) or 32FC1 (metres)")
    dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    row = msg.width * dtype.itemsize
    if msg.width == 0 or msg.height == 0 or msg.step < row or len(msg.data) < msg.step * msg.height:
        raise ValueError(f"depth image {msg.width}x{msg.height} step {msg.step} does not fit its {len(msg.data)} bytes")
    rows = np.frombuffer(msg.data, np.uint8, msg.step * msg.height).reshape(msg.height, msg.step)
    return rows[:, :row].view(dtype).astype(dtype.newbyteorder("="), copy=False)


class SpatialOutputs:
    """The node's 3D outputs (see the module docstring). ``values()`` gives the node's parameters."""

    def __init__(self, node: Any, values: Callable[[], dict[str, Any]]) -> None:
        self.node = node
        self.values = values
        self.pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._sync: StampSync | None = None
        self._matched: collections.OrderedDict[int, tuple[Any, Any]] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._cloud = PointCloudBuffer()
        self._seen = {"camera_info": 0, "depth": 0}
        self.skipped = dict.fromkeys(SKIP_CAUSES, 0)
        self.published = dict.fromkeys(SPATIAL_OUTPUTS, 0)
        self.last_problem = ""
        self.dirty = False

    # -- topics ------------------------------------------------------------------------------------

    def create_publishers(self, qos: Any) -> None:
        self.pubs = {
            "points": self.node.create_lifecycle_publisher(PointCloud2, "esnet/points", qos),
            "camera_info": self.node.create_lifecycle_publisher(CameraInfo, "esnet/camera_info", qos),
        }

    def destroy_publishers(self) -> None:
        for pub in self.pubs.values():
            self.node.destroy_lifecycle_publisher(pub)
        self.pubs = {}

    def subscribe(self) -> None:
        """camera_info (and depth when ``depth_topic`` is set), fed with the images into one synchronizer."""
        self.unsubscribe()
        values = self.values()
        depth = str(values["depth_topic"]).strip()
        self._sync = StampSync(3 if depth else 2, self._on_set, slop_s=float(values["sync_slop_s"]) or None)
        self._subs = [
            self.node.create_subscription(CameraInfo, camera_info_topic(values), self._on_info, qos_profile_sensor_data)
        ]
        if depth:
            self._subs.append(self.node.create_subscription(Image, depth, self._on_depth, qos_profile_sensor_data))
        self.dirty = False

    def unsubscribe(self) -> None:
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs, self._sync = [], None
        with self._lock:
            self._matched.clear()

    @property
    def depth_enabled(self) -> bool:
        return self._sync is not None and self._sync.n_inputs == 3

    def wanted(self) -> tuple[str, ...]:
        """The 3D outputs with subscribers (points only with a depth topic)."""
        return tuple(
            name
            for name in SPATIAL_OUTPUTS
            if name in self.pubs
            and (name != "points" or self.depth_enabled)
            and self.pubs[name].get_subscription_count() > 0
        )

    # -- matching ----------------------------------------------------------------------------------

    def add_image(self, msg: Any) -> None:
        sync = self._sync
        if sync is not None:
            sync.add(0, msg)

    def _on_info(self, msg: Any) -> None:
        self._seen["camera_info"] += 1
        sync = self._sync
        if sync is not None:
            sync.add(sync.n_inputs - 1, msg)

    def _on_depth(self, msg: Any) -> None:
        self._seen["depth"] += 1
        sync = self._sync
        if sync is not None and sync.n_inputs == 3:
            sync.add(1, msg)

    def _on_set(self, image: Any, *partners: Any) -> None:
        depth, info = partners if len(partners) == 2 else (None, partners[0])
        with self._lock:
            self._matched[stamp_ns(image)] = (depth, info)
            while len(self._matched) > _KEPT_SETS:
                self._matched.popitem(last=False)

    # -- per frame ---------------------------------------------------------------------------------

    def publish(
        self,
        header: Any,
        wanted: tuple[str, ...],
        labels: np.ndarray,
        confidence: np.ndarray | None,
        palette: np.ndarray,
        image_hw: tuple[int, int],
    ) -> None:
        """The frame's camera_info and cloud (those in ``wanted``), or the cause they are skipped, counted.

        ``labels``/``confidence`` at the output's size, ``palette`` the label space's, ``image_hw`` the
        camera image's size (which the camera_info must describe)."""
        if not wanted or self._sync is None:
            return
        with self._lock:
            partners = self._matched.pop(header.stamp.sec * 1_000_000_000 + header.stamp.nanosec, None)
        if partners is None:
            return self._skip(self._why_unmatched())
        try:
            self._publish_set(header, wanted, partners, labels, confidence, palette, image_hw)
        except Exception as exc:  # a malformed partner message must never stop the 2D outputs
            self._skip("error", f"{type(exc).__name__}: {exc}")

    def _publish_set(
        self,
        header: Any,
        wanted: tuple[str, ...],
        partners: tuple[Any, Any],
        labels: np.ndarray,
        confidence: np.ndarray | None,
        palette: np.ndarray,
        image_hw: tuple[int, int],
    ) -> None:
        depth, info = partners
        height, width = labels.shape
        try:
            check_camera_info(np.asarray(info.k, np.float64).reshape(3, 3), info.width, info.height, image_hw)
        except ValueError as exc:
            return self._skip("camera_info_invalid", str(exc))
        out_info = scaled_camera_info(info, width, height)
        out_info.header = header
        if "camera_info" in wanted:
            self.pubs["camera_info"].publish(out_info)
            self.published["camera_info"] += 1
        if "points" in wanted and depth is not None:
            self._publish_points(header, depth, out_info, labels, confidence, palette)

    def _publish_points(
        self, header: Any, depth: Any, info: Any, labels: np.ndarray, confidence: np.ndarray | None, palette: np.ndarray
    ) -> None:
        try:
            metres = depth_to_metres(depth_array(depth), depth.encoding if depth.encoding != "mono16" else "16UC1")
        except ValueError as exc:
            return self._skip("depth_encoding", str(exc))
        try:
            metres = resample_nearest(metres, labels.shape)
        except ValueError as exc:
            return self._skip("depth_size", str(exc))
        height, width = labels.shape
        xyz = organized_points(metres, np.asarray(info.k, np.float64).reshape(3, 3), out=self._cloud.xyz(height, width))
        conf = confidence if confidence is not None else np.full(labels.shape, 255, np.uint8)
        cloud = self._cloud.fill(header, xyz, np.take(palette, labels, axis=0), labels, conf)
        self.pubs["points"].publish(cloud)
        self.published["points"] += 1

    def _why_unmatched(self) -> tuple[str, str]:
        if self._seen["camera_info"] == 0:
            return "camera_info_missing", f"no camera_info received on {camera_info_topic(self.values())}"
        if self.depth_enabled and self._seen["depth"] == 0:
            return "depth_missing", f"no depth image received on {self.values()['depth_topic']}"
        names = ("image", "depth", "camera_info") if self.depth_enabled else ("image", "camera_info")
        detail = "; ".join(self._sync.unmatched(names)) or "its partners arrived after the frame was done"
        return "not_synchronized", f"the image had no matched {'/'.join(names[1:])}: {detail}"

    def _skip(self, cause: Any, detail: str = "") -> None:
        if isinstance(cause, tuple):
            cause, detail = cause
        self.skipped[cause] += 1
        self.last_problem = f"{cause}: {detail}"
        self.node.get_logger().warning(
            f"esnet/points and esnet/camera_info skipped ({cause}): {detail}; the 2D outputs keep flowing",
            throttle_duration_sec=_WARN_EVERY_S,
        )

    def diagnostics_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {f"{name}_published": n for name, n in self.published.items()}
        values.update({f"spatial_skipped_{cause}": n for cause, n in self.skipped.items() if n})
        if self.last_problem:
            values["spatial_last_problem"] = self.last_problem
        return values
