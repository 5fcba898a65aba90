"""Organized sensor_msgs/PointCloud2 of labelled points, and the camera_info of the output's resolution.

A planner that fuses labels in 3-D (Nav2's semantic_segmentation_layer) reads point ``v * width + u`` of the
cloud as pixel ``(u, v)`` of the labels, so the cloud is *organized*: ``height x width`` is the labels' size,
one point per pixel in row-major order, NaN where the depth had none (``is_dense`` is then False). Each point
is 24 bytes, every float 4-byte aligned::

    offset  0  x           float32   metres, optical frame (x right, y down, z ahead)
    offset  4  y           float32
    offset  8  z           float32
    offset 12  rgb         float32   0x00RRGGBB viewed as float32 (PCL / rviz2 "RGB8")
    offset 16  label       uint8     class id (after any remap)
    offset 17  (3 bytes of padding, always 0)
    offset 20  confidence  float32   0..1

``row_step`` is ``24 * width`` (no row padding), the byte order the host's (``is_bigendian`` says which).
sensor_msgs_py is not on PyPI, so the message is built here: the fields from ``sensor_msgs.msg.PointField``,
``data`` a reused ``array('B')`` that a NumPy structured view fills (:class:`PointCloudBuffer`).

:func:`scaled_camera_info` gives the camera_info that goes with an output of another size (K, P and ROI
scaled by :func:`esnet_ros.core.depth.scale_intrinsics`, as image_proc's resize does). ``sensor_msgs`` is
imported only when a message is built, so the layout constants import without ROS.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import numpy as np

from esnet_ros.core.depth import scale_intrinsics

__all__ = ["POINT_FIELDS", "POINT_STEP", "POINT_DTYPE", "PointCloudBuffer", "point_fields", "scaled_camera_info"]

#: (name, byte offset, PointField datatype name) of each field, in order
POINT_FIELDS = (
    ("x", 0, "FLOAT32"),
    ("y", 4, "FLOAT32"),
    ("z", 8, "FLOAT32"),
    ("rgb", 12, "FLOAT32"),
    ("label", 16, "UINT8"),
    ("confidence", 20, "FLOAT32"),
)
POINT_STEP = 24
_NUMPY_TYPES = {"FLOAT32": np.dtype("=f4"), "UINT8": np.dtype("u1")}
#: one point as NumPy reads it: ``np.frombuffer(cloud.data, POINT_DTYPE)`` decodes a cloud of this module
POINT_DTYPE = np.dtype(
    {
        "names": [name for name, _, _ in POINT_FIELDS],
        "formats": [_NUMPY_TYPES[kind] for _, _, kind in POINT_FIELDS],
        "offsets": [offset for _, offset, _ in POINT_FIELDS],
        "itemsize": POINT_STEP,
    }
)


def point_fields() -> list[Any]:
    """The ``sensor_msgs/PointField`` list of :data:`POINT_FIELDS` (count 1 each)."""
    from sensor_msgs.msg import PointField

    return [
        PointField(name=name, offset=offset, datatype=getattr(PointField, kind), count=1)
        for name, offset, kind in POINT_FIELDS
    ]


class PointCloudBuffer:
    """Builds organized PointCloud2 messages into one reused buffer (no allocation while the size holds).

    Compute the points straight into :meth:`xyz` (``organized_points(depth, K, out=buf.xyz(H, W))``) and
    :meth:`fill` copies only the colors, labels and confidence. Like ``images.ImagePublisherBuffer``, the
    message is made with ``check_fields=True`` so that assigning ``data`` does not copy it, and the next
    :meth:`fill` overwrites the buffer: publish before filling again (rclpy serializes on ``publish``).
    """

    def __init__(self) -> None:
        self._buffer: array.array | None = None
        self._shape: tuple[int, int] = (0, 0)
        self._bytes: np.ndarray | None = None
        self._msg: Any = None
        self._fields: list[Any] | None = None

    def _resize(self, height: int, width: int) -> None:
        if (height, width) != self._shape or self._buffer is None:
            self._buffer = array.array("B", bytes(height * width * POINT_STEP))  # padding stays 0
            self._bytes = np.frombuffer(self._buffer, np.uint8).reshape(height, width, POINT_STEP)
            self._shape = (height, width)

    def _words(self, dtype: Any) -> np.ndarray:
        """The buffer as ``(H, W, 6)`` 4-byte words (x, y, z, rgb, label+padding, confidence)."""
        return self._bytes.view(dtype)

    def xyz(self, height: int, width: int) -> np.ndarray:
        """A writable ``(H,W,3) float32`` view of the points' x, y, z (strided: 24 bytes a point)."""
        self._resize(height, width)
        return self._words(np.float32)[..., :3]

    def fill(self, header: Any, xyz: np.ndarray, colors: np.ndarray, labels: np.ndarray, confidence: np.ndarray) -> Any:
        """The cloud of ``xyz`` ``(H,W,3) float32``, ``colors`` ``(H,W,3) uint8`` RGB, ``labels`` ``(H,W) uint8``
        and ``confidence`` ``(H,W)``: float32 0..1, or uint8 0..255 (the confidence image, divided by 255).
        ``header`` (stamp and frame_id: the optical frame of the camera) is set on the message as given."""
        if labels.ndim != 2 or labels.dtype != np.uint8 or labels.size == 0:
            raise ValueError(f"labels must be a non-empty (H,W) uint8 array, got {labels.shape} {labels.dtype}")
        height, width = labels.shape
        _check(xyz, (height, width, 3), np.float32, "xyz")
        _check(colors, (height, width, 3), np.uint8, "colors (RGB)")
        _check(confidence, (height, width), (np.float32, np.uint8), "confidence")
        target = self.xyz(height, width)
        if not (xyz.ctypes.data == target.ctypes.data and xyz.strides == target.strides):  # else: computed in place
            np.copyto(target, xyz)
        rgb = self._words(np.uint32)[..., 3]
        rgb[...] = colors[..., 0]
        rgb <<= 8
        rgb |= colors[..., 1]
        rgb <<= 8
        rgb |= colors[..., 2]
        self._bytes[..., POINT_FIELDS[4][1]] = labels
        score = self._words(np.float32)[..., 5]
        if confidence.dtype == np.uint8:
            np.divide(confidence, np.float32(255.0), out=score, dtype=np.float32)
        else:
            np.copyto(score, confidence)
        return self._message(header, height, width, is_dense=not np.isnan(target).any())

    def _message(self, header: Any, height: int, width: int, is_dense: bool) -> Any:
        from sensor_msgs.msg import PointCloud2

        if self._msg is None:
            self._msg = PointCloud2(check_fields=True)
            self._fields = point_fields()
        msg = self._msg
        if header is not None:
            msg.header = header
        msg.height = height
        msg.width = width
        msg.fields = self._fields
        msg.is_bigendian = sys.byteorder == "big"
        msg.point_step = POINT_STEP
        msg.row_step = POINT_STEP * width
        msg.data = self._buffer
        msg.is_dense = is_dense
        return msg


