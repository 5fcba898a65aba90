"""A camera for the demo: procedurally drawn street scenes, or real frames replayed, as ``sensor_msgs/Image``.

``ros2 run esnet_ros synthetic_camera`` (or ``python -m esnet_ros.tooling.synthetic_camera``) publishes

- ``camera/image_raw``: ``bgr8`` (or ``rgb8``) frames, 1280x720 at 15 Hz by default, reliable QoS
  by default (large frames over best effort are mostly lost by Fast DDS, see the README);
- ``camera/labels_gt``: each frame's ground-truth Cityscapes trainIds as ``mono8`` (255 = ignore),
  with the very same header, so a consumer can score predictions by matching stamps;
- ``/diagnostics``: frames published and the measured rate, once a second.

Rendering a scene takes about half a second at 720p, so a pool of ``pool_size`` scenes is drawn
once at start and the camera cycles through it; each tick only stamps a prebuilt message and
publishes it.  The scenes come from :func:`esnet_ros.data.synth.render_scene` with the generator
``scene_rng(seed, "test", i)``: a split that training (``"train"``) and validation (``"val"``)
never use, so the bundled demo model has not seen these frames.

With ``images`` set (a folder of images, sorted by name, or a video file) the pool is those frames
instead (:func:`esnet_ros.tooling.replay.load_frames`), resized to ``width`` x ``height`` unless both
are 0, and ``labels_dir`` gives their ground truth (label PNGs named like the images, e.g. CamVid's
``testannot/``): ``esnet demo --images``.
"""

from __future__ import annotations

import logging
import re
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import Image

from esnet_ros.data.synth import render_scene, scene_rng
from esnet_ros.ros.dds import use_large_message_profile
from esnet_ros.ros.descriptors import descriptor

__all__ = [
    "SyntheticCamera",
    "render_pool",
    "main",
    "published_in_log",
    "IMAGE_TOPIC",
    "GT_TOPIC",
    "RELIABILITIES",
    "ENCODINGS",
]

log = logging.getLogger(__name__)

IMAGE_TOPIC = "camera/image_raw"
GT_TOPIC = "camera/labels_gt"
RELIABILITIES = ("reliable", "best_effort")
ENCODINGS = ("bgr8", "rgb8")
SCENE_SPLIT = "test"  # never used by training or validation sets


