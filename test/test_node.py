"""The segmentation node over real DDS: one node process for the module, real published images.

Each test asserts content: sizes, encodings, stamps, frame_ids, label values against the
Segmenter run in this process with the same weights and network size, stats and diagnostics.
The harness (NodeProcess, Client) is reused by test_node_faults.py.
"""

from __future__ import annotations

import collections
import itertools
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np
import pytest

pytestmark = pytest.mark.ros

REPO = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = REPO / "test" / "fixtures" / "esnet_reference_c19_seed1.pt"
NET_W, NET_H = 128, 64
BASE_PARAMS = {"weights": str(REFERENCE), "input_width": NET_W, "input_height": NET_H, "device": "cpu"}
_stamps = itertools.count(1000)


# -- harness -----------------------------------------------------------------------------------------


class NodeProcess:
    """``python -m esnet_ros.ros.node`` as its own process, its log collected line by line."""

    def __init__(self, params: dict[str, Any], ros_args: tuple[str, ...] = ()) -> None:
        cmd = [sys.executable, "-m", "esnet_ros.ros.node", "--ros-args"]
        for key, value in params.items():
            cmd += ["-p", f"{key}:={value}"]
        cmd += list(ros_args)
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def count(self, pattern: str, start: int = 0) -> int:
        with self._cond:
            return sum(1 for line in self.lines[start:] if re.search(pattern, line))

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60.0, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._cond.wait(0.2)):
                    raise AssertionError(f"no log line matching {pattern!r} within {timeout} s; log:\n{self.log[-4000:]}")
                self._cond.wait(min(left, 0.5))

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``sig``; return (exit code, seconds until the process ended)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, time.monotonic() - t0


class Collector:
    """Messages of one topic, indexed by header stamp (ns) where they have a header."""

    def __init__(self) -> None:
        self.messages: collections.deque = collections.deque(maxlen=200)
        self.by_stamp: dict[int, Any] = {}

    def __call__(self, msg: Any) -> None:
        self.messages.append(msg)
        header = getattr(msg, "header", None)
        if header is not None:
            self.by_stamp[header.stamp.sec * 1_000_000_000 + header.stamp.nanosec] = msg


