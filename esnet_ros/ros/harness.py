"""``esnet demo``: the synthetic camera and the segmentation node over real DDS, scored live.

``esnet demo [--seconds N] [--camera TOPIC] [--output demo_output] [--weights W] [--width --height]``

1. starts the synthetic camera (:mod:`esnet_ros.ros.synthetic_camera`, 1280x720 bgr8 at ``--rate-hz``) unless
   ``--camera`` names a real camera topic, and the segmentation node (:mod:`esnet_ros.ros.node`) with
   the bundled demo model, each as a child process whose log goes to ``OUTPUT/logs/``;
2. waits (bounded) for the first labels, then measures for ``--seconds`` with a live progress bar:
   frames, FPS, latency (camera stamp -> labels received here) and mIoU so far;
3. stops the camera, lets the node finish its last frame, reads the node's counters from
   ``/diagnostics`` and stops the node (SIGINT, then a bounded wait);
4. prints FPS, latency (median, p90) and mIoU against the camera's ground truth (predictions are
   matched to ground truth by header stamp), and writes overlay PNGs, a side-by-side image
   (input | classes | overlay) and ``summary.json`` to ``OUTPUT/``.

With ``--camera /my/topic`` only the node is started, on that topic; there is no ground truth,
so no mIoU.  :class:`Child` and :class:`Monitor` are shared with :mod:`esnet_ros.ros.soak`.
rclpy is imported only when a demo runs, so ``esnet demo --help`` works without ROS.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import logging
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Iterable

import numpy as np

__all__ = [
    "Child",
    "interruptible",
    "Monitor",
    "DemoError",
    "percentiles",
    "camera_argv",
    "camera_published",
    "node_argv",
    "network_input_size",
    "add_arguments",
    "run",
    "NODE_NAME",
    "CAMERA_TOPIC",
    "GT_TOPIC",
]

log = logging.getLogger(__name__)

NODE_NAME = "esnet_segmentation"
CAMERA_TOPIC = "/camera/image_raw"
GT_TOPIC = "/camera/labels_gt"
OUTPUT_TOPICS = {"labels": "/esnet/labels", "color": "/esnet/color", "overlay": "/esnet/overlay", "stats": "/esnet/stats"}
COUNTERS = ("received", "processed", "dropped", "rejected")
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception): ", re.MULTILINE)


class DemoError(RuntimeError):
    """Something the demo cannot recover from; the message says what and where to look."""


# ----------------------------------------------------------------------------------------------
# Child processes
# ----------------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the demo dies, so no camera or node outlives it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


def camera_published(camera: "Child", status: dict[str, str] | None) -> int | None:
    """A stopped synthetic camera's exact published count (it prints it on exit), else the count in
    its last diagnostics ``status`` (up to a second of frames behind)."""
    from esnet_ros.ros.synthetic_camera import published_in_log

    published = published_in_log(camera.log_text())
    if published is None and status and "frames_published" in status:
        published = int(status["frames_published"])
    return published


class Child:
    """A child process (never through a shell) whose stdout and stderr go to ``log_path``."""

    def __init__(self, name: str, argv: list[str], log_path: pathlib.Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = pathlib.Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
        self._log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise :class:`DemoError` with the last log lines if the process has exited."""
        if not self.alive():
            raise DemoError(
                f"the {self.name} exited with code {self.returncode}; last lines of {self.log_path}:\n"
                + _indent(self.tail(25)))

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGINT, a bounded wait, then SIGTERM and SIGKILL if needed; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not exit %.0f s after SIGINT; sending SIGTERM", self.name, self.pid, timeout_s)
                self.proc.terminate()
                try:
                    self.proc.wait(3.0)
                except subprocess.TimeoutExpired:
                    log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, self.pid)
                    self.proc.kill()
                    self.proc.wait(3.0)
        self._log.close()
        return int(self.proc.returncode)

    def problems(self) -> list[str]:
        """Log lines that show a traceback or an uncaught exception."""
        text = self.log_text()
        return [m.group(0) if m.group(0).startswith("Traceback") else text[m.start():text.find("\n", m.start())]
                for m in TRACEBACK_RE.finditer(text)]


