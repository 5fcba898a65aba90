"""Issue 7 over real DDS: every bad message and fault, each checking survival, its counter and the next good frame.

One node process serves the module (max_input_pixels=40000, device=auto); tests that need a
process of their own (CUDA refusal, SIGINT/SIGTERM) run it in a namespace of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from node_harness import (
    BASE_PARAMS,
    NET_H,
    NET_W,
    REFERENCE,
    REPO,
    Camera,
    Client,
    NodeProcess,
    as_encoding,
    auto_engine,
    image_array,
    make_image,
    scene,
    set_stamp,
    stamp_ns,
)

pytestmark = pytest.mark.ros

MAX_PIXELS = 40_000


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


NODE_PARAMS = {
    **BASE_PARAMS,
    "device": "auto",
    "max_input_pixels": MAX_PIXELS,
}  # the module's node (conftest.py starts it)


@pytest.fixture(scope="module")
def camera(client, node_process):
    cam = Camera(client)
    node_process.wait_for(r"subscribed to /camera/image_raw .*reliable.*offer reliable", 15)
    cam.wait_for_subscriber()
    yield cam
    cam.destroy()


@pytest.fixture(scope="module")
def outputs(client):
    from sensor_msgs.msg import Image

    from esnet_ros.msg import SegmentationStats

    cols = {}
    for name in ("labels", "overlay"):
        cols[name], _ = client.collect(Image, f"/esnet/{name}")
    cols["stats"], _ = client.collect(SegmentationStats, "/esnet/stats")
    return cols


GOOD = scene(24, 32)


def assert_serves(node_process, camera, outputs, h: int = 24, w: int = 32) -> dict:
    """The node is alive and answers a good frame with outputs of the right size."""
    assert node_process.proc.poll() is None, node_process.log[-3000:]
    got = camera.roundtrip(make_image(scene(h, w), "bgr8", frame_id="good"), outputs)
    assert (got["labels"].width, got["labels"].height, got["labels"].header.frame_id) == (w, h, "good")
    return got


def expect_rejected(client, node_process, camera, outputs, msg, cause: str) -> None:
    before = client.fresh_diagnostics()
    mark = node_process.mark()
    camera.send(msg)
    after = client.wait_counter(f"rejected.{cause}", int(before[f"rejected.{cause}"]) + 1)
    assert int(after["rejected"]) >= int(before["rejected"]) + 1
    got = assert_serves(node_process, camera, outputs)
    assert got["stats"].rejected_total >= int(before["rejected"]) + 1
    # the warning names the cause (throttled per cause: at most one line per 5 s)
    if node_process.count(rf"rejected a frame \({cause}\)") == 0:
        raise AssertionError(f"no warning for {cause}; log since:\n" + "\n".join(node_process.lines[mark:]))


def raw(width: int, height: int, encoding: str, step: int, nbytes: int, bigendian: int = 0):
    from sensor_msgs.msg import Image

    msg = Image(width=width, height=height, encoding=encoding, step=step, is_bigendian=bigendian, data=bytes(nbytes))
    msg.header.frame_id = "bad"
    set_stamp(msg, 77)
    return msg


# -- bad raw images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, cause",
    [
        ("bayer_rggb8", "unsupported_encoding"),
        ("yuv422", "unsupported_encoding"),
        ("16UC1", "unsupported_encoding"),
        ("32FC1", "unsupported_encoding"),
        ("", "unknown_encoding"),
        ("not_an_encoding", "unknown_encoding"),
    ],
)
def test_bad_encoding(client, node_process, camera, outputs, encoding, cause):
    bpp = {"bayer_rggb8": 1, "yuv422": 2, "16UC1": 2, "32FC1": 4}.get(encoding, 3)
    expect_rejected(client, node_process, camera, outputs, raw(8, 6, encoding, 8 * bpp, 8 * bpp * 6), cause)


def test_step_smaller_than_row(client, node_process, camera, outputs):
    expect_rejected(client, node_process, camera, outputs, raw(8, 6, "bgr8", 23, 23 * 6), "bad_step")


@pytest.mark.parametrize("delta", [-10, +10])
def test_data_shorter_or_longer_than_step_times_height(client, node_process, camera, outputs, delta):
    expect_rejected(client, node_process, camera, outputs, raw(8, 6, "bgr8", 24, 24 * 6 + delta), "data_size")


@pytest.mark.parametrize("width, height", [(0, 6), (8, 0)])
def test_zero_width_or_height(client, node_process, camera, outputs, width, height):
    expect_rejected(
        client, node_process, camera, outputs, raw(width, height, "bgr8", width * 3, width * 3 * height), "zero_size"
    )


def test_more_pixels_than_max_input_pixels(client, node_process, camera, outputs):
    msg = make_image(np.zeros((200, 201, 3), np.uint8), "bgr8")
    expect_rejected(client, node_process, camera, outputs, msg, "too_large")
    assert node_process.count(r"201x200 has 40200 pixels, more than max_input_pixels=40000")


def test_is_bigendian_does_not_matter_for_8bit(client, node_process, camera, outputs):
    bgr = as_encoding(scene(24, 32, seed=5), "bgr8")
    normal = camera.roundtrip(make_image(bgr, "bgr8"), outputs)
    flagged = make_image(bgr, "bgr8")
    flagged.is_bigendian = 1
    got = camera.roundtrip(flagged, outputs)
    np.testing.assert_array_equal(image_array(got["labels"]), image_array(normal["labels"]))


@pytest.mark.parametrize("width, height", [(1, 1), (3, 1001), (1001, 3)])
def test_odd_sizes_line_up(client, node_process, camera, outputs, width, height):
    from esnet_ros.inference.segmenter import Segmenter

    rgb = scene(height, width, seed=2)
    got = camera.roundtrip(make_image(rgb, "rgb8"), outputs)
    labels = image_array(got["labels"])
    assert labels.shape == (height, width)
    ref = Segmenter(str(REFERENCE), device="cpu", input_size=(NET_W, NET_H))(rgb, color_order="rgb")
    np.testing.assert_array_equal(labels, ref.labels)


# -- headers ----------------------------------------------------------------------------------------


def test_zero_stamp_is_processed_with_a_warning(client, node_process, camera, outputs):
    before = client.fresh_diagnostics()
    msg = make_image(GOOD, "bgr8", frame_id="zero")
    for _ in range(10):
        set_stamp(msg, 0)
        msg.header.stamp.nanosec = 0
        camera.send(msg)
        try:
            client.spin_until(lambda: 0 in outputs["stats"].by_stamp, 2.0, "the zero-stamped frame")
            break
        except AssertionError:
            continue
    stats = outputs["stats"].by_stamp[0]
    assert stats.header.frame_id == "zero" and np.isnan(stats.age_ms), "age of an unstamped frame is unknown (NaN)"
    client.wait_counter("warnings.stamp_zero", int(before["warnings.stamp_zero"]) + 1)
    assert node_process.count("zero stamp")
    assert_serves(node_process, camera, outputs)


def _send_until_answered(client, camera, outputs, msg, stamp: int, count_before: int = 0):
    for _ in range(10):
        camera.send(msg)
        try:
            return client.spin_until(
                lambda: sum(1 for m in outputs["labels"].messages if stamp_ns(m) == stamp) > count_before, 2.0, "answer"
            )
        except AssertionError:
            continue
    raise AssertionError("frame never answered")


def test_stamp_going_backwards_and_duplicated(client, node_process, camera, outputs):
    before = client.fresh_diagnostics()
    msg = make_image(GOOD, "bgr8", frame_id="stamps")
    s1 = set_stamp(msg, 5_000_000)
    _send_until_answered(client, camera, outputs, msg, s1)
    n = sum(1 for m in outputs["labels"].messages if stamp_ns(m) == s1)
    _send_until_answered(client, camera, outputs, msg, s1, count_before=n)  # duplicated stamp
    client.wait_counter("warnings.stamp_duplicate", int(before["warnings.stamp_duplicate"]) + 1)
    s0 = set_stamp(msg, 4_999_000)  # going backwards
    _send_until_answered(client, camera, outputs, msg, s0)
    after = client.wait_counter("warnings.stamp_backwards", int(before["warnings.stamp_backwards"]) + 1)
    assert after["rejected"] == before["rejected"], "stamp anomalies are processed, not rejected"
    assert_serves(node_process, camera, outputs)


def test_huge_frame_id_is_copied_unchanged(client, node_process, camera, outputs):
    before = client.fresh_diagnostics()
    frame_id = "camera_" + "x" * 200_000
    msg = make_image(GOOD, "bgr8", frame_id=frame_id)
    got = camera.roundtrip(msg, outputs)
    assert got["labels"].header.frame_id == frame_id and got["stats"].header.frame_id == frame_id
    client.wait_counter("warnings.frame_id_long", int(before["warnings.frame_id_long"]) + 1)
    assert_serves(node_process, camera, outputs)


# -- bad compressed images -------------------------------------------------------------------------


def test_bad_compressed_images(client, node_process, outputs):
    from sensor_msgs.msg import CompressedImage

    mark = node_process.mark()
    assert all(r.successful for r in client.set_parameters(input_transport="compressed"))
    node_process.wait_for(r"subscribed to /camera/image_raw/compressed", 10, start=mark)
    cam = Camera(client, "/camera/image_raw/compressed", msg_type=CompressedImage)
    try:
        cam.wait_for_subscriber()  # a frame sent before discovery matched would never arrive
        jpg = cv2.imencode(".jpg", as_encoding(GOOD, "bgr8"))[1].tobytes()
        png = cv2.imencode(".png", as_encoding(GOOD, "bgr8"))[1].tobytes()
        idat = png.index(b"IDAT") + 8
        cases = {
            "compressed_empty": b"",
            "compressed_truncated": jpg[: len(jpg) // 2],
            "compressed_corrupt": png[:idat] + bytes(b ^ 0x5A for b in png[idat : idat + 40]) + png[idat + 40 :],
            "compressed_format": b"GIF89a" + bytes(64),
            "png_16bit": cv2.imencode(".png", GOOD.astype(np.uint16) * 257)[1].tobytes(),
            "too_large": cv2.imencode(".jpg", np.zeros((250, 250, 3), np.uint8))[1].tobytes(),
        }
        good = CompressedImage(format="bgr8; jpeg compressed bgr8", data=jpg)
        good.header.frame_id = "good"
        for cause, data in cases.items():
            bad = CompressedImage(format="bgr8; jpeg compressed bgr8", data=data)
            before = client.fresh_diagnostics()
            cam.send(bad)
            client.wait_counter(f"rejected.{cause}", int(before[f"rejected.{cause}"]) + 1)
            got = cam.roundtrip(good, outputs)
            assert (got["labels"].width, got["labels"].height) == (32, 24), cause
            assert node_process.count(rf"rejected a frame \({cause}\)"), cause
    finally:
        cam.destroy()
        mark = node_process.mark()
        assert all(r.successful for r in client.set_parameters(input_transport="raw"))
        node_process.wait_for(r"subscribed to /camera/image_raw \(Image", 10, start=mark)


# -- faults -----------------------------------------------------------------------------------------

CAMERA_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node("proc_camera")
    pub = node.create_publisher(Image, "/camera/image_raw", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    img = np.full((24, 32, 3), 100, np.uint8)
    msg = Image(height=24, width=32, encoding="bgr8", step=96, data=img.tobytes())
    msg.header.frame_id = sys.argv[1]
    i = 0
    while True:
        i += 1
        msg.header.stamp.sec = 9_000_000 + i
        pub.publish(msg)
        time.sleep(0.1)
""")