class Client:
    """A test-side rclpy node: publishers, collecting subscriptions, parameter calls, diagnostics."""

    def __init__(self, context: Any, name: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically

        self.node = rclpy.create_node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.diagnostics: collections.deque = collections.deque(maxlen=50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._set = self.node.create_client(SetParameters, "/esnet_segmentation/set_parameters")
        self._get = self.node.create_client(GetParameters, "/esnet_segmentation/get_parameters")
        self._set_atomic = self.node.create_client(SetParametersAtomically,
                                                   "/esnet_segmentation/set_parameters_atomically")

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith("esnet_segmentation"):
                self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    def spin_until(self, predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            self.executor.spin_once(timeout_sec=0.05)
        value = predicate()
        if not value:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        return value

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def qos(self, reliable: bool = True, depth: int = 5, latched: bool = False):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        return QoSProfile(
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )

    def collect(self, msg_type: Any, topic: str, **qos: Any) -> tuple[Collector, Any]:
        collector = Collector()
        sub = self.node.create_subscription(msg_type, topic, collector, self.qos(**qos))
        return collector, sub

    def fresh_diagnostics(self, timeout: float = 5.0, after: float | None = None) -> dict[str, str]:
        """The first diagnostics status published after ``after`` (default: now)."""
        after = time.monotonic() if after is None else after
        found = self.spin_until(lambda: next((v for t, v in self.diagnostics if t > after), None), timeout,
                                "a /diagnostics status from esnet_segmentation")
        return found

    def wait_counter(self, key: str, minimum: int, timeout: float = 10.0) -> dict[str, str]:
        def check():
            return next((v for _, v in reversed(self.diagnostics) if int(v.get(key, -1)) >= minimum), None)
        return self.spin_until(check, timeout, f"diagnostics {key} >= {minimum}")

    def set_parameters(self, _atomic: bool = False, **values: Any) -> list[Any]:
        """rcl_interfaces SetParameters (one result per parameter) or SetParametersAtomically (one result)."""
        from rcl_interfaces.srv import SetParameters, SetParametersAtomically
        from rclpy.parameter import Parameter

        client, srv = (self._set_atomic, SetParametersAtomically) if _atomic else (self._set, SetParameters)
        assert client.wait_for_service(timeout_sec=10.0), f"{client.srv_name} not available"
        request = srv.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        future = client.call_async(request)
        self.spin_until(future.done, 15.0, "the set_parameters response")
        result = future.result()
        return [result.result] if _atomic else result.results

    def get_parameters(self, *names: str) -> list[Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        assert self._get.wait_for_service(timeout_sec=10.0)
        future = self._get.call_async(GetParameters.Request(names=list(names)))
        self.spin_until(future.done, 15.0, "the get_parameters response")
        return [parameter_value_to_python(v) for v in future.result().values]


def make_image(pixels: np.ndarray, encoding: str, frame_id: str = "camera_optical", stamp: int | None = None):
    from sensor_msgs.msg import Image

    h, w = pixels.shape[:2]
    msg = Image(height=h, width=w, encoding=encoding, step=pixels.reshape(h, -1).shape[1] if w else 0,
                data=pixels.tobytes())
    msg.header.frame_id = frame_id
    set_stamp(msg, next(_stamps) if stamp is None else stamp)
    return msg


def set_stamp(msg: Any, index: int) -> int:
    """A distinct stamp per test frame: ``index`` seconds plus a fixed 123 ns; returns the ns value."""
    msg.header.stamp.sec = int(index)
    msg.header.stamp.nanosec = 123
    return int(index) * 1_000_000_000 + 123


def stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colorful test picture (RGB) with some texture; deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        127 + 120 * np.sin(x / max(w, 1) * 6.0 + seed),
        127 + 120 * np.cos(y / max(h, 1) * 5.0),
        127 + 120 * np.sin((x + y) / max(h + w, 1) * 9.0),
    ], -1)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def as_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return np.ascontiguousarray(rgb[:, :, ::-1])
    if encoding == "rgba8":
        return np.dstack([rgb, np.full(rgb.shape[:2], 77, np.uint8)])
    if encoding == "bgra8":
        return np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 77, np.uint8)])
    if encoding == "mono8":
        return np.ascontiguousarray(rgb[:, :, 1])
    raise ValueError(encoding)


def image_array(msg: Any) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3, "bgr8": 3}[msg.encoding]
    a = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width * channels]
    return a.reshape(msg.height, msg.width, channels) if channels > 1 else a