def render_pool(
    width: int, height: int, count: int, seed: int, encoding: str = "bgr8"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` scenes as ``[(image (H,W,3) uint8 in the encoding's order, trainIds (H,W) uint8)]``.

    Scene ``i`` is ``render_scene(scene_rng(seed, "test", i), width, height)``: deterministic.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding={encoding!r} must be one of: {', '.join(ENCODINGS)}")
    order = "bgr" if encoding == "bgr8" else "rgb"
    return [render_scene(scene_rng(seed, SCENE_SPLIT, i), width, height, color_order=order) for i in range(count)]


def _image_msg(array: np.ndarray, encoding: str, frame_id: str) -> Image:
    """A prebuilt Image whose header stamp is filled in at publish time."""
    msg = Image()
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(array.shape[1]) * (3 if array.ndim == 3 else 1)
    msg.data = np.ascontiguousarray(array).tobytes()  # bytes -> array('B') is a fast copy; numpy is not
    return msg


def _ro(description: str, *, read_only: bool = True, **kwargs) -> ParameterDescriptor:
    """The camera's parameters are read-only unless said otherwise (they shape the prebuilt pool)."""
    return descriptor(description, read_only=read_only, **kwargs)


# name: (default, descriptor)
PARAMETERS = {
    "width": (
        1280,
        _ro(
            "image width in pixels (scenes are drawn at this size; with images, 0 keeps their size)",
            int_range=(0, 8192),
        ),
    ),
    "height": (720, _ro("image height in pixels (with images, 0 keeps their size)", int_range=(0, 8192))),
    "images": ("", _ro("a folder of images (sorted by name) or a video file to replay instead of synthetic scenes")),
    "labels_dir": ("", _ro("with images: their ground truth, LABELS/<image stem>.png (mono8 class ids)")),
    "max_images": (
        0,
        _ro("with images: replay at most this many (0: all; a video: up to 600 frames)", int_range=(0, 100000)),
    ),
    "rate_hz": (
        15.0,
        _ro(
            "publishing rate in frames per second (may be changed at run time)",
            read_only=False,
            float_range=(0.1, 1000.0),
        ),
    ),
    "encoding": ("bgr8", _ro("pixel encoding of camera/image_raw", choices=ENCODINGS)),
    "frame_id": ("camera_optical_frame", _ro("frame_id of every header (1..256 characters)")),
    "reliability": (
        "reliable",
        _ro(
            "QoS reliability of both image topics; frames over ~0.5 MB need 'reliable' on default Fast DDS",
            choices=RELIABILITIES,
        ),
    ),
    "qos_depth": (5, _ro("QoS history depth (keep last N) of both image topics", int_range=(1, 1000))),
    "pool_size": (
        10,
        _ro(
            "number of distinct scenes rendered at start and cycled through (about 0.5 s each at 720p)",
            int_range=(1, 1000),
        ),
    ),
    "seed": (
        0,
        _ro("random seed of the scenes (scene i = synth.scene_rng(seed, 'test', i))", int_range=(0, 2**31 - 1)),
    ),
    "publish_ground_truth": (True, _ro("also publish the trainId ground truth on camera/labels_gt")),
    "max_frames": (0, _ro("stop publishing after this many frames (0: never stop)", int_range=(0, 2**31 - 1))),
}


class SyntheticCamera(Node):
    """Publishes a cycling pool of synthetic street scenes and their ground truth (see module doc)."""

    def __init__(self, node_name: str = "synthetic_camera", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.add_on_set_parameters_callback(self._validate_parameters)
        for name, (default, param_descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, param_descriptor)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._width, self._height = int(p["width"]), int(p["height"])
        self._encoding = str(p["encoding"])
        self._publish_gt = bool(p["publish_ground_truth"])
        self._max_frames = int(p["max_frames"])
        self._rate_hz = float(p["rate_hz"])

        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=int(p["qos_depth"]),
            reliability=ReliabilityPolicy.RELIABLE if p["reliability"] == "reliable" else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        overrides = QoSOverridingOptions.with_default_policies()
        self._image_pub = self.create_publisher(Image, IMAGE_TOPIC, qos, qos_overriding_options=overrides)
        self._gt_pub = (
            self.create_publisher(Image, GT_TOPIC, qos, qos_overriding_options=overrides) if self._publish_gt else None
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if p["reliability"] == "best_effort" and self._width * self._height * 3 > 500_000:
            self.get_logger().warn(
                f"reliability=best_effort with {self._width}x{self._height} frames: Fast DDS loses most frames over "
                "~0.5 MB on best-effort links; use reliability:=reliable, or FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA "
                "on both ends"
            )

        start = time.perf_counter()
        frame_id = str(p["frame_id"])
        self._pool = [
            (_image_msg(image, self._encoding, frame_id), _image_msg(gt, "mono8", frame_id) if gt is not None else None)
            for image, gt in self._frames(p)
        ]
        if self._pool and self._pool[0][1] is None:
            self._publish_gt = False
        self._height, self._width = self._pool[0][0].height, self._pool[0][0].width
        self.get_logger().info(
            f"publishing {IMAGE_TOPIC} ({self._width}x{self._height} {self._encoding}, {p['reliability']}, "
            f"depth {p['qos_depth']}) at {self._rate_hz:g} Hz"
            + (f" and ground truth on {GT_TOPIC}" if self._publish_gt else "")
            + f"; {len(self._pool)} scenes rendered in {time.perf_counter() - start:.1f} s"
        )

        self.frames_published = 0
        self._rate_window: list[float] = []
        self._timer = self.create_timer(1.0 / self._rate_hz, self._publish_next)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.add_post_set_parameters_callback(self._apply_parameters)

    def _frames(self, p: dict) -> list:
        """The pool before it becomes messages: ``[(image in the encoding's order, ground truth or None)]``."""
        size = (self._width, self._height)
        if not p["images"]:
            if 0 in size:
                raise InvalidParameterValueException("width/height", size, "synthetic scenes need a size > 0")
            self.get_logger().info(
                f"rendering {p['pool_size']} scenes at {size[0]}x{size[1]} (seed {p['seed']}); "
                "publishing starts when they are ready"
            )
            return render_pool(size[0], size[1], int(p["pool_size"]), int(p["seed"]), self._encoding)
        from esnet_ros.tooling.replay import load_frames

        frames = load_frames(
            p["images"], p["labels_dir"] or None, size=None if size == (0, 0) else size, max_frames=int(p["max_images"])
        )
        self.get_logger().info(
            f"replaying {len(frames)} frames of {p['images']}"
            + (f" with labels from {p['labels_dir']}" if p["labels_dir"] else "")
        )
        if self._encoding == "rgb8":
            frames = [(image[..., ::-1].copy(), gt) for image, gt in frames]
        return frames

    # -- parameters -----------------------------------------------------------------------------

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Reject values the descriptors' ranges cannot express, with a reason naming the fix."""
        for param in params:
            value = param.value
            if param.name == "encoding" and value not in ENCODINGS:
                return SetParametersResult(
                    successful=False, reason=f"encoding={value!r} must be one of: {', '.join(ENCODINGS)}"
                )
            if param.name == "reliability" and value not in RELIABILITIES:
                return SetParametersResult(
                    successful=False, reason=f"reliability={value!r} must be one of: {', '.join(RELIABILITIES)}"
                )
            if param.name == "frame_id" and not 0 < len(str(value)) <= 256:
                return SetParametersResult(
                    successful=False,
                    reason=f"frame_id must have 1..256 characters, got {len(str(value))}; "
                    "e.g. frame_id:=camera_optical_frame",
                )
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        for param in params:
            if param.name == "rate_hz":
                self._rate_hz = float(param.value)
                self._timer.cancel()
                self.destroy_timer(self._timer)
                self._timer = self.create_timer(1.0 / self._rate_hz, self._publish_next)
                self.get_logger().info(f"rate_hz is now {self._rate_hz:g}")

    # -- publishing -----------------------------------------------------------------------------

    def _publish_next(self) -> None:
        if self._max_frames and self.frames_published >= self._max_frames:
            self._timer.cancel()
            self.get_logger().info(f"published max_frames={self._max_frames} frames; stopping")
            return
        image_msg, gt_msg = self._pool[self.frames_published % len(self._pool)]
        stamp = self.get_clock().now().to_msg()
        image_msg.header.stamp = stamp
        if self._gt_pub is not None and gt_msg is not None:
            gt_msg.header.stamp = stamp
            self._gt_pub.publish(gt_msg)  # ground truth first: it is there when the prediction arrives
        self._image_pub.publish(image_msg)
        self.frames_published += 1
        now = time.monotonic()
        self._rate_window.append(now)
        while self._rate_window and self._rate_window[0] < now - 2.0:
            self._rate_window.pop(0)

    def measured_rate_hz(self) -> float:
        w = self._rate_window
        return (len(w) - 1) / (w[-1] - w[0]) if len(w) > 1 and w[-1] > w[0] else 0.0

    def _publish_diagnostics(self) -> None:
        rate = self.measured_rate_hz()
        stopped = bool(self._max_frames) and self.frames_published >= self._max_frames
        level = DiagnosticStatus.OK if stopped or rate >= 0.8 * self._rate_hz else DiagnosticStatus.WARN
        message = "stopped after max_frames" if stopped else f"publishing at {rate:.1f} Hz (target {self._rate_hz:g})"
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_name()}: synthetic camera",
            message=message,
            hardware_id="synthetic",
            values=[
                KeyValue(key=k, value=str(v))
                for k, v in (
                    ("frames_published", self.frames_published),
                    ("rate_hz_target", f"{self._rate_hz:g}"),
                    ("rate_hz_measured", f"{rate:.2f}"),
                    ("width", self._width),
                    ("height", self._height),
                    ("encoding", self._encoding),
                    ("pool_size", len(self._pool)),
                )
            ],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


_PUBLISHED_LINE = "synthetic_camera: published {} frames"
_PUBLISHED_RE = re.compile(r"^synthetic_camera: published (\d+) frames$", re.MULTILINE)


def published_in_log(text: str) -> int | None:
    """The camera's final published count from its output (``None`` if it did not exit cleanly)."""
    found = _PUBLISHED_RE.findall(text)
    return int(found[-1]) if found else None


def usage() -> str:
    """What ``synthetic_camera --help`` prints: the command line and every parameter with its default."""
    lines = [
        "usage: synthetic_camera [-h] [--ros-args -p NAME:=VALUE ...]",
        "",
        __doc__.strip().splitlines()[0],
        "",
        "parameters (-p NAME:=VALUE):",
    ]
    for name, (default, d) in PARAMETERS.items():
        lines.append(f"  {name} (default {default!r}{', read-only' if d.read_only else ''}): {d.description}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """``synthetic_camera`` / ``python -m esnet_ros.tooling.synthetic_camera [--ros-args -p rate_hz:=30 ...]``."""
    argv = sys.argv[1:] if args is None else list(args)
    if {"-h", "--help"} & set(remove_ros_args(["synthetic_camera", *argv])[1:]):
        print(usage())
        return 0
    try:
        use_large_message_profile()
        with rclpy.init(args=args):
            try:
                node = SyntheticCamera()
            except (InvalidParameterValueException, FileNotFoundError, ValueError) as exc:
                print(f"synthetic_camera: {exc}", file=sys.stderr)
                return 2
            except InvalidParameterTypeException as exc:
                print(
                    f"synthetic_camera: {exc} (write floating-point values with a decimal point, e.g. rate_hz:=30.0)",
                    file=sys.stderr,
                )
                return 2
            try:
                rclpy.spin(node)
            finally:
                # the exact total, for whoever compares it with what subscribers received (the 1 Hz
                # diagnostics lag by up to a second of frames)
                print(_PUBLISHED_LINE.format(node.frames_published), flush=True)
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