def test_camera_process_dies_and_comes_back(client, node_process, camera, outputs):
    def run_camera(frame_id):
        return subprocess.Popen(
            [sys.executable, "-c", CAMERA_SCRIPT, frame_id],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def answered(frame_id):
        return client.spin_until(
            lambda: any(m.header.frame_id == frame_id for m in outputs["labels"].messages),
            40.0,
            f"labels for {frame_id}",
        )

    first = run_camera("proc_cam_1")
    try:
        answered("proc_cam_1")
    finally:
        first.kill()  # dies without saying goodbye
        first.wait()
    client.spin_for(1.0)
    second = run_camera("proc_cam_2")
    try:
        answered("proc_cam_2")
    finally:
        second.kill()
        second.wait()
    assert_serves(node_process, camera, outputs)


def test_incompatible_qos_warns_once_with_the_fix(client, node_process, camera, outputs):
    from sensor_msgs.msg import Image

    mark = node_process.mark()
    assert all(r.successful for r in client.set_parameters(**{"input_qos.reliability": "reliable"}))
    node_process.wait_for(r"subscribed to .*reliable.*input_qos.reliability=reliable", 10, start=mark)
    pattern = r"incompatible QoS on /camera/image_raw \(RELIABILITY\).*input_qos.reliability:=best_effort"
    try:
        for _ in range(2):  # two best-effort cameras, one after the other
            pub = client.node.create_publisher(Image, "/camera/image_raw", client.qos(reliable=False))
            client.spin_for(1.5)
            client.node.destroy_publisher(pub)
        node_process.wait_for(pattern, 5, start=mark)
        assert node_process.count(pattern, start=mark) == 1, "\n".join(node_process.lines[mark:])
        # the same for an output: a subscriber asking for transient local from the volatile labels
        sub = client.node.create_subscription(Image, "/esnet/labels", lambda m: None, client.qos(latched=True))
        node_process.wait_for(r"incompatible QoS on /esnet/labels \(DURABILITY\).*subscribe volatile", 10, start=mark)
        client.node.destroy_subscription(sub)
    finally:
        mark = node_process.mark()
        assert all(r.successful for r in client.set_parameters(**{"input_qos.reliability": "auto"}))
        node_process.wait_for(r"subscribed to .*offer reliable", 10, start=mark)
    assert_serves(node_process, camera, outputs)


def test_invalid_runtime_parameters_are_refused_and_nothing_changes(client, node_process, camera, outputs):
    names = (
        "overlay_alpha",
        "input_transport",
        "device",
        "precision",
        "input_width",
        "output_qos.reliability",
        "max_rate_hz",
        "image_topic",
        "backend",
        "int8_calibration_dir",
    )
    before = client.get_parameters(*names)
    reference = assert_serves(node_process, camera, outputs)
    cases = [
        ({"overlay_alpha": 1.5}, "overlay_alpha"),
        ({"input_transport": "udp"}, "one of: raw, compressed"),
        ({"device": "gpu"}, "one of: auto, cpu, cuda, cuda:N"),
        ({"precision": "fp8"}, "one of: auto, fp32, fp16"),
        ({"input_width": 1020}, "input_width is not a valid step"),  # rclpy's step-8 range; the hint: below
        ({"output_qos.reliability": "best_effort"}, "read-only"),
        ({"max_rate_hz": -1.0}, "max_rate_hz"),
        ({"image_topic": " "}, "image_topic must not be empty"),
        # int8 calibration images are for OpenVINO's NNCF only, and must exist
        ({"int8_calibration_dir": str(REPO / "test")}, "int8_calibration_dir is used by backend:=openvino"),
        (
            {"int8_calibration_dir": "/nonexistent/calibration", "backend": "openvino", "_atomic": True},
            "int8_calibration_dir /nonexistent/calibration is not a folder; point it at camera-like PNG/JPEG",
        ),
        ({"input_width": 256, "input_height": 100, "_atomic": True}, "input_height is not a valid step"),
    ]
    mark = node_process.mark()
    for values, reason in cases:  # the last one is atomic: all or nothing
        results = client.set_parameters(**values)
        assert not all(r.successful for r in results), values
        assert any(reason in r.reason for r in results), (values, [r.reason for r in results])
    assert client.get_parameters(*names) == before
    node_process.wait_for(r"input_width=1020 must be divisible by 8 .*try 1016 or 1024", 5, start=mark)
    node_process.wait_for(r"input_height=100 must be divisible by 8", 5, start=mark)
    got = assert_serves(node_process, camera, outputs)
    assert got["stats"].network_width == reference["stats"].network_width == NET_W


def test_bad_weights_are_refused_and_the_old_model_keeps_serving(client, node_process, camera, outputs, tmp_path):
    import pickle

    rgb = scene(24, 32, seed=11)
    before = camera.roundtrip(make_image(rgb, "rgb8"), outputs)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(REFERENCE.read_bytes()[:5000])
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": Evil()}))
    for path, reason in (
        (tmp_path / "missing.safetensors", "does not exist"),
        (corrupt, "corrupt"),
        (truncated, "corrupt"),
        (evil, ""),
    ):
        result = client.set_parameters(weights=str(path))[0]
        assert not result.successful, path
        assert reason in result.reason and str(path) in result.reason, result.reason
    assert not marker.exists(), "loading weights must never execute code"
    assert client.get_parameters("weights") == [str(REFERENCE)]
    after = camera.roundtrip(make_image(rgb, "rgb8"), outputs)
    np.testing.assert_array_equal(image_array(after["labels"]), image_array(before["labels"]))


@pytest.mark.skipif(_cuda(), reason="this machine has CUDA: the refusal cannot be shown")
def test_device_cuda_without_cuda_fails_configure_clearly_and_auto_falls_back(rclpy_context, node_process):
    proc = NodeProcess({**BASE_PARAMS, "device": "cuda"}, ros_args=("-r", "__ns:=/cuda_test"))
    try:
        line = proc.wait_for(r"configure failed", 90)
        assert "device='cuda' but this machine has no usable CUDA" in line and "device:=cpu" in line
        proc.wait_for(r"stays unconfigured", 10)
        client = Client(rclpy_context, "esnet_test_cuda_client")
        try:
            client.spin_until(
                lambda: any(v.get("last_error", "").startswith("configure failed") for _, v in client.diagnostics),
                10,
                "diagnostics with the error",
            )
        finally:
            client.close()
        assert proc.proc.poll() is None, "the lifecycle node stays up (unconfigured) for a fix"
    finally:
        rc, _ = proc.stop()
    assert rc == 0 and "Traceback" not in proc.log, proc.log
    # device:=auto on this machine: one info line, then the CPU
    assert node_process.count(r"device=auto: no CUDA device available, running on the CPU") == 1
    backend, precision = auto_engine()
    assert node_process.count(rf"{backend} on cpu \({precision}\)") >= 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_exit_cleanly_within_two_seconds(rclpy_context, sig):
    ns = f"/sig_{sig.name.lower()}"
    proc = NodeProcess(BASE_PARAMS, ros_args=("-r", f"__ns:={ns}"))
    client = None
    try:
        proc.wait_for(r"subscribed to", 90)
        client = Client(rclpy_context, f"esnet_test_{sig.name.lower()}_client")
        labels, _ = client.collect(__import__("sensor_msgs.msg", fromlist=["Image"]).Image, f"{ns}/esnet/labels")
        cam = Camera(client, f"{ns}/camera/image_raw")
        cam.roundtrip(make_image(scene(120, 160), "bgr8"), {"labels": labels})  # busy when the signal comes
        msg = make_image(scene(120, 160), "bgr8")
        for i in range(3):
            set_stamp(msg, 100 + i)
            cam.send(msg)
        rc, seconds = proc.stop(sig)
    finally:
        if client is not None:
            client.close()
        proc.stop(signal.SIGKILL)
    assert rc == 0, proc.log[-3000:]
    assert seconds < 2.0, f"exit took {seconds:.2f} s"
    assert "Traceback" not in proc.log and "Exception" not in proc.log, proc.log[-3000:]


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_ctrl_c_during_start_up_exits_quietly(delay):
    """SIGINT while the entry point still imports torch, or while the node is being built."""
    import time

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "segmentation_node"),
        "--ros-args",
        "-r",
        f"__ns:=/early_{int(delay * 10)}",
        *[arg for k, v in BASE_PARAMS.items() for arg in ("-p", f"{k}:={v}")],
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]


