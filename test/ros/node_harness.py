"""The node test harness shared by the ROS tests: a node in its own process, a client, a camera.

Plain helpers (not fixtures) live here; the fixtures built from them are in ``conftest.py``.
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
from collections.abc import Callable
from typing import Any

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = REPO / "test" / "fixtures" / "esnet_reference_c19_seed1.pt"
NET_W, NET_H = 128, 64
BASE_PARAMS = {"weights": str(REFERENCE), "input_width": NET_W, "input_height": NET_H, "device": "cpu"}
_stamps = itertools.count(1000)


class NodeProcess:
    """``python -m esnet_ros.ros`` as its own process, its log collected line by line."""

    def __init__(self, params: dict[str, Any], ros_args: tuple[str, ...] = ()) -> None:
        cmd = [sys.executable, "-m", "esnet_ros.ros", "--ros-args"]
        for key, value in params.items():
            cmd += ["-p", f"{key}:={value}"]
        cmd += list(ros_args)
        env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO
        )
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
                    raise AssertionError(
                        f"no log line matching {pattern!r} within {timeout} s; log:\n{self.log[-4000:]}"
                    )
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
        from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.diagnostics: collections.deque = collections.deque(maxlen=50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self._set = self.node.create_client(SetParameters, "/esnet_segmentation/set_parameters")
        self._get = self.node.create_client(GetParameters, "/esnet_segmentation/get_parameters")
        self._set_atomic = self.node.create_client(
            SetParametersAtomically, "/esnet_segmentation/set_parameters_atomically"
        )

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
        found = self.spin_until(
            lambda: next((v for t, v in self.diagnostics if t > after), None),
            timeout,
            "a /diagnostics status from esnet_segmentation",
        )
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
    msg = Image(
        height=h, width=w, encoding=encoding, step=pixels.reshape(h, -1).shape[1] if w else 0, data=pixels.tobytes()
    )
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
    img = np.stack(
        [
            127 + 120 * np.sin(x / max(w, 1) * 6.0 + seed),
            127 + 120 * np.cos(y / max(h, 1) * 5.0),
            127 + 120 * np.sin((x + y) / max(h + w, 1) * 9.0),
        ],
        -1,
    )
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

    def __init__(
        self, client: Client, topic: str = "/camera/image_raw", reliable: bool = True, msg_type: Any = None
    ) -> None:
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

    def roundtrip(
        self, msg: Any, collectors: dict[str, Collector], timeout: float = 30.0, resend_every: float = 1.0
    ) -> dict[str, Any]:
        """Publish ``msg`` (re-stamped on each resend) until every collector has a message with its stamp."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stamp = set_stamp(msg, next(_stamps))
            self.pub.publish(msg)
            try:
                return self.client.spin_until(
                    lambda stamp=stamp: (
                        all(stamp in c.by_stamp for c in collectors.values())
                        and {k: c.by_stamp[stamp] for k, c in collectors.items()}
                    ),
                    min(resend_every, max(deadline - time.monotonic(), 0.05)),
                    "outputs",
                )
            except AssertionError:
                continue
        raise AssertionError(f"no answer on {sorted(collectors)} within {timeout} s")


def next_stamp() -> int:
    """A fresh, increasing stamp index for :func:`set_stamp` (unique across the session)."""
    return next(_stamps)


def auto_engine() -> tuple[str, str]:
    """``(backend, precision)`` that backend:=auto precision:=auto picks on this machine's CPU (the node's rule)."""
    import torch

    from esnet_ros.inference.devices import resolve_choice

    return resolve_choice("auto", "auto", torch.device("cpu"))
