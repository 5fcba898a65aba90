"""The segmentation node end to end, for ``esnet bench``: camera frame published -> labels received.

:func:`time_node` starts the node as its own process, publishes 1280x720 bgr8 frames to it over real
DDS (reliable QoS, one at a time) and times publish -> ``esnet/labels`` received.  The model for the
ratio is timed *paired*: one model-only call right before each node frame, in the bench process while
the node idles, so that both medians see the same machine state (on a shared 2-core machine,
back-to-back runs of one model differ by 20% or more).  The node's own stage timings (from
``esnet/stats``) come with it as ``node_stages_ms``.  :func:`bench_node` picks the fastest model entry
the node can run at a size, times the node with it and adds the ratios.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from esnet_ros.core.summary import summarize
from esnet_ros.inference.backends import create_backend
from esnet_ros.inference.benchmark import Entry, bench_input, network_call, sync
from esnet_ros.ros.dds import use_large_message_profile
from esnet_ros.tooling.monitor import NODE_STAGES

__all__ = ["NODE_IMAGE_SIZE", "node_command", "time_node", "bench_node"]

NODE_IMAGE_SIZE = (1280, 720)
DEPTH_TOPIC = "camera/depth/image_raw"


def _bench_image(width: int, height: int) -> np.ndarray:
    """A deterministic street-like bgr8 frame (sky, buildings, road bands plus noise)."""
    rng = np.random.default_rng(0)
    img = np.empty((height, width, 3), np.uint8)
    img[: height // 3] = (200, 160, 120)
    img[height // 3 : 2 * height // 3] = (90, 90, 100)
    img[2 * height // 3 :] = (80, 70, 70)
    noise = rng.integers(0, 40, img.shape, dtype=np.uint8)
    return np.ascontiguousarray(img + noise)


def node_command(
    weights: str, backend: str, device: str, precision: str, size: tuple[int, int], ns: str, depth: bool = False
) -> list[str]:
    """The node's command line for one bench entry (reliable input QoS: no frame is dropped; ``depth``: the
    node also fuses a depth image into esnet/points)."""
    w, h = size
    return [
        *_node_command(weights, backend, device, precision, w, h, ns),
        *(["-p", f"depth_topic:={DEPTH_TOPIC}"] if depth else []),
    ]


def _node_command(weights: str, backend: str, device: str, precision: str, w: int, h: int, ns: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "esnet_ros.ros",
        "--ros-args",
        "-r",
        f"__ns:={ns}",
        "-p",
        f"weights:={weights}",
        "-p",
        f"backend:={backend}",
        "-p",
        f"device:={device}",
        "-p",
        f"precision:={precision}",
        "-p",
        f"input_width:={w}",
        "-p",
        f"input_height:={h}",
        "-p",
        "input_qos.reliability:=reliable",
        "--log-level",
        "warn",
    ]


class _NodeProbe:
    """The node as a child process plus our publisher/subscribers on a private rclpy context."""

    def __init__(self, cmd: list[str], ns: str, image_size: tuple[int, int], depth: bool = False) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from esnet_ros.msg import SegmentationStats

        use_large_message_profile()  # before our participant and the node's: inherited by the node
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log_lines: list[str] = []
        threading.Thread(target=lambda: self.log_lines.extend(iter(self.proc.stdout.readline, "")), daemon=True).start()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("esnet_bench", namespace=ns, context=self.context)
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, "camera/image_raw", qos)
        self.received: dict[tuple[int, int], float] = {}
        self.shapes: list[tuple[int, int, str]] = []
        self.stages: dict[tuple[int, int], dict[str, float]] = {}
        self.got = threading.Event()
        self.node.create_subscription(Image, "esnet/labels", self._on_labels, qos)
        self.depth = self._depth_messages(image_size, qos) if depth else None
        self.node.create_subscription(SegmentationStats, "esnet/stats", self._on_stats, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()
        img = _bench_image(*image_size)
        self.msg = Image()
        self.msg.height, self.msg.width = img.shape[:2]
        self.msg.encoding, self.msg.is_bigendian, self.msg.step = "bgr8", 0, img.shape[1] * 3
        self.msg.data = img.tobytes()
        self.msg.header.frame_id = "bench_camera"

    def _depth_messages(self, image_size: tuple[int, int], qos: Any) -> tuple[Any, ...]:
        """Publishers and messages of a registered depth camera: a plane at 2 m (16UC1) and its camera_info."""
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        w, h = image_size
        depth = Image(height=h, width=w, encoding="16UC1", is_bigendian=0, step=2 * w)
        depth.data = np.full((h, w), 2000, np.uint16).tobytes()
        info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
        info.k = [0.7 * w, 0.0, w / 2, 0.0, 0.7 * w, h / 2, 0.0, 0.0, 1.0]
        info.p = [0.7 * w, 0.0, w / 2, 0.0, 0.0, 0.7 * w, h / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
        for m in (depth, info):
            m.header.frame_id = "bench_camera"
        self.points: dict[tuple[int, int], float] = {}
        self.node.create_subscription(PointCloud2, "esnet/points", self._on_points, qos)
        return (
            self.node.create_publisher(Image, DEPTH_TOPIC, qos),
            depth,
            self.node.create_publisher(CameraInfo, "camera/camera_info", qos),
            info,
        )

    def _on_points(self, msg: Any) -> None:
        self.points[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()
        self.got.set()

    def _on_labels(self, msg: Any) -> None:
        self.received[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()
        self.shapes.append((msg.height, msg.width, msg.encoding))
        self.got.set()

    def _on_stats(self, msg: Any) -> None:
        self.stages[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = {f: getattr(msg, f) for f in NODE_STAGES}

    def fail(self, what: str) -> RuntimeError:
        return RuntimeError(f"{what}:\n" + "".join(self.log_lines[-30:]))

    def wait_ready(self, deadline: float) -> None:
        """Until the node subscribes and publishes, then until it answers (its lazy start-up included)."""
        while self.pub.get_subscription_count() == 0 or self.node.count_publishers("esnet/labels") == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise self.fail("the node did not come up")
            time.sleep(0.05)
        while self.send(2.0)[0] is None:
            if time.monotonic() > deadline:
                raise self.fail("the node never answered")

    def cpu_s(self) -> float:
        try:
            return _process_cpu(self.proc.pid)
        except (OSError, ValueError, IndexError):  # not Linux, or the process is gone
            return float("nan")

    def send(self, timeout: float) -> tuple[float | None, tuple[int, int]]:
        """Publish one frame; ms until its labels came back (``None`` on timeout), and its stamp."""
        now = time.time_ns()
        self.msg.header.stamp.sec, self.msg.header.stamp.nanosec = now // 1_000_000_000, now % 1_000_000_000
        key = (self.msg.header.stamp.sec, self.msg.header.stamp.nanosec)
        self.got.clear()
        answers = self.received
        if self.depth is not None:  # depth and camera_info first, stamped like the image; the cloud comes last
            depth_pub, depth, info_pub, info = self.depth
            depth.header.stamp = info.header.stamp = self.msg.header.stamp
            depth_pub.publish(depth)
            info_pub.publish(info)
            answers = self.points
        t0 = time.perf_counter()
        self.pub.publish(self.msg)
        end = time.monotonic() + timeout
        while key not in answers:
            if self.proc.poll() is not None:
                raise self.fail("the node exited")
            if not self.got.wait(max(0.0, end - time.monotonic())) and time.monotonic() >= end:
                return None, key
            self.got.clear()
        return (answers[key] - t0) * 1e3, key

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def time_node(
    weights: str,
    backend: str,
    device: str,
    precision: str,
    size: tuple[int, int],
    *,
    frames: int,
    warmup: int,
    timeout_s: float = 180.0,
    image_size: tuple[int, int] = NODE_IMAGE_SIZE,
    paired_model: Callable[[], Any] | None = None,
    depth: bool = False,
) -> dict[str, Any]:
    """Start the node as a process; publish ``frames`` bgr8 images one at a time; time publish -> labels
    (``depth``: with a registered depth image and camera_info, publish -> esnet/points, the last output).

    ``paired_model``, when given, is the same model-only call, timed right before each frame
    (the node idle), so that the node and the model are measured under the same machine state;
    the entry then holds its median as ``model_median_ms``.
    """
    ns = f"/esnet_bench_{os.getpid()}"
    probe = _NodeProbe(node_command(weights, backend, device, precision, size, ns, depth), ns, image_size, depth)
    try:
        probe.wait_ready(time.monotonic() + timeout_s)
        for _ in range(warmup):
            probe.send(30.0)
        times, keys, node_cpu, paired, lost = [], [], [], [], 0
        for _ in range(frames):
            if paired_model is not None:
                t0 = time.perf_counter()
                paired_model()
                paired.append((time.perf_counter() - t0) * 1e3)
            c0 = probe.cpu_s()
            t, key = probe.send(30.0)
            if t is None:
                lost += 1
                continue
            node_cpu.append((probe.cpu_s() - c0) * 1e3)
            times.append(t)
            keys.append(key)
        if not times:
            raise RuntimeError("no labels came back from the node")
        stats_deadline = time.monotonic() + 2.0  # the stats message follows the labels
        while keys[-1] not in probe.stages and time.monotonic() < stats_deadline:
            time.sleep(0.01)
        return _node_entry(probe, backend, device, precision, size, image_size, times, keys, node_cpu, paired, lost)
    finally:
        probe.close()


def _node_entry(
    probe: _NodeProbe,
    backend: str,
    device: str,
    precision: str,
    size: tuple[int, int],
    image_size: tuple[int, int],
    times: list[float],
    keys: list[tuple[int, int]],
    node_cpu: list[float],
    paired: list[float],
    lost: int,
) -> dict[str, Any]:
    height, width, encoding = probe.shapes[-1]
    per_frame = [probe.stages[k] for k in keys if k in probe.stages]
    return {
        "kind": "node",
        "backend": backend,
        "precision": precision,
        "device": device,
        "size": f"{size[0]}x{size[1]}",
        "image": f"{image_size[0]}x{image_size[1]} bgr8",
        "timed_until": "points" if probe.depth is not None else "labels",
        **summarize(times),
        "cpu_median_ms": round(float(np.nanmedian(node_cpu)), 3) if node_cpu else None,
        "frames": len(times),
        "lost": lost,
        "labels_shape": [height, width],
        "labels_encoding": encoding,
        # the node's own per-frame timings (SegmentationStats), medians over the timed frames
        "node_stages_ms": {f: round(float(np.median([st[f] for st in per_frame])), 3) for f in NODE_STAGES}
        if per_frame
        else None,
        **({"model_median_ms": round(float(np.median(paired)), 3), "model_timing": "paired"} if paired else {}),
    }


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def bench_node(
    results: list[dict[str, Any]],
    entries: list[Entry],
    model: torch.nn.Module,
    meta: dict[str, Any],
    weights: str,
    device: torch.device,
    size: tuple[int, int],
    *,
    node_backend: str | None,
    frames: int,
    warmup: int,
    depth: bool = False,
) -> dict[str, Any]:
    """The node with the fastest model entry it can run at ``size`` (or ``node_backend``'s), paired timing."""
    size_key = f"{size[0]}x{size[1]}"
    candidates = [r for r in results if r["kind"] == "model" and r["node_backend"] and r["size"] == size_key]
    if node_backend:
        candidates = [r for r in candidates if r["node_backend"] == node_backend]
        if not candidates:
            raise ValueError(
                f"--node-backend {node_backend} has no model entry at {size_key}; include it in --backends and --sizes"
            )
    if not candidates:
        raise ValueError(f"no model entry the node can run at {size_key}; add one to --backends or use --no-node")
    best = min(candidates, key=lambda r: r["median_ms"])
    entry = next(
        e
        for e in entries
        if (e.backend, e.variant, e.precision) == (best["backend"], best["variant"], best["precision"])
    )
    backend = create_backend(entry.backend, model, meta, device, entry.precision, size, options=entry.options)
    network = network_call(backend, bench_input(backend, size, device))
    try:
        with torch.inference_mode():
            r = time_node(
                weights,
                best["node_backend"],
                str(device),
                best["precision"],
                size,
                frames=frames,
                warmup=warmup,
                paired_model=lambda: (network(), sync(device)),
                depth=depth,
            )
    finally:
        backend.release()
    r["model_entry_median_ms"] = best["median_ms"]  # the model-only entry, timed before the node
    r["ratio"] = round(r["median_ms"] / r["model_median_ms"], 3)
    if r.get("cpu_median_ms") and best.get("cpu_median_ms"):
        # CPU time of the node process per frame vs the backend call's: robust to contention
        r["model_cpu_median_ms"] = best["cpu_median_ms"]
        r["cpu_ratio"] = round(r["cpu_median_ms"] / best["cpu_median_ms"], 3)
    return r