class interruptible:
    """Within: SIGINT and SIGTERM raise ``KeyboardInterrupt``, so the children are stopped in order.

    (A process started in the background by a non-interactive shell inherits SIGINT ignored.)
    """

    def __enter__(self) -> "interruptible":
        self._saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in (text.splitlines() or ["(empty log)"]))


def _python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def camera_argv(*, width: int = 1280, height: int = 720, rate_hz: float = 15.0, pool_size: int = 10,
                seed: int = 0, reliability: str = "reliable") -> list[str]:
    """The synthetic camera's command line (publishes ``/camera/image_raw`` and ``/camera/labels_gt``)."""
    return _python_module("esnet_ros.ros.synthetic_camera") + [
        "--ros-args",
        "-p", f"width:={int(width)}", "-p", f"height:={int(height)}", "-p", f"rate_hz:={float(rate_hz)!r}",
        "-p", f"pool_size:={int(pool_size)}", "-p", f"seed:={int(seed)}", "-p", f"reliability:={reliability}",
    ]


def node_argv(*, weights: str | os.PathLike, input_size: tuple[int, int], camera_topic: str = CAMERA_TOPIC,
              transport: str = "raw", extra_params: Iterable[str] = ()) -> list[str]:
    """The segmentation node's command line (``extra_params``: more ``name:=value`` pairs)."""
    argv = _python_module("esnet_ros.ros.node") + [
        "--ros-args",
        "-p", f"weights:={os.fspath(weights)}",
        "-p", f"input_width:={int(input_size[0])}", "-p", f"input_height:={int(input_size[1])}",
    ]
    if camera_topic != CAMERA_TOPIC:
        argv += ["-p", f"image_topic:={camera_topic}"]
    if transport != "raw":
        argv += ["-p", f"input_transport:={transport}"]
    for param in extra_params:
        argv += ["-p", param]
    return argv


def network_input_size(weights: str | os.PathLike, width: int | None = None, height: int | None = None):
    """``((W, H), meta, labels)``: the network input recorded in the checkpoint unless overridden."""
    from esnet_ros.core.checkpoint import labels_from_meta, load_checkpoint

    path = pathlib.Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} not found; pass --weights PATH to a checkpoint (.safetensors or .pt)")
    _, meta = load_checkpoint(path, "cpu")
    size = tuple(int(v) for v in meta.get("input_size", (1024, 512)))
    w = int(width) if width else size[0]
    h = int(height) if height else size[1]
    for name, v in (("--width", w), ("--height", h)):
        if v <= 0 or v % 8:
            lo, hi = max(8, v - v % 8), v - v % 8 + 8
            raise ValueError(f"{name} {v} must be a positive multiple of 8 (ESNet downsamples 3 times); try {lo} or {hi}")
    return (w, h), meta, labels_from_meta(meta)


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------


def percentiles(values: Iterable[float], qs: Iterable[int] = (50, 90, 99)) -> dict[str, float | None]:
    """``{"median", "p90", "p99", "mean", "min", "max", "count"}`` (``None`` where there are no values)."""
    v = np.asarray(list(values), np.float64)
    keys = {q: ("median" if q == 50 else f"p{q}") for q in qs}
    if v.size == 0:
        return {**{k: None for k in keys.values()}, "mean": None, "min": None, "max": None, "count": 0}
    out: dict[str, Any] = {keys[q]: round(float(np.percentile(v, q)), 3) for q in qs}
    out.update(mean=round(float(v.mean()), 3), min=round(float(v.min()), 3), max=round(float(v.max()), 3), count=int(v.size))
    return out


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_to_numpy(msg) -> np.ndarray | None:
    """A sensor_msgs/Image as ``(H,W,3)`` BGR (color) or ``(H,W)`` (mono8); ``None`` for other encodings."""
    channels = {"bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4, "mono8": 1}.get(msg.encoding)
    if channels is None or msg.height == 0 or msg.width == 0 or msg.step < msg.width * channels:
        return None
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size < msg.step * msg.height:
        return None
    rows = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * channels]
    if channels == 1:
        return rows.reshape(msg.height, msg.width)
    img = rows.reshape(msg.height, msg.width, channels)[..., :3]
    return img[..., ::-1] if msg.encoding.startswith("rgb") else img