def test_subscriber_coming_and_going_does_not_stall(client, node_process, camera, outputs):
    from sensor_msgs.msg import Image

    msg = make_image(GOOD, "bgr8")
    before = client.fresh_diagnostics()
    for i in range(12):
        _col, sub = client.collect(Image, "/esnet/overlay")
        set_stamp(msg, 7_000_000 + i)
        camera.send(msg)
        client.spin_for(0.05 * (i % 3))
        client.node.destroy_subscription(sub)  # sometimes before, sometimes after the frame is answered
    got = assert_serves(node_process, camera, outputs)
    client.spin_for(0.5)
    after = client.fresh_diagnostics()
    delta = {k: int(after[k]) - int(before[k]) for k in ("received", "processed", "dropped", "rejected")}
    # depth-1 history may overwrite a frame before it is delivered, so not all 13 need arrive;
    # what matters: nothing stalls (the good frame was answered) and every arrival is accounted for
    assert delta["received"] >= 1 and delta["received"] == delta["processed"] + delta["dropped"] + delta["rejected"]
    assert got["labels"].header.frame_id == "good"


def test_frames_lost_before_the_callback_are_counted_as_missed(client, node_process, camera, outputs):
    msg = make_image(GOOD, "bgr8")
    camera.roundtrip(msg, outputs)  # the camera's previous frame is known to the node
    before = client.fresh_diagnostics()
    burst = 15
    for i in range(burst):  # faster than the node can take them: depth 1 overwrites in DDS
        set_stamp(msg, 8_000_000 + i)
        camera.send(msg)
    client.spin_for(0.3)
    got = assert_serves(node_process, camera, outputs)  # one more frame reveals any trailing gap
    client.spin_for(0.5)
    after = client.fresh_diagnostics()
    delta = {k: int(after[k]) - int(before[k]) for k in ("received", "missed_in_transport")}
    assert delta["received"] + delta["missed_in_transport"] == burst + 1, delta
    assert got["labels"].header.frame_id == "good"