class Camera:
    """Publishes frames until the node answers on every wanted output (for that frame's stamp)."""

    def __init__(self, client: Client, topic: str = "/camera/image_raw", reliable: bool = True,
                 msg_type: Any = None) -> None:
        from sensor_msgs.msg import Image

        self.client = client
        self.pub = client.node.create_publisher(msg_type or Image, topic, client.qos(reliable=reliable, depth=1))

    def destroy(self) -> None:
        self.client.node.destroy_publisher(self.pub)

    def send(self, msg: Any) -> None:
        self.pub.publish(msg)

    def wait_for_subscriber(self, timeout: float = 20.0) -> None:
        """Block until the node's subscription has matched this publisher (discovery is not instant)."""
        self.client.spin_until(lambda: self.pub.get_subscription_count() > 0, timeout, "a matched subscriber")

    def roundtrip(self, msg: Any, collectors: dict[str, Collector], timeout: float = 30.0,
                  resend_every: float = 1.0) -> dict[str, Any]:
        """Publish ``msg`` (re-stamped on each resend) until every collector has a message with its stamp."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stamp = set_stamp(msg, next(_stamps))
            self.pub.publish(msg)
            try:
                return self.client.spin_until(
                    lambda: all(stamp in c.by_stamp for c in collectors.values())
                    and {k: c.by_stamp[stamp] for k, c in collectors.items()},
                    min(resend_every, max(deadline - time.monotonic(), 0.05)), "outputs")
            except AssertionError:
                continue
        raise AssertionError(f"no answer on {sorted(collectors)} within {timeout} s")


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_process():
    proc = NodeProcess(BASE_PARAMS)
    try:
        proc.wait_for(r"subscribed to /camera/image_raw", timeout=90)
        yield proc
    finally:
        rc, _ = proc.stop()
        assert "Traceback" not in proc.log, proc.log[-4000:]


@pytest.fixture(scope="module")
def client(rclpy_context, node_process):
    c = Client(rclpy_context, "esnet_test_node_client")
    yield c
    c.close()


@pytest.fixture(scope="module")
def camera(client):
    cam = Camera(client)
    cam.wait_for_subscriber()
    yield cam
    cam.destroy()


@pytest.fixture(scope="module")
def outputs(client):
    """Subscriptions to every output for the module (tests that need none destroy their own)."""
    from sensor_msgs.msg import Image

    from esnet_ros.msg import SegmentationStats

    subs = {}
    cols = {}
    for name in ("labels", "color", "overlay", "confidence"):
        cols[name], subs[name] = client.collect(Image, f"/esnet/{name}")
    cols["stats"], subs["stats"] = client.collect(SegmentationStats, "/esnet/stats")
    yield cols
    for sub in subs.values():
        client.node.destroy_subscription(sub)


@pytest.fixture(scope="module")
def reference_segmenter():
    from esnet_ros.inference.segmenter import Segmenter

    return Segmenter(str(REFERENCE), device="cpu", input_size=(NET_W, NET_H))


# -- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_every_encoding_and_size_lines_up(client, camera, outputs, encoding):
    overlay_encoding = {"rgb8": "rgb8", "bgr8": "bgr8", "rgba8": "rgb8", "bgra8": "bgr8", "mono8": "rgb8"}
    for h, w in ((48, 64), (31, 97), (1, 1)):
        msg = make_image(as_encoding(scene(h, w), encoding), encoding, frame_id=f"cam_{encoding}_{w}x{h}")
        got = camera.roundtrip(msg, outputs)
        for name, expected_encoding in (("labels", "mono8"), ("color", "rgb8"), ("confidence", "mono8"),
                                        ("overlay", overlay_encoding[encoding])):
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
    assert (stats.device, stats.backend, stats.precision) == ("cpu", "onnxruntime", "fp32")  # backend auto on CPU
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
            stats = client.spin_until(lambda: outputs["stats"].by_stamp.get(stamp), 2.0, "stats")
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
    """Latest frame only: a burst faster than inference is mostly dropped, and the last frame is answered."""
    before = client.fresh_diagnostics()
    msg = make_image(scene(240, 320), "rgb8")
    stamps = []
    for _ in range(40):  # ~250 Hz: several frames arrive during each inference
        stamps.append(set_stamp(msg, next(_stamps)))
        camera.send(msg)
        time.sleep(0.004)
    client.spin_until(lambda: stamps[-1] in outputs["labels"].by_stamp, 15.0, "the last frame of the burst")
    client.spin_for(0.5)
    after = client.fresh_diagnostics()
    delta = {k: int(after[k]) - int(before[k]) for k in ("received", "processed", "dropped", "rejected")}
    assert delta["received"] == delta["processed"] + delta["dropped"] + delta["rejected"]
    assert delta["dropped"] > 0, f"frames arriving during inference must supersede each other: {delta}"


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
            set_stamp(msg, next(_stamps))
            camera.send(msg)
            client.spin_for(0.1)
        idle = client.wait_counter("dropped.no_subscriber", int(idle_before["dropped.no_subscriber"]) + 5)
        assert int(idle["received"]) >= int(idle_before["received"]) + 5
        assert idle["processed"] == idle_before["processed"]
        assert idle["computed.labels"] == idle_before["computed.labels"]
    finally:
        for name, msg_type in (("labels", Image), ("color", Image), ("overlay", Image), ("confidence", Image)):
            if not any(s.topic_name == f"/esnet/{name}" and s.callback is outputs[name] for s in client.node.subscriptions):
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
    # refused: not divisible by 8, with the reason and the nearest valid sizes
    result = client.set_parameters(input_width=1020)[0]
    assert not result.successful
    assert "divisible by 8" in result.reason and "1016 or 1024" in result.reason
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
            set_stamp(msg, next(_stamps))
            camera.send(msg)
            client.spin_for(0.05)
        client.spin_for(0.7)
        after = client.fresh_diagnostics()
        processed = int(after["processed"]) - int(before["processed"])
        assert 2 <= processed <= 6, f"{processed} frames processed in ~2.7 s at max_rate_hz=2"
    finally:
        assert all(r.successful for r in client.set_parameters(
            _atomic=True, input_width=NET_W, input_height=NET_H, overlay_alpha=0.5, max_rate_hz=0.0))
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
