"""The synthetic camera node as its own process over real DDS: sizes, encodings, stamps, ground truth.

Two camera processes per module: a small custom one (rgb8, 320x240, own frame_id, 20 Hz) whose
frames are checked pixel for pixel against :func:`esnet_ros.tooling.synthetic_camera.render_pool`, and one with the
defaults (1280x720 bgr8, reliable, 15 Hz) with a pool of 2 to keep start-up short.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from node_harness import REPO

pytestmark = pytest.mark.ros

TIMEOUT_S = 60.0


def _start_camera(tmp_path_factory, name: str, *params: str) -> tuple[subprocess.Popen, os.PathLike]:
    log_path = tmp_path_factory.mktemp(name) / "camera.log"
    argv = [
        sys.executable,
        "-m",
        "esnet_ros.tooling.synthetic_camera",
        "--ros-args",
        "-r",
        f"__node:={name}",
        "-r",
        f"__ns:=/{name}",
    ]
    for p in params:
        argv += ["-p", p]
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, log_path


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class Collector:
    """Subscribes (reliable) to a camera's image and ground-truth topics and keeps what arrives."""

    def __init__(self, context, namespace: str, depth: int = 50) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.node = rclpy.create_node(f"collector_{namespace}", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.images, self.gts, self.diags = [], [], []
        self.node.create_subscription(Image, f"/{namespace}/camera/image_raw", self.images.append, qos)
        self.node.create_subscription(Image, f"/{namespace}/camera/labels_gt", self.gts.append, qos)
        self.node.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            lambda m: self.diags.extend(
                s for s in m.status if namespace in s.name or any(k.key == "frames_published" for k in s.values)
            ),
            10,
        )

    def spin_until(self, predicate, timeout_s: float, proc: subprocess.Popen, log_path) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not predicate():
            assert proc.poll() is None, f"camera exited with {proc.returncode}:\n{log_path.read_text()}"
            self.executor.spin_once(timeout_sec=0.05)
        assert predicate(), f"timed out after {timeout_s} s; camera log:\n{log_path.read_text()}"

    def destroy(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.fixture(scope="module")
def small_camera(tmp_path_factory, rclpy_context):
    """A 320x240 rgb8 camera at 20 Hz with 3 scenes, seed 5, and 25 frames collected from it."""
    proc, log_path = _start_camera(
        tmp_path_factory,
        "small_cam",
        "width:=320",
        "height:=240",
        "encoding:=rgb8",
        "rate_hz:=20.0",
        "pool_size:=3",
        "seed:=5",
        "frame_id:=test_cam_frame",
    )
    col = Collector(rclpy_context, "small_cam")
    try:
        col.spin_until(lambda: len(col.images) >= 25 and len(col.gts) >= 25, TIMEOUT_S, proc, log_path)
        yield col, proc, log_path
    finally:
        col.destroy()
        _stop(proc)


@pytest.fixture(scope="module")
def default_camera(tmp_path_factory, rclpy_context):
    """The camera with its defaults (1280x720 bgr8, reliable, 15 Hz); pool of 2 for a quick start."""
    proc, log_path = _start_camera(tmp_path_factory, "default_cam", "pool_size:=2")
    col = Collector(rclpy_context, "default_cam", depth=10)
    try:
        col.spin_until(lambda: len(col.images) >= 6 and len(col.gts) >= 6, TIMEOUT_S, proc, log_path)
        yield col, proc, log_path
    finally:
        col.destroy()
        _stop(proc)


def test_small_camera_frames_match_the_rendered_scenes(small_camera):
    from esnet_ros.tooling.synthetic_camera import render_pool

    col, _, _ = small_camera
    pool = render_pool(320, 240, 3, seed=5, encoding="rgb8")
    expected_images = {img.tobytes(): i for i, (img, _) in enumerate(pool)}
    gts = {_stamp_ns(m): m for m in col.gts}
    indices = []
    for msg in col.images:
        assert (msg.width, msg.height, msg.encoding, msg.step, msg.is_bigendian) == (320, 240, "rgb8", 960, 0)
        assert len(msg.data) == 320 * 240 * 3
        assert msg.header.frame_id == "test_cam_frame"
        index = expected_images.get(bytes(msg.data))
        assert index is not None, "a published frame is none of the pre-rendered scenes"
        indices.append(index)
        gt = gts.get(_stamp_ns(msg))
        if gt is None:
            continue
        # ground truth: same header, mono8, exactly the trainIds of the same scene
        assert (gt.width, gt.height, gt.encoding, gt.step) == (320, 240, "mono8", 320)
        assert gt.header.frame_id == "test_cam_frame"
        labels = np.frombuffer(gt.data, np.uint8).reshape(240, 320)
        np.testing.assert_array_equal(labels, pool[index][1])
    # the camera cycles through its pool in order
    assert all((b - a) % 3 == 1 for a, b in itertools.pairwise(indices)), indices
    assert len(set(indices)) == 3
    matched = sum(_stamp_ns(m) in gts for m in col.images)
    assert matched >= len(col.images) - 2, f"only {matched} of {len(col.images)} frames have ground truth"


def test_small_camera_stamps_are_increasing_current_and_at_the_rate(small_camera):
    col, _, _ = small_camera
    stamps = np.array([_stamp_ns(m) for m in col.images], np.int64)
    assert np.all(np.diff(stamps) > 0), "stamps must strictly increase"
    assert abs(time.time_ns() - stamps[-1]) < 30e9, "stamps must come from the current (wall) clock"
    interval_s = np.median(np.diff(stamps)) / 1e9
    assert 0.035 < interval_s < 0.075, f"median frame interval {interval_s:.3f} s at rate_hz 20"
    gt_values = np.unique(np.concatenate([np.frombuffer(m.data, np.uint8) for m in col.gts[:5]]))
    assert set(gt_values.tolist()) <= set(range(19)) | {255}
    assert len(gt_values) >= 6, f"a street scene shows many classes, got {gt_values}"


def test_small_camera_publishes_diagnostics(small_camera):
    col, proc, log_path = small_camera
    received = len(col.images)

    def latest() -> dict[str, str]:
        statuses = [s for s in col.diags if s.name.startswith("small_cam")]
        return {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}

    # published once a second: the count catches up with what this test received
    col.spin_until(lambda: int(latest().get("frames_published", 0)) >= received, 5.0, proc, log_path)
    values = latest()
    assert float(values["rate_hz_measured"]) == pytest.approx(20.0, rel=0.3)
    assert (values["width"], values["height"], values["encoding"], values["pool_size"]) == ("320", "240", "rgb8", "3")


def test_default_camera_is_720p_bgr8_reliable(default_camera, rclpy_context):
    from rclpy.qos import ReliabilityPolicy

    col, _, log_path = default_camera
    for msg in col.images:
        assert (msg.width, msg.height, msg.encoding, msg.step) == (1280, 720, "bgr8", 3840)
        assert len(msg.data) == 1280 * 720 * 3
        assert msg.header.frame_id == "camera_optical_frame"
    for msg in col.gts:
        assert (msg.width, msg.height, msg.encoding) == (1280, 720, "mono8")
    image_stamps = {_stamp_ns(m) for m in col.images}
    assert len(image_stamps & {_stamp_ns(m) for m in col.gts}) >= 4
    infos = col.node.get_publishers_info_by_topic("/default_cam/camera/image_raw")
    assert [i.qos_profile.reliability for i in infos] == [ReliabilityPolicy.RELIABLE]
    stamps = sorted(image_stamps)
    interval_s = float(np.median(np.diff(stamps))) / 1e9
    assert 0.045 < interval_s < 0.10, f"median interval {interval_s:.3f} s at the default 15 Hz"
    assert "publishing camera/image_raw (1280x720 bgr8, reliable" in log_path.read_text()


def test_rate_can_change_at_run_time_and_invalid_values_are_refused(small_camera, rclpy_context):
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    col, proc, log_path = small_camera
    client = col.node.create_client(SetParameters, "/small_cam/small_cam/set_parameters")
    try:
        assert client.wait_for_service(timeout_sec=10.0)

        def set_param(name: str, value: ParameterValue):
            future = client.call_async(SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)]))
            col.spin_until(future.done, 10.0, proc, log_path)
            return future.result().results[0]

        bad = set_param("rate_hz", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.0))
        assert not bad.successful and "rate_hz" in bad.reason
        ro = set_param("encoding", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="bgr8"))
        assert not ro.successful and "read-only" in ro.reason.lower()
        ok = set_param("rate_hz", ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=40.0))
        assert ok.successful, ok.reason
        changed_ns = time.time_ns() + 200_000_000  # frames still queued from before are older
        col.spin_until(lambda: sum(_stamp_ns(m) > changed_ns for m in col.images) >= 15, 10.0, proc, log_path)
        interval_s = float(np.median(np.diff([_stamp_ns(m) for m in col.images if _stamp_ns(m) > changed_ns]))) / 1e9
        assert interval_s < 0.035, f"median interval {interval_s:.3f} s after rate_hz:=40.0"
    finally:
        col.node.destroy_client(client)