def test_lifecycle_deactivate_releases_and_activate_serves_again(client, node_process, camera, outputs):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    change = client.node.create_client(ChangeState, "/esnet_segmentation/change_state")
    get = client.node.create_client(GetState, "/esnet_segmentation/get_state")
    assert change.wait_for_service(timeout_sec=10) and get.wait_for_service(timeout_sec=10)

    def transition(tid):
        future = change.call_async(ChangeState.Request(transition=Transition(id=tid)))
        client.spin_until(future.done, 20, "change_state")
        return future.result().success

    def state():
        future = get.call_async(GetState.Request())
        client.spin_until(future.done, 10, "get_state")
        return future.result().current_state.label

    assert state() == "active"
    try:
        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert state() == "inactive"
        client.wait_counter("received", 0)  # diagnostics keep coming while inactive
        client.spin_until(lambda: client.diagnostics[-1][1]["state"] == "inactive", 5, "state inactive in diagnostics")
        msg = make_image(GOOD, "bgr8", frame_id="while_inactive")
        for _ in range(3):
            camera.send(msg)
            client.spin_for(0.3)
        assert not any(m.header.frame_id == "while_inactive" for m in outputs["labels"].messages)
    finally:
        assert transition(Transition.TRANSITION_ACTIVATE)
    assert state() == "active"
    assert_serves(node_process, camera, outputs)
    client.node.destroy_client(change)
    client.node.destroy_client(get)