class _Scores:
    """Pixel confusion counts against ground truth, and mIoU by the Cityscapes rule.

    Counting is a NumPy bincount (~7 ms for 1280x720; the monitor must keep up with the camera);
    :class:`esnet_ros.training.metrics.ConfusionMatrix` computes the figures where it exists.
    """

    def __init__(self, labels) -> None:
        self.labels = labels
        self.frames = 0
        n = labels.num_classes
        self._gt_lut = np.full(256, n, np.int32)  # ignore_index and unknown ids -> row n (dropped)
        self._gt_lut[:n] = np.arange(n)
        self._pred_lut = np.full(256, n, np.int32)  # out-of-range predictions -> column n (a miss)
        self._pred_lut[:n] = np.arange(n)
        self._mat = np.zeros((n + 1, n + 1), np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Add one frame: ``gt`` and ``pred`` are ``(H,W) uint8`` train ids of the same shape."""
        n1 = self.labels.num_classes + 1
        idx = self._gt_lut[gt] * n1 + self._pred_lut[pred]
        self._mat += np.bincount(idx.ravel(), minlength=n1 * n1).reshape(n1, n1)
        self.frames += 1

    def compute(self) -> dict[str, Any]:
        n = self.labels.num_classes
        try:
            import torch

            from esnet_ros.training.metrics import ConfusionMatrix
        except ImportError:  # the shared metrics module is optional for the demo
            ConfusionMatrix = None
        if ConfusionMatrix is not None:
            cm = ConfusionMatrix.for_labels(self.labels)
            cm.mat = torch.from_numpy(self._mat[:n, :n].copy())
            res = cm.compute()
            return {"miou": res["miou"], "category_miou": res.get("category_miou"),
                    "per_class_iou": res["per_class_iou"], "pixel_accuracy": res.get("pixel_accuracy")}
        m = self._mat[:n, :n].astype(np.float64)
        tp = np.diag(m)
        denom = m.sum(0) + m.sum(1) - tp
        iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
        valid = iou[~np.isnan(iou)]
        return {"miou": float(valid.mean()) if valid.size else float("nan"),
                "per_class_iou": {name: float(v) for name, v in zip(self.labels.names, iou)},
                "pixel_accuracy": float(tp.sum() / m.sum()) if m.sum() else float("nan")}

    def miou(self) -> float:
        return self.compute()["miou"] if self.frames else float("nan")


def _counter(values: dict[str, str], name: str) -> int | None:
    """A counter from a diagnostics status (``received``, ``received_total``, ``frames_received``, ...)."""
    for key in (name, f"{name}_total", f"frames_{name}", f"{name}_frames", f"{name} frames", f"total_{name}"):
        if key in values:
            try:
                return int(float(values[key]))
            except ValueError:
                return None
    return None


class Monitor:
    """One rclpy node in this process that listens to the segmentation node (and the camera).

    Records labels (latency: camera stamp -> received here, from DDS's reception timestamp) and
    the node's per-frame stats, scores labels against ground truth matched by stamp, and keeps the
    latest ``/diagnostics`` status of every node.  :meth:`subscribe_pictures` adds the color,
    overlay and camera topics (the node computes color and overlay only while someone listens).
    """

    def __init__(self, context, *, camera_topic: str = CAMERA_TOPIC, ground_truth: bool = True,
                 stats: bool = True, labels=None, name: str = "esnet_demo_monitor") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.node = rclpy.create_node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.camera_topic = camera_topic
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.label_times: list[float] = []       # monotonic time of each labels message
        self.latencies_ms: list[tuple[float, float]] = []  # (monotonic time, ms)
        self.label_shapes: set[tuple[int, int]] = set()
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.diagnostics_time: dict[str, float] = {}
        self.stats: list[Any] = []
        self.scores = _Scores(labels) if (ground_truth and labels is not None) else None
        self.unmatched_labels = 0
        self._gt: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._pending: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._cache: dict[str, collections.OrderedDict[int, Any]] = {k: collections.OrderedDict() for k in ("input", "color", "overlay")}
        self.recording = True

        self.node.create_subscription(Image, OUTPUT_TOPICS["labels"], self._on_labels, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        if stats:
            from esnet_ros.msg import SegmentationStats

            self.node.create_subscription(SegmentationStats, OUTPUT_TOPICS["stats"], self._on_stats, 50)
        if ground_truth:
            self.node.create_subscription(Image, GT_TOPIC, self._on_gt, QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
        self._picture_subs: list[Any] = []

    # -- callbacks (cheap: keep references, score when a pair is complete) --------------------------

    def _on_labels(self, msg, info) -> None:  # two arguments: rclpy passes the MessageInfo
        now = time.monotonic()
        received_ns = info.get("received_timestamp") or time.time_ns()
        stamp = _stamp_ns(msg.header.stamp)
        if not self.recording:
            return
        self.label_times.append(now)
        self.latencies_ms.append((now, (received_ns - stamp) / 1e6))
        self.label_shapes.add((int(msg.height), int(msg.width)))
        if self.scores is not None:
            if stamp in self._gt:
                self._score(self._gt.pop(stamp), msg)
            else:
                self._pending[stamp] = msg
                while len(self._pending) > 30:
                    self._pending.popitem(last=False)
                    self.unmatched_labels += 1

    def _on_gt(self, msg) -> None:
        stamp = _stamp_ns(msg.header.stamp)
        if stamp in self._pending:
            self._score(msg, self._pending.pop(stamp))
            return
        self._gt[stamp] = msg
        while len(self._gt) > 60:
            self._gt.popitem(last=False)

    def _score(self, gt_msg, labels_msg) -> None:
        gt, pred = image_to_numpy(gt_msg), image_to_numpy(labels_msg)
        if gt is None or pred is None or gt.shape != pred.shape:
            self.unmatched_labels += 1
            return
        self.scores.update(gt, pred)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}
            self.diagnostics_time[status.name] = time.monotonic()

    def _on_stats(self, msg) -> None:
        if self.recording:
            self.stats.append(msg)
            if len(self.stats) > 100_000:
                del self.stats[: len(self.stats) // 2]

    def _keep(self, kind: str, msg) -> None:
        cache = self._cache[kind]
        cache[_stamp_ns(msg.header.stamp)] = msg
        while len(cache) > 16:
            cache.popitem(last=False)

    def subscribe_pictures(self, camera: bool = True) -> None:
        """Keep the newest color and overlay messages, and camera frames when ``camera`` (matching its reliability)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        for kind in ("color", "overlay"):
            self._picture_subs.append(self.node.create_subscription(
                Image, OUTPUT_TOPICS[kind], lambda m, k=kind: self._keep(k, m), reliable))
        if camera:
            offers_reliable = any(info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                                  for info in self.node.get_publishers_info_by_topic(self.camera_topic))
            qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE if offers_reliable else ReliabilityPolicy.BEST_EFFORT)
            self._picture_subs.append(self.node.create_subscription(
                Image, self.camera_topic, lambda m: self._keep("input", m), qos))

    # -- queries ----------------------------------------------------------------------------------

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, children: Iterable[Child] = ()) -> bool:
        """Spin until ``predicate()``; :class:`DemoError` if a child dies; ``False`` on timeout."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return True
            for child in children:
                child.check_alive()
            self.spin(0.1)
        return predicate()

    def node_status(self) -> dict[str, str] | None:
        """The segmentation node's latest diagnostics values (the status named after the node)."""
        for name, values in self.diagnostics.items():
            if NODE_NAME in name and _counter(values, "received") is not None:
                return values
        for name, values in self.diagnostics.items():
            if _counter(values, "received") is not None and "camera" not in name:
                return values
        return None

    def camera_status(self) -> dict[str, str] | None:
        for values in self.diagnostics.values():
            if "frames_published" in values:
                return values
        return None

    def counters(self) -> dict[str, int | None]:
        values = self.node_status() or {}
        return {name: _counter(values, name) for name in COUNTERS}

    def latest_triple(self):
        """``(input, color, overlay)`` of the newest stamp that has all three; else ``(None, color, overlay)``."""
        inputs, colors, overlays = (self._cache[k] for k in ("input", "color", "overlay"))
        both = [stamp for stamp in overlays if stamp in colors]
        for stamp in reversed(both):
            if stamp in inputs:
                return inputs[stamp], colors[stamp], overlays[stamp]
        return (None, colors[both[-1]], overlays[both[-1]]) if both else None

    def destroy(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def drain_and_count(monitor: Monitor, timeout_s: float = 10.0) -> tuple[dict[str, int | None], bool]:
    """After the camera stopped: wait until the node's counters settle; ``(counters, identity holds)``."""
    def settled() -> bool:
        c = monitor.counters()
        if any(v is None for v in c.values()):
            return False
        return c["received"] == c["processed"] + c["dropped"] + c["rejected"]

    last = None
    stable_since = time.monotonic()
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        monitor.spin(0.2)
        c = monitor.counters()
        if c != last:
            last, stable_since = c, time.monotonic()
        elif settled() and time.monotonic() - stable_since > 1.5:  # unchanged across a diagnostics period
            break
    counters = monitor.counters()
    return counters, settled()


def _fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}{unit}"