def test_sigint_exits_cleanly(tmp_path_factory):
    proc, log_path = _start_camera(tmp_path_factory, "sigint_cam", "width:=64", "height:=48", "pool_size:=1")
    time.sleep(3.0)
    assert proc.poll() is None, log_path.read_text()
    start = time.monotonic()
    assert _stop(proc) == 0
    assert time.monotonic() - start < 5.0
    log = log_path.read_text()
    assert "Traceback" not in log
    # its exact total on the way out (3 s at the default 15 Hz: about 45 frames)
    from esnet_ros.tooling.synthetic_camera import published_in_log

    assert 10 <= published_in_log(log) <= 60, log


@pytest.mark.parametrize(
    "param, expected",
    [
        ("width:=8", "width x height = 8x720 is too small; use at least 16x16"),
        ("encoding:=yuv422", "encoding='yuv422' must be one of: bgr8, rgb8"),
        ("reliability:=sometimes", "must be one of: reliable, best_effort"),
        ("rate_hz:=30", "rate_hz:=30.0"),
    ],
)
def test_invalid_parameters_are_refused_with_a_reason(param, expected):
    result = subprocess.run(
        [sys.executable, "-m", "esnet_ros.tooling.synthetic_camera", "--ros-args", "-p", param],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_help_prints_usage_and_exits_0():
    """``synthetic_camera --help`` prints its usage and parameters instead of starting to publish."""
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "synthetic_camera"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage: synthetic_camera"), out.stdout[:500]
    for name in ("rate_hz", "width", "encoding", "reliability", "max_frames"):
        assert f"  {name} (default " in out.stdout, name
    assert "rendering" not in out.stdout + out.stderr, "it must not start the camera"