# -- process and graph ------------------------------------------------------------------------------


def _in_graph(client, name: str, ns: str) -> bool:
    return (name, ns) in client.node.get_node_names_and_namespaces()


def test_node_leaves_the_graph_within_two_seconds_of_sigint(rclpy_context):
    """The fast exit destroys the node and the context, so DDS announces the departure (no ~20 s lease)."""
    import time

    ns = "/graph_leave"
    proc = NodeProcess(BASE_PARAMS, ros_args=("-r", f"__ns:={ns}"))
    client = Client(rclpy_context, "esnet_test_graph_client")
    try:
        proc.wait_for(r"subscribed to", 90)
        client.spin_until(lambda: _in_graph(client, "esnet_segmentation", ns), 20, "the node in the graph")
        t0 = time.monotonic()
        rc, _ = proc.stop(signal.SIGINT)
        client.spin_until(
            lambda: not _in_graph(client, "esnet_segmentation", ns),
            2.0 - (time.monotonic() - t0),
            "the node gone from get_node_names_and_namespaces()",
        )
        assert rc == 0, proc.log[-3000:]
    finally:
        client.close()
        proc.stop(signal.SIGKILL)


def test_autostart_failure_hint_names_the_namespaced_node(rclpy_context, tmp_path):
    missing = tmp_path / "missing.safetensors"
    proc = NodeProcess({**BASE_PARAMS, "weights": str(missing)}, ros_args=("-r", "__ns:=/front"))
    try:
        line = proc.wait_for(r"stays unconfigured", 90)
        assert "`ros2 lifecycle set /front/esnet_segmentation configure`" in line, line
        assert proc.count(r"configure failed: .*missing\.safetensors") == 1
    finally:
        rc, _ = proc.stop()
    assert rc == 0 and "Traceback" not in proc.log, proc.log[-3000:]