def _check(a: np.ndarray, shape: tuple[int, ...], dtypes: Any, what: str) -> None:
    allowed = dtypes if isinstance(dtypes, tuple) else (dtypes,)
    if a.shape != shape or a.dtype not in [np.dtype(d) for d in allowed]:
        names = " or ".join(np.dtype(d).name for d in allowed)
        raise ValueError(f"{what} must be {shape} {names} (the labels' size), got {a.shape} {a.dtype}")


def scaled_camera_info(info: Any, out_width: int, out_height: int) -> Any:
    """A ``sensor_msgs/CameraInfo`` for an image of ``out_width x out_height`` taken by ``info``'s camera.

    The header, distortion model, D and R are copied. At the camera's own size everything is copied as is;
    otherwise K, P and the ROI are scaled (:func:`~esnet_ros.core.depth.scale_intrinsics`, image_proc's rule)
    and the binning is reset to 0, the scaled K being that of the output's pixels.
    """
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, RegionOfInterest
    from std_msgs.msg import Header

    if out_width <= 0 or out_height <= 0:
        raise ValueError(f"output size {out_width}x{out_height} must be positive")
    out = CameraInfo()
    stamp = Time(sec=info.header.stamp.sec, nanosec=info.header.stamp.nanosec)
    out.header = Header(stamp=stamp, frame_id=info.header.frame_id)
    out.distortion_model = info.distortion_model
    out.d = list(info.d)
    out.r = np.array(info.r, np.float64)
    out.width, out.height = int(out_width), int(out_height)
    roi = info.roi
    if (info.width, info.height) == (out_width, out_height):
        out.k, out.p = np.array(info.k, np.float64), np.array(info.p, np.float64)
        out.binning_x, out.binning_y = info.binning_x, info.binning_y
        out.roi = RegionOfInterest(
            x_offset=roi.x_offset, y_offset=roi.y_offset, height=roi.height, width=roi.width, do_rectify=roi.do_rectify
        )
        return out
    k, p, (x, y, h, w) = scale_intrinsics(
        info.k,
        info.p,
        (roi.x_offset, roi.y_offset, roi.height, roi.width),
        (info.height, info.width),
        (out_height, out_width),
    )
    out.k, out.p = k.reshape(9), p.reshape(12)
    out.binning_x = out.binning_y = 0
    out.roi = RegionOfInterest(x_offset=x, y_offset=y, height=h, width=w, do_rectify=roi.do_rectify)
    return out
