"""Labels in 3D over real DDS: esnet/points and esnet/camera_info from image + depth + camera_info, the
confidence threshold and class remapping, and the bad partners that must not stop the 2D outputs.

The scene's depth is a known plane; every point is checked against the pinhole model, its label field
against esnet/labels, its confidence against esnet/confidence, its color against the class palette.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from node_harness import BASE_PARAMS, image_array, make_image, next_stamp, scene, set_stamp, stamp_ns

pytestmark = pytest.mark.ros

DEPTH_TOPIC = "/camera/depth/image_raw"
NODE_PARAMS = {**BASE_PARAMS, "depth_topic": DEPTH_TOPIC}
H, W = 48, 64
FX, FY, CX, CY = 80.0, 90.0, 31.5, 23.5
CITYSCAPES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)


def camera_info(w=W, h=H, k=(FX, FY, CX, CY)):
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    fx, fy, cx, cy = k
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    info.header.frame_id = "camera_optical"
    return info


def depth_image(depth: np.ndarray, encoding: str):
    from sensor_msgs.msg import Image

    msg = Image(height=depth.shape[0], width=depth.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = depth.shape[1] * depth.dtype.itemsize
    msg.data = depth.tobytes()
    msg.header.frame_id = "camera_optical"
    return msg


def plane_mm(h=H, w=W) -> np.ndarray:
    """2.0 m everywhere but a column of zeros (no return) and a nearer box at 1.5 m."""
    depth = np.full((h, w), 2000, np.uint16)
    depth[:, 5] = 0
    depth[10:20, 30:40] = 1500
    return depth


@pytest.fixture(scope="module")
def rig(client):
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from esnet_ros.msg import ClassMap

    qos = client.qos(reliable=True, depth=5)
    pubs = {
        "image": client.node.create_publisher(Image, "/camera/image_raw", qos),
        "depth": client.node.create_publisher(Image, DEPTH_TOPIC, qos),
        "info": client.node.create_publisher(CameraInfo, "/camera/camera_info", qos),
    }
    cols, subs = {}, []
    for name, kind in (
        ("labels", Image),
        ("confidence", Image),
        ("color", Image),
        ("points", PointCloud2),
        ("camera_info", CameraInfo),
    ):
        cols[name], sub = client.collect(kind, f"/esnet/{name}")
        subs.append(sub)
    cols["class_map"], sub = client.collect(ClassMap, "/esnet/class_map", latched=True)
    subs.append(sub)
    client.spin_until(
        lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 30, "the node's subscriptions"
    )
    yield client, pubs, cols
    for sub in subs:
        client.node.destroy_subscription(sub)
    for pub in pubs.values():
        client.node.destroy_publisher(pub)


def send_set(rig, image, depth, info, wait=("labels", "points", "camera_info"), timeout=30.0):
    """Publish image, depth and camera_info with one stamp (re-stamped on resends) until ``wait`` all answer."""
    client, pubs, cols = rig
    deadline = time_left = timeout
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        stamp = set_stamp(image, next_stamp())
        for msg in (depth, info):
            if msg is not None:
                msg.header.stamp = image.header.stamp
        if info is not None:
            pubs["info"].publish(info)
        if depth is not None:
            pubs["depth"].publish(depth)
        pubs["image"].publish(image)
        try:
            return stamp, client.spin_until(
                lambda stamp=stamp: (
                    all(stamp in cols[n].by_stamp for n in wait) and {n: cols[n].by_stamp[stamp] for n in wait}
                ),
                1.5,
                "outputs",
            )
        except AssertionError:
            time_left = end - time.monotonic()
    raise AssertionError(f"no {wait} within {timeout} s ({time_left:.1f} s left)")


def decode(cloud) -> np.ndarray:
    from esnet_ros.ros.cloud import POINT_DTYPE

    assert cloud.point_step == POINT_DTYPE.itemsize and cloud.row_step == cloud.point_step * cloud.width
    return np.frombuffer(bytes(cloud.data), POINT_DTYPE).reshape(cloud.height, cloud.width)


def test_points_follow_the_pinhole_model_and_carry_the_labels(rig):
    rgb = scene(H, W, seed=2)
    image = make_image(rgb, "rgb8")
    stamp, got = send_set(
        rig,
        image,
        depth_image(plane_mm(), "16UC1"),
        camera_info(),
        wait=("labels", "confidence", "points", "camera_info"),
    )
    cloud = got["points"]
    assert (cloud.height, cloud.width) == (H, W) and cloud.header.frame_id == "camera_optical"
    assert stamp_ns(cloud) == stamp and not cloud.is_dense
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "label", "confidence"]
    pts = decode(cloud)
    z = plane_mm() / 1000.0
    valid = z > 0
    v, u = np.mgrid[0:H, 0:W]
    np.testing.assert_allclose(pts["z"][valid], z[valid], rtol=1e-6)
    np.testing.assert_allclose(pts["x"][valid], ((u - CX) * z / FX)[valid], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pts["y"][valid], ((v - CY) * z / FY)[valid], rtol=1e-5, atol=1e-6)
    assert np.isnan(pts["x"][~valid]).all() and np.isnan(pts["z"][:, 5]).all()
    labels = image_array(got["labels"])
    np.testing.assert_array_equal(pts["label"], labels)
    np.testing.assert_allclose(pts["confidence"], image_array(got["confidence"]) / 255.0, atol=1e-6)
    from esnet_ros.core.labels import cityscapes

    palette = np.asarray(cityscapes().palette(), np.uint32)
    packed = pts["rgb"].view(np.uint32)
    expected = (palette[labels, 0] << 16) | (palette[labels, 1] << 8) | palette[labels, 2]
    np.testing.assert_array_equal(packed, expected)
    info = got["camera_info"]
    assert (info.width, info.height) == (W, H) and stamp_ns(info) == stamp
    np.testing.assert_allclose(info.k, camera_info().k)


def test_half_size_float_depth_is_resampled_nearest(rig):
    tilted = (1.0 + np.arange(W // 2, dtype=np.float32)[None, :] * 0.05).repeat(H // 2, 0)
    tilted[3, 4] = np.nan
    tilted[7, 9] = np.inf
    _, got = send_set(rig, make_image(scene(H, W, seed=4), "rgb8"), depth_image(tilted, "32FC1"), camera_info())
    pts = decode(got["points"])
    expected = np.repeat(np.repeat(tilted, 2, 0), 2, 1)
    expected[~np.isfinite(expected)] = np.nan
    np.testing.assert_array_equal(np.isnan(pts["z"]), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(pts["z"][ok], expected[ok], rtol=1e-6)


@pytest.mark.parametrize(
    "bad, cause",
    [
        ("encoding", "spatial_skipped_depth_encoding"),
        ("size", "spatial_skipped_depth_size"),
        ("k_zero", "spatial_skipped_camera_info_invalid"),
        ("info_size", "spatial_skipped_camera_info_invalid"),
    ],
)
def test_bad_partners_are_counted_and_2d_keeps_flowing(rig, bad, cause):
    client = rig[0]
    before = int(client.fresh_diagnostics().get(cause, 0))
    depth = depth_image(plane_mm(), "16UC1")
    info = camera_info()
    if bad == "encoding":
        depth = depth_image(np.zeros((H, W), np.uint8), "8UC1")
    elif bad == "size":
        depth = depth_image(np.full((H - 5, W), 1000, np.uint16), "16UC1")
    elif bad == "k_zero":
        info = camera_info(k=(0.0, 0.0, 0.0, 0.0))
    else:
        info = camera_info(w=2 * W, h=2 * H)
    stamp, got = send_set(rig, make_image(scene(H, W), "rgb8"), depth, info, wait=("labels",))
    assert (got["labels"].width, got["labels"].height) == (W, H)
    assert int(client.wait_counter(cause, before + 1, timeout=10)[cause]) >= before + 1
    assert stamp not in rig[2]["points"].by_stamp


def test_min_confidence_makes_unknown_and_is_changeable_at_run_time(rig):
    client, _, _ = rig
    rgb = scene(H, W, seed=5)
    _, plain = send_set(
        rig, make_image(rgb, "rgb8"), depth_image(plane_mm(), "16UC1"), camera_info(), wait=("labels", "confidence")
    )
    conf = image_array(plain["confidence"])
    threshold = float(np.median(conf)) / 255.0
    assert client.set_parameters(min_confidence=threshold, unknown_label=200)[0].successful
    try:
        _, got = send_set(
            rig,
            make_image(rgb, "rgb8"),
            depth_image(plane_mm(), "16UC1"),
            camera_info(),
            wait=("labels", "confidence", "color", "points"),
        )
        labels, low = image_array(got["labels"]), image_array(got["confidence"]) < math.ceil(255 * threshold - 1e-9)
        assert 0 < low.sum() < low.size
        assert (labels[low] == 200).all() and (labels[~low] == image_array(plain["labels"])[~low]).all()
        assert (image_array(got["color"])[low] == 0).all()
        assert (decode(got["points"])["label"][low] == 200).all()
    finally:
        assert client.set_parameters(min_confidence=0.0, unknown_label=255)[0].successful


def test_class_remap_publishes_the_planner_space_and_bad_files_are_refused(rig, tmp_path):
    client, _, cols = rig
    others = [n for n in CITYSCAPES if n not in ("road", "sidewalk", "sky")]
    path = tmp_path / "remap.yaml"
    path.write_text(
        "classes:\n  - name: traversable\n    id: 0\n    color: [128, 64, 128]\n    from: [road, sidewalk]\n"
        f"  - name: obstacle\n    id: 7\n    color: [220, 20, 60]\n    from: [{', '.join(others)}]\n"
        "drop: [sky]\n"
    )
    rgb = scene(H, W, seed=6)
    _, plain = send_set(rig, make_image(rgb, "rgb8"), None, None, wait=("labels",))
    assert client.set_parameters(class_remap=str(path))[0].successful
    try:
        _, got = send_set(
            rig,
            make_image(rgb, "rgb8"),
            depth_image(plane_mm(), "16UC1"),
            camera_info(),
            wait=("labels", "color", "points"),
        )
        model = image_array(plain["labels"])
        lut = np.full(256, 255, np.uint8)
        lut[[0, 1]] = 0
        lut[[CITYSCAPES.index(n) for n in others]] = 7
        np.testing.assert_array_equal(image_array(got["labels"]), lut[model])
        np.testing.assert_array_equal(decode(got["points"])["label"], lut[model])
        class_map = client.spin_until(
            lambda: next(
                (
                    m
                    for m in reversed(cols["class_map"].messages)
                    if [c.name for c in m.classes] == ["traversable", "obstacle"]
                ),
                None,
            ),
            10,
            "the remapped class map",
        )
        assert [c.id for c in class_map.classes] == [0, 7] and class_map.ignore_id == 255
        bad = tmp_path / "bad.yaml"
        bad.write_text("classes:\n  - name: free\n    id: 0\n    from: [road, sidewalk, tree]\n")
        result = client.set_parameters(class_remap=str(bad))[0]
        assert not result.successful and "line 4" in result.reason and "'tree'" in result.reason
    finally:
        assert client.set_parameters(class_remap="")[0].successful


def test_camera_info_follows_the_labels_at_network_resolution(rig):
    from node_harness import NET_H, NET_W

    client = rig[0]
    assert client.set_parameters(output_resolution="network")[0].successful
    try:
        stamp, got = send_set(
            rig,
            make_image(scene(H, W, seed=7), "rgb8"),
            depth_image(plane_mm(), "16UC1"),
            camera_info(),
            wait=("labels", "camera_info"),
        )
        info, labels = got["camera_info"], got["labels"]
        assert (labels.width, labels.height) == (info.width, info.height) == (NET_W, NET_H)
        assert stamp_ns(info) == stamp and info.header.frame_id == "camera_optical"
        sx, sy = NET_W / W, NET_H / H
        np.testing.assert_allclose(info.k, [FX * sx, 0, CX * sx, 0, FY * sy, CY * sy, 0, 0, 1], rtol=1e-9)
        np.testing.assert_allclose(np.reshape(info.p, (3, 4))[:2, :3], [[FX * sx, 0, CX * sx], [0, FY * sy, CY * sy]])
    finally:
        assert client.set_parameters(output_resolution="input")[0].successful
