"""Why nothing is published: /diagnostics names the cause (idle_reason, status WARN) over real DDS, for a missing
camera, a camera with the wrong reliability, no subscriber, and depth or camera_info missing or out of the slop."""

from __future__ import annotations

import time

import numpy as np
import pytest
from node_harness import BASE_PARAMS, make_image, next_stamp, scene, set_stamp

pytestmark = pytest.mark.ros

DEPTH = "/camera/depth/image_raw"
NODE_PARAMS = {**BASE_PARAMS, "depth_topic": DEPTH}


def idle_reason(client, prefix: str, timeout: float = 15.0, feed=None) -> str:
    def check():
        if feed is not None:
            feed()
        return next(
            (v["idle_reason"] for t, v in reversed(client.diagnostics) if v.get("idle_reason", "").startswith(prefix)),
            None,
        )

    return client.spin_until(check, timeout, f"idle_reason {prefix}...")


def test_no_camera_is_named(node_process, client):
    reason = idle_reason(client, "no_camera")
    assert reason.startswith("no_camera: no publisher on /camera/image_raw; start the camera driver")


def test_a_best_effort_camera_against_a_reliable_pin_names_both_policies(client):
    from sensor_msgs.msg import Image

    assert client.set_parameters(**{"input_qos.reliability": "reliable"})[0].successful
    pub = client.node.create_publisher(Image, "/camera/image_raw", client.qos(reliable=False))
    msg = make_image(scene(32, 48), "rgb8")
    try:
        reason = idle_reason(client, "camera_qos", feed=lambda: (set_stamp(msg, next_stamp()), pub.publish(msg)))
        assert "is published best_effort" in reason and "this node subscribes reliable" in reason
    finally:
        client.node.destroy_publisher(pub)
        assert client.set_parameters(**{"input_qos.reliability": "auto"})[0].successful


def test_frames_without_any_subscriber_are_named(client, camera):
    msg = make_image(scene(32, 48), "rgb8")
    reason = idle_reason(client, "no_subscriber", feed=lambda: (set_stamp(msg, next_stamp()), camera.send(msg)))
    assert "no output (esnet/labels, color, overlay, confidence, stats, points, camera_info) has a subscriber" in reason


def test_points_without_depth_then_out_of_the_slop_are_named(client, camera):
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from test_spatial import camera_info, depth_image, plane_mm

    points, sub = client.collect(PointCloud2, "/esnet/points")
    qos = client.qos(reliable=True, depth=5)
    info_pub = client.node.create_publisher(CameraInfo, "/camera/camera_info", qos)
    depth_pub = client.node.create_publisher(Image, DEPTH, qos)
    msg, info = make_image(scene(48, 64), "rgb8"), camera_info()
    depth = depth_image(plane_mm(), "16UC1")
    offset = {"ns": None}

    def feed():
        set_stamp(msg, next_stamp())
        info.header.stamp = msg.header.stamp
        info_pub.publish(info)
        if offset["ns"] is not None:
            total = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec + offset["ns"]
            depth.header.stamp.sec, depth.header.stamp.nanosec = divmod(total, 10**9)
            depth_pub.publish(depth)
        camera.send(msg)
        time.sleep(0.03)

    try:
        reason = idle_reason(client, "spatial", feed=feed, timeout=20)
        assert "depth_missing: no depth image received on /camera/depth/image_raw" in reason
        assert client.set_parameters(sync_slop_s=0.05)[0].successful
        offset["ns"] = 120_000_000  # depth stamped 0.12 s after its image: outside the 0.05 s slop
        reason = client.spin_until(
            lambda: (
                feed(),
                next(
                    (
                        v["idle_reason"]
                        for _, v in reversed(client.diagnostics)
                        if "not_synchronized" in v.get("idle_reason", "")
                    ),
                    None,
                ),
            )[1],
            20,
            "not_synchronized",
        )
        assert "never within sync_slop_s:=0.05 s of image" in reason and "+0.120 s" in reason
        assert not points.messages
        offset["ns"] = 20_000_000  # within the slop: the cloud flows and the reason clears
        client.spin_until(lambda: (feed(), bool(points.messages))[1], 20, "points within the slop")
        assert np.isfinite(np.frombuffer(bytes(points.messages[-1].data), np.float32)).any()
    finally:
        client.set_parameters(sync_slop_s=0.0)
        for p in (info_pub, depth_pub):
            client.node.destroy_publisher(p)
        client.node.destroy_subscription(sub)
