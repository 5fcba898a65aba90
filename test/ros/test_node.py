"""The segmentation node over real DDS: one node process for the module, real published images.

Each test asserts content: sizes, encodings, stamps, frame_ids, label values against the
Segmenter run in this process with the same weights and network size, stats and diagnostics.
The harness is in node_harness.py, the shared fixtures (client, camera, outputs) in conftest.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from node_harness import (
    NET_H,
    NET_W,
    REFERENCE,
    REPO,
    Camera,
    as_encoding,
    auto_engine,
    image_array,
    make_image,
    next_stamp,
    scene,
    set_stamp,
    stamp_ns,
)

pytestmark = pytest.mark.ros


# -- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_every_encoding_and_size_lines_up(client, camera, outputs, encoding):
    overlay_encoding = {"rgb8": "rgb8", "bgr8": "bgr8", "rgba8": "rgb8", "bgra8": "bgr8", "mono8": "rgb8"}
    for h, w in ((48, 64), (31, 97), (1, 1)):
        msg = make_image(as_encoding(scene(h, w), encoding), encoding, frame_id=f"cam_{encoding}_{w}x{h}")
        got = camera.roundtrip(msg, outputs)
        for name, expected_encoding in (
            ("labels", "mono8"),
            ("color", "rgb8"),
            ("confidence", "mono8"),
            ("overlay", overlay_encoding[encoding]),
        ):
            out = got[name]
            assert (out.width, out.height, out.encoding) == (w, h, expected_encoding), name
            assert out.header.frame_id == f"cam_{encoding}_{w}x{h}"
            assert stamp_ns(out) == stamp_ns(msg)
            assert out.step * out.height == len(out.data)
        labels = image_array(got["labels"])
        assert labels.max() < 19
        stats = got["stats"]
        assert (stats.input_width, stats.input_height) == (w, h)


def test_label_color_overlay_confidence_equal_the_segmenter(client, camera, outputs, reference_segmenter):
    rgb = scene(72, 100, seed=3)
    bgr = as_encoding(rgb, "bgr8")
    got = camera.roundtrip(make_image(bgr, "bgr8"), outputs)
    ref = reference_segmenter(bgr, color_order="bgr", outputs=("labels", "color", "overlay", "confidence"), alpha=0.5)
    labels = image_array(got["labels"])
    assert len(np.unique(ref.labels)) > 1, "test picture should produce several classes"
    np.testing.assert_array_equal(labels, ref.labels)
    np.testing.assert_array_equal(image_array(got["color"]), ref.color)
    palette = reference_segmenter.labels.palette()
    np.testing.assert_array_equal(image_array(got["color"]), palette[labels])
    overlay = image_array(got["overlay"]).astype(int)
    assert got["overlay"].encoding == "bgr8"
    np.testing.assert_allclose(overlay, ref.overlay, atol=1)
    expected = np.round(0.5 * bgr + 0.5 * palette[labels][:, :, ::-1])
    assert np.abs(overlay - expected).max() <= 1, "overlay = half input (BGR) + half class color (as BGR)"
    np.testing.assert_allclose(image_array(got["confidence"]).astype(int), ref.confidence, atol=1)


def test_network_resolution_outputs(client, camera, outputs):
    assert all(r.successful for r in client.set_parameters(output_resolution="network"))
    try:
        got = camera.roundtrip(make_image(scene(50, 70), "rgb8"), outputs)
        for name in ("labels", "color", "overlay", "confidence"):
            assert (got[name].width, got[name].height) == (NET_W, NET_H), name
    finally:
        assert all(r.successful for r in client.set_parameters(output_resolution="input"))


def test_class_map_reaches_a_late_subscriber(client, camera, outputs):
    from esnet_ros.core.labels import cityscapes
    from esnet_ros.msg import ClassMap

    camera.roundtrip(make_image(scene(20, 20), "rgb8"), {"labels": outputs["labels"]})  # surely active by now
    collector, sub = client.collect(ClassMap, "/esnet/class_map", latched=True, depth=1)
    try:
        client.spin_until(lambda: collector.messages, 10.0, "the latched class map")
    finally:
        client.node.destroy_subscription(sub)
    msg = collector.messages[-1]
    cs = cityscapes()
    assert [c.name for c in msg.classes] == list(cs.names)
    assert [c.id for c in msg.classes] == list(range(19))
    assert [(c.r, c.g, c.b) for c in msg.classes] == [tuple(c) for c in cs.colors]
    assert msg.ignore_id == 255 and msg.dataset == "cityscapes"
    assert msg.model_name == REFERENCE.stem


def test_stats_fields_are_filled_and_plausible(client, camera, outputs):
    first = camera.roundtrip(make_image(scene(40, 60), "rgb8"), outputs)
    second = camera.roundtrip(make_image(scene(40, 60, seed=1), "rgb8"), outputs)
    stats = second["stats"]
    assert (stats.input_width, stats.input_height, stats.network_width, stats.network_height) == (60, 40, NET_W, NET_H)
    # backend/precision auto on the CPU: OpenVINO bf16 where the CPU has AMX/AVX512-BF16, else onnxruntime fp32
    assert (stats.device, stats.backend, stats.precision) == ("cpu", *auto_engine())
    for field in ("decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "publish_ms", "total_ms"):
        assert 0.0 <= getattr(stats, field) < 10_000, field
    assert stats.inference_ms > 0 and stats.total_ms >= stats.inference_ms
    # test stamps are seconds since the epoch start: age is "now - stamp", huge but finite and positive
    assert stats.age_ms > 0 and np.isfinite(stats.age_ms)
    assert stats.frame_index == first["stats"].frame_index + 1
    assert list(stats.class_ids) == list(range(19))
    labels = image_array(second["labels"])
    expected = np.bincount(labels.ravel(), minlength=19) / labels.size
    np.testing.assert_allclose(stats.class_fraction, expected, atol=1e-6)
    assert stats.dropped_total >= 0 and stats.rejected_total >= 0


def test_age_is_small_for_a_live_stamp(client, camera, outputs):
    from rclpy.clock import Clock

    msg = make_image(scene(30, 40), "rgb8")
    for _ in range(20):
        msg.header.stamp = Clock().now().to_msg()
        camera.send(msg)
        stamp = stamp_ns(msg)
        try:
            stats = client.spin_until(lambda stamp=stamp: outputs["stats"].by_stamp.get(stamp), 2.0, "stats")
            break
        except AssertionError:
            continue
    assert 0 < stats.age_ms < 5_000, stats.age_ms
    assert stats.age_ms >= stats.total_ms - 1.0


def test_diagnostics_counters_add_up(client, camera, outputs):
    camera.roundtrip(make_image(scene(30, 40), "rgb8"), outputs)
    client.spin_for(0.5)  # nothing in flight
    d = client.fresh_diagnostics()
    received, processed, dropped, rejected = (int(d[k]) for k in ("received", "processed", "dropped", "rejected"))
    assert received > 0 and processed > 0
    assert received == processed + dropped + rejected, d
    assert int(d["dropped"]) == int(d["dropped.superseded"]) + int(d["dropped.no_subscriber"])
    assert int(d["rejected"]) == sum(int(v) for k, v in d.items() if k.startswith("rejected."))
    for key in ("rate_received_hz", "rate_processed_hz", "latency_ms.median", "latency_ms.p95", "inference_ms.median"):
        assert float(d[key]) >= 0, key
    assert d["state"] == "active" and d["device"] == "cpu" and d["network_size"] == f"{NET_W}x{NET_H}"
    assert d["input_topic"] == "/camera/image_raw" and d["input_reliability"] == "reliable"


def test_burst_is_dropped_not_queued(client, camera, outputs):
    """Latest frame only: a burst faster than the node takes frames is mostly dropped, and the last frame is
    answered. The node's network on these small frames is faster than DDS delivers them (a few ms), so
    ``max_rate_hz`` holds the worker to 50 frames/s while ~250 frames/s arrive: each frame that comes while
    another waits supersedes it, exactly as when the network is the slow part."""
    before = client.fresh_diagnostics()
    assert all(r.successful for r in client.set_parameters(max_rate_hz=50.0))
    try:
        msg = make_image(scene(240, 320), "rgb8")
        stamps = []
        for _ in range(40):  # ~250 Hz
            stamps.append(set_stamp(msg, next_stamp()))
            camera.send(msg)
            time.sleep(0.004)
        client.spin_until(lambda: stamps[-1] in outputs["labels"].by_stamp, 15.0, "the last frame of the burst")
        client.spin_for(0.5)
    finally:
        assert all(r.successful for r in client.set_parameters(max_rate_hz=0.0))
    after = client.fresh_diagnostics()
    delta = {k: int(after[k]) - int(before[k]) for k in ("received", "processed", "dropped", "rejected")}
    assert delta["received"] == delta["processed"] + delta["dropped"] + delta["rejected"]
    assert delta["dropped"] > 0, f"frames arriving while the node is busy must supersede each other: {delta}"
    assert delta["processed"] < delta["received"], delta


def test_best_effort_and_reliable_cameras_are_both_served(client, camera, outputs, node_process):
    camera.destroy()
    try:
        mark = node_process.mark()
        be = Camera(client, reliable=False)
        try:
            node_process.wait_for(r"subscribed to /camera/image_raw .*best_effort.*all 1 publisher", 15, start=mark)
            got = be.roundtrip(make_image(scene(60, 80), "bgr8"), outputs)  # small frames: best effort delivers
            assert (got["labels"].width, got["labels"].height) == (80, 60)
        finally:
            be.destroy()
    finally:
        mark = node_process.mark()
        camera.pub = client.node.create_publisher(camera.pub.msg_type, "/camera/image_raw", client.qos(depth=1))
    node_process.wait_for(r"subscribed to /camera/image_raw .*reliable.*offer reliable", 15, start=mark)
    # a 640x480 frame over a reliable connection between processes arrives whole
    got = camera.roundtrip(make_image(scene(480, 640), "bgr8"), {"labels": outputs["labels"]})
    assert (got["labels"].width, got["labels"].height) == (640, 480)


def test_outputs_are_lazy(client, camera, outputs):
    from sensor_msgs.msg import Image

    # only labels subscribed: the overlay/color/confidence are not computed
    for name in ("color", "overlay", "confidence", "stats"):
        client.node.destroy_subscription(next(s for s in client.node.subscriptions if s.topic_name == f"/esnet/{name}"))
    try:
        client.spin_for(0.5)
        before = client.fresh_diagnostics()
        for seed in range(3):
            camera.roundtrip(make_image(scene(30, 40, seed), "rgb8"), {"labels": outputs["labels"]})
        client.spin_for(0.3)
        after = client.fresh_diagnostics()
        assert int(after["computed.labels"]) >= int(before["computed.labels"]) + 3
        for name in ("overlay", "color", "confidence", "stats"):
            assert after[f"computed.{name}"] == before[f"computed.{name}"], name
        # an overlay subscriber appears: overlays are computed again
        col, sub = client.collect(Image, "/esnet/overlay")
        try:
            camera.roundtrip(make_image(scene(30, 40), "rgb8"), {"overlay": col})
        finally:
            client.node.destroy_subscription(sub)
        # nobody listens at all: frames are counted as dropped (no_subscriber) and nothing runs
        labels_sub = next(s for s in client.node.subscriptions if s.topic_name == "/esnet/labels")
        client.node.destroy_subscription(labels_sub)
        client.spin_for(0.5)
        idle_before = client.fresh_diagnostics()
        msg = make_image(scene(30, 40), "rgb8")
        for _ in range(5):
            set_stamp(msg, next_stamp())
            camera.send(msg)
            client.spin_for(0.1)
        idle = client.wait_counter("dropped.no_subscriber", int(idle_before["dropped.no_subscriber"]) + 5)
        assert int(idle["received"]) >= int(idle_before["received"]) + 5
        assert idle["processed"] == idle_before["processed"]
        assert idle["computed.labels"] == idle_before["computed.labels"]
    finally:
        for name, msg_type in (("labels", Image), ("color", Image), ("overlay", Image), ("confidence", Image)):
            if not any(
                s.topic_name == f"/esnet/{name}" and s.callback is outputs[name] for s in client.node.subscriptions
            ):
                client.node.create_subscription(msg_type, f"/esnet/{name}", outputs[name], client.qos())
        from esnet_ros.msg import SegmentationStats

        if not any(s.topic_name == "/esnet/stats" for s in client.node.subscriptions):
            client.node.create_subscription(SegmentationStats, "/esnet/stats", outputs["stats"], client.qos())


def test_compressed_input(client, camera, outputs, node_process):
    import cv2
    from sensor_msgs.msg import CompressedImage

    mark = node_process.mark()
    assert all(r.successful for r in client.set_parameters(input_transport="compressed"))
    try:
        node_process.wait_for(r"subscribed to /camera/image_raw/compressed \(CompressedImage", 10, start=mark)
        cam = Camera(client, "/camera/image_raw/compressed", msg_type=CompressedImage)
        try:
            bgr = as_encoding(scene(45, 70), "bgr8")
            for ext, fmt in ((".jpg", "bgr8; jpeg compressed bgr8"), (".png", "rgb8; png compressed bgr8")):
                msg = CompressedImage(format=fmt, data=cv2.imencode(ext, bgr)[1].tobytes())
                msg.header.frame_id = "compressed_cam"
                got = cam.roundtrip(msg, outputs)
                assert (got["labels"].width, got["labels"].height) == (70, 45)
                assert got["labels"].header.frame_id == "compressed_cam"
                assert got["overlay"].encoding == ("bgr8" if ext == ".jpg" else "rgb8")
        finally:
            cam.destroy()
    finally:
        mark = node_process.mark()
        assert all(r.successful for r in client.set_parameters(input_transport="raw"))
        node_process.wait_for(r"subscribed to /camera/image_raw \(Image", 10, start=mark)


def test_runtime_parameter_changes(client, camera, outputs, node_process):
    # refused: not divisible by 8 (rclpy's step-8 range gives the reason; the node logs the nearest valid sizes)
    mark = node_process.mark()
    result = client.set_parameters(input_width=1020)[0]
    assert not result.successful
    assert "input_width is not a valid step" in result.reason and "step: 8" in result.reason, result.reason
    node_process.wait_for(r"input_width=1020 must be divisible by 8 .*try 1016 or 1024", 5, start=mark)
    assert client.get_parameters("input_width") == [NET_W]
    got = camera.roundtrip(make_image(scene(40, 60), "rgb8"), outputs)
    assert got["stats"].network_width == NET_W
    # accepted: the network size changes (model rebuilt in the background) on a following frame
    assert all(r.successful for r in client.set_parameters(_atomic=True, input_width=64, input_height=32))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = camera.roundtrip(make_image(scene(40, 60), "rgb8"), outputs)
            if (got["stats"].network_width, got["stats"].network_height) == (64, 32):
                break
        assert (got["stats"].network_width, got["stats"].network_height) == (64, 32)
        assert (got["labels"].width, got["labels"].height) == (60, 40)
        # alpha 1: the overlay is the class colors only (in the input's order)
        assert all(r.successful for r in client.set_parameters(overlay_alpha=1.0))
        got = camera.roundtrip(make_image(scene(40, 60), "rgb8"), outputs)
        np.testing.assert_array_equal(image_array(got["overlay"]), image_array(got["color"]))
        # max_rate_hz: a 20 Hz camera is processed at no more than 2 Hz
        assert all(r.successful for r in client.set_parameters(max_rate_hz=2.0))
        client.spin_for(0.6)
        before = client.fresh_diagnostics()
        msg = make_image(scene(40, 60), "rgb8")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            set_stamp(msg, next_stamp())
            camera.send(msg)
            client.spin_for(0.05)
        client.spin_for(0.7)
        after = client.fresh_diagnostics()
        processed = int(after["processed"]) - int(before["processed"])
        assert 2 <= processed <= 6, f"{processed} frames processed in ~2.7 s at max_rate_hz=2"
    finally:
        assert all(
            r.successful
            for r in client.set_parameters(
                _atomic=True, input_width=NET_W, input_height=NET_H, overlay_alpha=0.5, max_rate_hz=0.0
            )
        )
    assert client.get_parameters("input_width", "input_height", "overlay_alpha") == [NET_W, NET_H, 0.5]


def test_config_yaml_documents_every_parameter_with_its_default():
    import yaml

    from esnet_ros.ros.node import PARAMETERS

    text = (REPO / "config" / "esnet.yaml").read_text()
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert set(values) == set(PARAMETERS)
    for name, (default, descriptor) in PARAMETERS.items():
        assert values[name] == default, name
        assert len(descriptor.description) > 20, name
    docs = (REPO / "README.md").read_text()
    missing = [name for name in PARAMETERS if f"`{name}`" not in docs]
    assert not missing, f"README.md does not document {missing}"


@pytest.mark.vision_msgs
def test_label_info_matches_the_class_map_is_latched_and_follows_a_model_swap(client, camera, outputs, node_process):
    """/esnet/label_info (vision_msgs/LabelInfo, for Nav2's semantic_segmentation_layer)."""
    from vision_msgs.msg import LabelInfo

    from esnet_ros.msg import ClassMap

    def latest(msg_type, topic, count=1):
        collector, sub = client.collect(msg_type, topic, latched=True, depth=1)
        try:
            client.spin_until(lambda: len(collector.messages) >= count, 20.0, f"the latched {topic}")
        finally:
            client.node.destroy_subscription(sub)
        return collector.messages[-1]

    camera.roundtrip(make_image(scene(20, 20), "rgb8"), {"labels": outputs["labels"]})  # surely active by now
    info, class_map = latest(LabelInfo, "/esnet/label_info"), latest(ClassMap, "/esnet/class_map")
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(c.id, c.name) for c in class_map.classes]
    assert len(info.class_map) == 19
    # a late subscriber got it: transient local; the node offers exactly that
    (pub,) = client.node.get_publishers_info_by_topic("/esnet/label_info")
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    assert pub.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    # a model swap (the bundled model, its own class list) republishes it: a newer stamp, the new classes
    from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights

    bundled = load_checkpoint(resolve_weights(""), "cpu")[1].labels
    before = stamp_ns(info)
    assert all(r.successful for r in client.set_parameters(weights=""))
    try:
        collector, sub = client.collect(LabelInfo, "/esnet/label_info", latched=True, depth=1)
        deadline = time.monotonic() + 60
        while not (collector.messages and stamp_ns(collector.messages[-1]) > before):
            assert time.monotonic() < deadline, "label_info never carried the bundled model's classes"
            camera.roundtrip(make_image(scene(20, 20), "rgb8"), {"labels": outputs["labels"]})  # the swap is per frame
        client.node.destroy_subscription(sub)
        assert [(c.class_id, c.class_name) for c in collector.messages[-1].class_map] == list(enumerate(bundled.names))
    finally:
        assert all(r.successful for r in client.set_parameters(weights=str(REFERENCE)))
