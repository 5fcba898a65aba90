"""esnet_ros.ros.cloud: organized PointCloud2 decoded back byte by byte, and camera_info at the output's size."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from esnet_ros.core.depth import organized_points
from esnet_ros.ros.cloud import POINT_DTYPE, POINT_STEP, PointCloudBuffer, scaled_camera_info

H, W = 4, 5
K = np.array([[50.0, 0, 2.0], [0, 40.0, 1.5], [0, 0, 1]])
NUMPY_OF = {PointField.FLOAT32: "f4", PointField.UINT8: "u1"}


def header(frame: str = "camera_color_optical_frame", sec: int = 17, nanosec: int = 250) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame)


def decode(msg: PointCloud2) -> np.ndarray:
    """The points as the message's own fields describe them (not through the module's dtype)."""
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype(
        {
            "names": [f.name for f in msg.fields],
            "formats": [order + NUMPY_OF[f.datatype] for f in msg.fields],
            "offsets": [f.offset for f in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    return np.frombuffer(bytes(msg.data), dtype).reshape(msg.height, msg.width)


def scene():
    depth = np.full((H, W), 2.0, np.float32)
    depth[1, 3] = np.nan
    labels = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 3
    colors = np.stack([labels * 80, 255 - labels, np.full((H, W), 7)], axis=-1).astype(np.uint8)
    confidence = np.linspace(0, 255, H * W).astype(np.uint8).reshape(H, W)
    return depth, labels, colors, confidence


def test_fields_layout():
    depth, labels, colors, confidence = scene()
    msg = PointCloudBuffer().fill(header(), organized_points(depth, K), colors, labels, confidence)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1),
        ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1),
        ("label", 16, PointField.UINT8, 1),
        ("confidence", 20, PointField.FLOAT32, 1),
    ]
    assert msg.point_step == POINT_STEP == POINT_DTYPE.itemsize == 24
    assert msg.row_step == 24 * W and len(msg.data) == 24 * W * H
    assert (msg.height, msg.width) == (H, W) and msg.is_bigendian == (sys.byteorder == "big")


def test_every_value_decodes_back():
    depth, labels, colors, confidence = scene()
    xyz = organized_points(depth, K)
    msg = PointCloudBuffer().fill(header(), xyz, colors, labels, confidence)
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (17, 250)
    assert msg.is_dense is False  # one NaN point
    points = decode(msg)
    for v in range(H):
        for u in range(W):
            p = points[v, u]
            if (v, u) == (1, 3):
                assert np.isnan([p["x"], p["y"], p["z"]]).all()
            else:
                assert (p["x"], p["y"], p["z"]) == pytest.approx(((u - 2.0) * 2 / 50, (v - 1.5) * 2 / 40, 2.0))
            r, g, b = (int(c) for c in colors[v, u])
            assert p["rgb"].view(np.uint32) == (r << 16) | (g << 8) | b
            assert p["label"] == labels[v, u]
            assert p["confidence"] == pytest.approx(confidence[v, u] / 255, abs=1e-7)
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(H * W, 24)
    assert not raw[:, 17:20].any()  # padding is zero
    assert points.dtype == POINT_DTYPE  # the module's dtype is the one its fields describe


def test_float_confidence_dense_cloud_and_serialization():
    depth, labels, colors, _ = scene()
    depth[1, 3] = 1.0
    confidence = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    msg = PointCloudBuffer().fill(header(), organized_points(depth, K), colors, labels, confidence)
    assert msg.is_dense is True
    assert np.array_equal(decode(msg)["confidence"], confidence)
    back = deserialize_message(serialize_message(msg), PointCloud2)
    assert bytes(back.data) == bytes(msg.data) and back.is_dense and back.row_step == msg.row_step
    assert [f.name for f in back.fields] == ["x", "y", "z", "rgb", "label", "confidence"]


def test_the_buffer_is_reused_and_points_computed_in_place():
    depth, labels, colors, confidence = scene()
    buf = PointCloudBuffer()
    xyz = organized_points(depth, K, out=buf.xyz(H, W))  # straight into the message's bytes
    first = buf.fill(header(sec=1), xyz, colors, labels, confidence)
    data = first.data
    second = buf.fill(header(sec=2), organized_points(depth * 2, K), colors, labels + 1, confidence)
    assert second is first and second.data is data  # same message, same buffer: publish before refilling
    points = decode(second)
    assert points["z"][0, 0] == 4.0 and points["label"][0, 0] == labels[0, 0] + 1 and second.header.stamp.sec == 2
    third = buf.fill(header(), organized_points(depth[:2], K), colors[:2], labels[:2], confidence[:2])
    assert third.height == 2 and len(third.data) == 2 * W * 24  # a new size: a new buffer


def test_mismatched_inputs_are_refused():
    depth, labels, colors, confidence = scene()
    xyz = organized_points(depth, K)
    buf = PointCloudBuffer()
    with pytest.raises(ValueError, match=r"colors \(RGB\) must be \(4, 5, 3\) uint8 \(the labels' size\), got \(4, 4,"):
        buf.fill(header(), xyz, colors[:, :4], labels, confidence)
    with pytest.raises(ValueError, match=r"confidence must be \(4, 5\) float32 or uint8"):
        buf.fill(header(), xyz, colors, labels, confidence.astype(np.float64))
    with pytest.raises(ValueError, match=r"labels must be a non-empty \(H,W\) uint8 array"):
        buf.fill(header(), xyz, colors, labels.astype(np.int32), confidence)
    with pytest.raises(ValueError, match=r"xyz must be \(4, 5, 3\) float32"):
        buf.fill(header(), xyz[:3], colors, labels, confidence)


def camera_info() -> CameraInfo:
    info = CameraInfo()
    info.header = header("camera_optical", 5, 6)
    info.width, info.height = 640, 480
    info.distortion_model = "plumb_bob"
    info.d = [0.1, -0.2, 0.001, 0.002, 0.0]
    info.k = [525.0, 0.0, 319.5, 0.0, 520.0, 239.5, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [525.0, 0.0, 319.5, -39.0, 0.0, 520.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.binning_x, info.binning_y = 2, 2
    info.roi = RegionOfInterest(x_offset=101, y_offset=51, height=201, width=301, do_rectify=True)
    return info


def test_camera_info_scaled_to_the_output():
    info = camera_info()
    out = scaled_camera_info(info, 320, 240)
    assert (out.width, out.height) == (320, 240)
    assert out.header.frame_id == "camera_optical" and (out.header.stamp.sec, out.header.stamp.nanosec) == (5, 6)
    assert out.header is not info.header
    assert list(out.k) == [262.5, 0.0, 159.75, 0.0, 260.0, 119.75, 0.0, 0.0, 1.0]
    assert list(out.p) == [262.5, 0.0, 159.75, -19.5, 0.0, 260.0, 119.75, 0.0, 0.0, 0.0, 1.0, 0.0]
    roi = out.roi
    assert (roi.x_offset, roi.y_offset, roi.height, roi.width, roi.do_rectify) == (50, 25, 100, 150, True)
    assert (out.binning_x, out.binning_y) == (0, 0)
    assert out.distortion_model == "plumb_bob" and list(out.d) == list(info.d) and list(out.r) == list(info.r)
    deserialize_message(serialize_message(out), CameraInfo)  # a valid message


def test_camera_info_at_the_cameras_size_is_copied_as_is():
    info = camera_info()
    out = scaled_camera_info(info, 640, 480)
    assert out is not info
    for field in ("width", "height", "distortion_model", "binning_x", "binning_y"):
        assert getattr(out, field) == getattr(info, field), field
    for field in ("k", "p", "d", "r"):
        assert list(getattr(out, field)) == list(getattr(info, field)), field
    assert out.roi == info.roi and out.header == info.header
    with pytest.raises(ValueError, match="output size 0x480 must be positive"):
        scaled_camera_info(info, 0, 480)