def _json_safe(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------


def _save_png(path: pathlib.Path, image_bgr: np.ndarray) -> pathlib.Path:
    import cv2

    if not cv2.imwrite(str(path), image_bgr):
        raise DemoError(f"could not write {path}; check that the output folder is writable")
    return path


def side_by_side(input_bgr: np.ndarray | None, color_bgr: np.ndarray, overlay_bgr: np.ndarray, labels=None,
                 class_ids: Iterable[int] = (), panel_width: int = 640) -> np.ndarray:
    """``input | classes | overlay`` in one BGR image, each panel ``panel_width`` wide, titled, with a legend."""
    import cv2

    h, w = color_bgr.shape[:2]
    ph = max(1, round(h * panel_width / w))
    panels, titles = [], []
    for img, title in ((input_bgr, "camera"), (color_bgr, "ESNet classes"), (overlay_bgr, "overlay")):
        if img is None:
            continue
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        panels.append(cv2.resize(img, (panel_width, ph), interpolation=cv2.INTER_AREA))
        titles.append(title)
    row = np.concatenate(panels, axis=1)
    bar = np.full((28, row.shape[1], 3), 32, np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(bar, title, (i * panel_width + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    parts = [bar, row]
    ids = [i for i in class_ids if labels is not None and 0 <= i < labels.num_classes]
    if ids:
        legend = np.full((26, row.shape[1], 3), 32, np.uint8)
        x = 8
        for i in ids:
            r, g, b = labels.colors[i]
            name = labels.names[i]
            (tw, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            if x + 20 + tw > legend.shape[1]:
                break
            cv2.rectangle(legend, (x, 7), (x + 12, 19), (int(b), int(g), int(r)), -1)
            cv2.putText(legend, name, (x + 16, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            x += 28 + tw
        parts.append(legend)
    return np.concatenate(parts, axis=0)


def _visible_classes(color_bgr: np.ndarray, labels, min_share: float = 0.002) -> list[int]:
    """Class ids whose palette color covers at least ``min_share`` of a (subsampled) color mask."""
    pixels = color_bgr[::4, ::4].reshape(-1, 3)
    palette = labels.palette()[: labels.num_classes, ::-1]
    shares = [(np.all(pixels == palette[i], axis=-1).mean(), i) for i in range(labels.num_classes)]
    return [i for share, i in shares if share >= min_share]



# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring time after the first labels (default 30)")
    parser.add_argument("--camera", default=None, metavar="TOPIC",
                        help="segment this real camera topic (sensor_msgs/Image) instead of the synthetic camera; no mIoU")
    parser.add_argument("--camera-transport", choices=("raw", "compressed"), default="raw",
                        help="with --camera: raw (sensor_msgs/Image on TOPIC) or compressed (CompressedImage on TOPIC/compressed)")
    parser.add_argument("--output", default="demo_output", help="folder for PNGs, summary.json and logs (default demo_output)")
    parser.add_argument("--weights", default=None, help="checkpoint (default: the bundled demo model)")
    parser.add_argument("--width", type=int, default=None, help="network input width (default: the checkpoint's input_size)")
    parser.add_argument("--height", type=int, default=None, help="network input height (default: the checkpoint's input_size)")
    parser.add_argument("--rate-hz", type=float, default=15.0, help="synthetic camera frame rate (default 15)")
    parser.add_argument("--camera-size", default="1280x720", help="synthetic camera image size WxH (default 1280x720)")
    parser.add_argument("--pool-size", type=int, default=10, help="distinct synthetic scenes the camera cycles through (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes (default 0)")
    parser.add_argument("--save-frames", type=int, default=5, help="overlay PNGs to write, spread over the run (default 5)")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for the first labels (pool rendering + model loading; default 120)")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--camera-size {text!r} must look like WIDTHxHEIGHT, e.g. 1280x720") from None
    if w < 16 or h < 16:
        raise ValueError(f"--camera-size {text!r} is too small; use at least 16x16")
    return w, h


def _check_args(args: argparse.Namespace) -> None:
    if not args.seconds > 0:
        raise ValueError(f"--seconds {args.seconds} must be > 0, e.g. --seconds 30")
    if not 0 < args.rate_hz <= 1000:
        raise ValueError(f"--rate-hz {args.rate_hz} must be in (0, 1000], e.g. --rate-hz 15")
    if args.camera is not None and not args.camera.startswith("/"):
        raise ValueError(f"--camera {args.camera!r} must be an absolute topic name, e.g. /my_camera/image_raw")
    if args.save_frames < 0:
        raise ValueError(f"--save-frames {args.save_frames} must be >= 0")
    if not 1 <= args.pool_size <= 1000:
        raise ValueError(f"--pool-size {args.pool_size} must be in 1..1000")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from esnet_ros.core.checkpoint import resolve_weights

    weights = resolve_weights(args.weights)
    if not args.weights and not weights.is_file():
        raise FileNotFoundError(f"the bundled demo model {weights} is missing; pass --weights PATH to a checkpoint")
    size, meta, labels = network_input_size(weights, args.width, args.height)
    synthetic = args.camera is None
    camera_size = _parse_size(args.camera_size)
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("overlay_*.png")) + [out / "side_by_side.png", out / "summary.json"]:
        old.unlink(missing_ok=True)

    with interruptible():
        return _run(args, weights, size, meta, labels, synthetic, camera_size, out)


def _run(args, weights, size, meta, labels, synthetic: bool, camera_size, out: pathlib.Path) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from esnet_ros.ros.dds import use_large_message_profile

    context = rclpy.Context()
    use_large_message_profile()  # also inherited by the processes started here
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    children: list[Child] = []
    monitor = None
    try:
        camera_topic = CAMERA_TOPIC if synthetic else args.camera
        if synthetic:
            children.append(Child("synthetic camera", camera_argv(
                width=camera_size[0], height=camera_size[1], rate_hz=args.rate_hz, pool_size=args.pool_size,
                seed=args.seed), out / "logs" / "camera.log"))
        transport = "raw" if synthetic else args.camera_transport
        children.append(Child("segmentation node", node_argv(weights=weights, input_size=size, camera_topic=camera_topic,
                                                             transport=transport), out / "logs" / "node.log"))
        node_child = children[-1]
        print(f"esnet demo: {'synthetic camera ' + 'x'.join(map(str, camera_size)) + f' at {args.rate_hz:g} Hz' if synthetic else 'camera ' + camera_topic}"
              f" -> segmentation node ({weights.name}, network input {size[0]}x{size[1]}); logs in {out / 'logs'}", flush=True)
        if not synthetic:
            print("esnet demo: a real camera has no ground truth, so no mIoU is computed", flush=True)
        monitor = Monitor(context, camera_topic=camera_topic, ground_truth=synthetic, labels=labels)
        summary = _run_demo(args, monitor, children, node_child, synthetic, camera_topic, size, weights, meta, labels, out)
    except KeyboardInterrupt:
        print("\nesnet demo: interrupted; stopping the camera and the node", file=sys.stderr)
        for child in reversed(children):
            child.stop()
        return 130
    except DemoError as exc:
        print(f"esnet demo: error: {exc}", file=sys.stderr)
        for child in reversed(children):
            child.stop()
        return 1
    finally:
        for child in children:
            if child.alive():
                child.stop()
        if monitor is not None:
            monitor.destroy()
        context.try_shutdown()
    _print_summary(summary)
    return 0


def _run_demo(args, monitor: Monitor, children: list[Child], node_child: Child, synthetic: bool, camera_topic: str,
              size, weights, meta, labels, out: pathlib.Path) -> dict[str, Any]:
    from tqdm import tqdm

    start = time.monotonic()
    if not monitor.wait_for(lambda: len(monitor.label_times) > 0, args.startup_timeout, children):
        hint = ("the synthetic camera may still be rendering or the node loading" if synthetic else
                f"is {camera_topic} publishing sensor_msgs/Image? (check its type and QoS)")
        raise DemoError(
            f"no labels on {OUTPUT_TOPICS['labels']} within {args.startup_timeout:g} s ({hint}); "
            f"last lines of the node's log:\n{_indent(node_child.tail(15))}")
    startup_s = time.monotonic() - start
    # Measure as a planner consumes the node: labels (and stats, and ground truth here). The node
    # computes color and overlay only while someone subscribes, so the pictures come afterwards.
    monitor.label_times.clear()
    monitor.latencies_ms.clear()
    monitor.stats.clear()
    if monitor.scores is not None:
        monitor.scores = _Scores(labels)
    t0 = time.monotonic()
    c0 = monitor.counters()
    with tqdm(total=round(args.seconds), unit="s", desc="esnet demo", dynamic_ncols=True, file=sys.stderr,
              bar_format="{desc}: {n:.0f}/{total:.0f} s |{bar}| {postfix}") as bar:
        while (now := time.monotonic()) < t0 + args.seconds:
            monitor.spin(min(0.5, t0 + args.seconds - now))
            for child in children:
                child.check_alive()
            elapsed = time.monotonic() - t0
            frames = len(monitor.stats)
            recent = [ms for t, ms in monitor.latencies_ms[-30:]]
            postfix = f"frames {frames}  FPS {frames / elapsed:.1f}  latency {_fmt(np.median(recent) if recent else None, ' ms', 0)}"
            if monitor.scores is not None:
                postfix += f"  mIoU {_fmt(monitor.scores.miou() * 100 if monitor.scores.frames else None, '%')}"
            bar.set_postfix_str(postfix, refresh=False)
            bar.n = min(round(elapsed), bar.total)
            bar.refresh()
    window_s = time.monotonic() - t0
    monitor.recording = False
    c1 = monitor.counters()
    saved, triple = _take_pictures(monitor, args.save_frames, children, out,
                                   camera=synthetic or args.camera_transport == "raw")

    # stop the camera first, so the node's counters can settle before it is stopped
    exit_codes: dict[str, int] = {}
    published = None
    if synthetic:
        cam_status = monitor.camera_status()
        exit_codes["camera"] = children[0].stop()
        published = camera_published(children[0], cam_status)
    counters, identity = drain_and_count(monitor, 10.0 if synthetic else 3.0)
    exit_codes["node"] = node_child.stop()

    files: dict[str, Any] = {"overlays": [p.name for p in saved], "logs": [str(c.log_path.relative_to(out)) for c in children]}
    if triple is not None:
        inp, color, overlay = triple
        class_ids = _visible_classes(image_to_numpy(color), labels)
        picture = side_by_side(image_to_numpy(inp) if inp is not None else None, image_to_numpy(color), image_to_numpy(overlay),
                               labels, class_ids)
        files["side_by_side"] = _save_png(out / "side_by_side.png", picture).name

    latencies = [ms for _, ms in monitor.latencies_ms]
    frames = len(monitor.stats)  # one stats message per processed frame
    quality: dict[str, Any]
    if monitor.scores is not None and monitor.scores.frames:
        quality = monitor.scores.compute()
        quality["frames_scored"] = monitor.scores.frames
        quality["note"] = "labels matched to the synthetic camera's ground truth by header stamp, at input resolution"
    else:
        quality = {"miou": None, "per_class_iou": None, "pixel_accuracy": None, "frames_scored": 0,
                   "note": ("no mIoU: a real camera has no ground truth" if not synthetic else
                            "no mIoU: no labels could be matched to ground truth")}
    node_timing = {key: percentiles([getattr(s, key) for s in monitor.stats], (50, 90))
                   for key in ("inference_ms", "total_ms", "age_ms") if monitor.stats}
    in_window = {k: (c1[k] - c0[k]) if c1.get(k) is not None and c0.get(k) is not None else None for k in COUNTERS}
    summary = {
        "mode": "synthetic" if synthetic else "camera",
        "camera_topic": camera_topic,
        "seconds": round(window_s, 2),
        "startup_seconds": round(startup_s, 2),
        "weights": str(weights),
        "model": {"name": meta.get("name") or meta.get("model_name") or weights.stem, "dataset": labels.name,
                  "num_classes": labels.num_classes, "trained_input_size": meta.get("input_size")},
        "network_input": list(size),
        "camera": ({"width": int(args.camera_size.split("x")[0]), "height": int(args.camera_size.split("x")[1]),
                    "encoding": "bgr8", "rate_hz": args.rate_hz,
                    "frames_published": published}
                   if synthetic else {"topic": camera_topic}),
        "frames": frames,
        "fps": round(frames / window_s, 3) if window_s > 0 else None,
        "labels_received": len(monitor.label_times),
        "measured_with": "subscribers to esnet/labels and esnet/stats only (color and overlay are computed only "
                         "while subscribed; the pictures are taken after the measurement)",
        "latency_ms": percentiles(latencies, (50, 90, 99)),
        "node_timing_ms": node_timing,
        "label_shapes": sorted(list(s) for s in monitor.label_shapes),
        "miou": quality["miou"],
        "quality": quality,
        "node_counters": counters,
        "node_counters_in_window": in_window,
        "counter_identity_holds": identity,
        "exit_codes": exit_codes,
        "problems_in_logs": {c.name: c.problems()[:5] for c in children if c.problems()},
        "files": files,
    }
    summary = _json_safe(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["_output"] = str(out)
    return summary


def _take_pictures(monitor: Monitor, count: int, children: list[Child], out: pathlib.Path, camera: bool,
                   timeout_s: float = 15.0):
    """Subscribe to color/overlay (and the camera); save ``count`` overlays; return ``(paths, triple)``.

    The side-by-side needs the camera frame, the class colors and the overlay of one stamp; under
    load the monitor may miss some messages, so this waits (bounded) for a complete triple.
    """
    monitor.subscribe_pictures(camera)
    saved: list[pathlib.Path] = []
    seen: set[int] = set()

    def done() -> bool:
        for stamp, msg in list(monitor._cache["overlay"].items()):
            if len(saved) < count and stamp not in seen:
                seen.add(stamp)
                img = image_to_numpy(msg)
                if img is not None:
                    saved.append(_save_png(out / f"overlay_{len(saved):03d}.png", img))
        triple = monitor.latest_triple()
        return len(saved) >= count and triple is not None and (triple[0] is not None or not camera)

    if not monitor.wait_for(done, timeout_s, children):
        log.warning("pictures: %d of %d overlays and %s side-by-side within %.0f s", len(saved), count,
                    "a" if monitor.latest_triple() else "no", timeout_s)
    return saved, monitor.latest_triple()


def _print_summary(s: dict[str, Any]) -> None:
    lat = s["latency_ms"]
    print()
    print(f"esnet demo: {s['frames']} frames segmented in {s['seconds']:.1f} s on {s['camera_topic']}  "
          f"(network input {s['network_input'][0]}x{s['network_input'][1]}, start-up {s['startup_seconds']:.1f} s)")
    print(f"  FPS        {_fmt(s['fps'], '', 2)}")
    print(f"  latency    median {_fmt(lat['median'], ' ms')}, p90 {_fmt(lat['p90'], ' ms')}  (camera stamp -> labels received)")
    if s["miou"] is not None:
        print(f"  mIoU       {s['miou'] * 100:.1f}%  over {s['quality']['frames_scored']} frames against the synthetic ground truth")
    else:
        print(f"  mIoU       n/a ({s['quality']['note']})")
    c = s["node_counters"]
    print(f"  node       received {c['received']}, processed {c['processed']}, dropped {c['dropped']}, rejected {c['rejected']}")
    if s["problems_in_logs"]:
        print(f"  WARNING    tracebacks or exceptions in the logs: {s['problems_in_logs']}")
    written = s["files"].get("overlays", []) + [s["files"].get("side_by_side")] + ["summary.json"]
    print(f"  wrote      {', '.join(name for name in written if name)} "
          f"to {s['_output']}/")