def test_no_size_parameters_serve_the_bundled_model_at_its_own_size(rclpy_context):
    """input_width/input_height default 0: the checkpoint's input_size (480x360 for the default CamVid model)."""
    from sensor_msgs.msg import Image

    from esnet_ros.msg import SegmentationStats

    ns = "/bundled"
    proc = NodeProcess({"device": "cpu"}, ros_args=("-r", f"__ns:={ns}"))
    client = Client(rclpy_context, "esnet_test_bundled_client")
    try:
        line = proc.wait_for(r"network input .* \(from ", 90)
        assert "network input 480x360 (from the checkpoint)" in line, line
        proc.wait_for(r"subscribed to", 30)
        stats, _ = client.collect(SegmentationStats, f"{ns}/esnet/stats")
        labels, _ = client.collect(Image, f"{ns}/esnet/labels")
        cam = Camera(client, f"{ns}/camera/image_raw")
        cam.wait_for_subscriber()
        got = cam.roundtrip(make_image(scene(120, 160), "bgr8"), {"stats": stats, "labels": labels})
        assert (got["stats"].network_width, got["stats"].network_height) == (480, 360)
        assert (got["labels"].width, got["labels"].height) == (160, 120)
        from esnet_ros.msg import ClassMap

        class_map, _ = client.collect(ClassMap, f"{ns}/esnet/class_map", latched=True, depth=1)
        client.spin_until(lambda: class_map.messages, 10, "the latched class_map")
        info = class_map.messages[-1]
        assert info.dataset == "camvid" and len(info.classes) == 11 and info.ignore_id == 11
        assert [c.name for c in info.classes][:4] == ["Sky", "Building", "Pole", "Road"]
    finally:
        client.close()
        rc, _ = proc.stop()
    assert rc == 0 and "Traceback" not in proc.log, proc.log[-3000:]


def test_engine_errors_are_told_in_ros_syntax_by_the_node_only():
    """The core and the CLIs name settings ``name=value``; the node rewrites its own parameters as ``name:=value``."""
    import torch

    from esnet_ros.inference.devices import resolve_precision
    from esnet_ros.ros.parameters import ros_syntax

    with pytest.raises(ValueError) as raised:
        resolve_precision("fp16", torch.device("cpu"))
    core = str(raised.value)
    assert ":=" not in core and "precision=fp32" in core
    assert ros_syntax(raised.value) == core.replace("precision=", "precision:=")
    assert (
        ros_syntax("x.device=3 --device=cpu a==b device='cuda' backend=torch")
        == "x.device=3 --device=cpu a==b device='cuda' backend:=torch"
    )
