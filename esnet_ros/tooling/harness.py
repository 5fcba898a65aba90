"""The process/monitor harness behind ``esnet demo``, ``esnet soak`` and the node benchmark.

- :class:`Child`: a camera or node as a child process (never through a shell), its log in a file,
  stopped with SIGINT then a bounded wait; it dies with its parent (Linux);
- :func:`camera_argv`, :func:`node_argv`: the synthetic camera's and the segmentation node's
  command lines; :func:`network_input_size`: the checkpoint's input size unless overridden;
- :func:`parse_camera_size`: ``--camera-size`` checked.

The monitor that watches the node over DDS is :mod:`esnet_ros.tooling.monitor`.  rclpy is not
imported here, so ``esnet demo --help`` and ``esnet soak --help`` start fast and work without ROS.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

from esnet_ros.core.sizes import parse_size
from esnet_ros.ros.topics import OUTPUT_TOPICS

__all__ = [
    "Child",
    "interruptible",
    "DemoError",
    "camera_argv",
    "camera_published",
    "node_argv",
    "network_input_size",
    "parse_camera_size",
    "indent_log",
    "NODE_NAME",
    "CAMERA_TOPIC",
    "GT_TOPIC",
    "OUTPUT_TOPICS",
    "COUNTERS",
    "DEFAULT_CAMERA_RATE_HZ",
]

log = logging.getLogger(__name__)

NODE_NAME = "esnet_segmentation"
CAMERA_TOPIC = "/camera/image_raw"
GT_TOPIC = "/camera/labels_gt"
COUNTERS = ("received", "processed", "dropped", "rejected")
DEFAULT_CAMERA_RATE_HZ = 30.0  # a common camera rate; the demo shows whether the node keeps up
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception): ", re.MULTILINE)


class DemoError(RuntimeError):
    """Something a harnessed run cannot recover from; the message says what and where to look."""


# ----------------------------------------------------------------------------------------------
# Child processes
# ----------------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the demo dies, so no camera or node outlives it."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def camera_published(camera: Child, status: dict[str, str] | None) -> int | None:
    """A stopped synthetic camera's exact published count (it prints it on exit), else the count in
    its last diagnostics ``status`` (up to a second of frames behind)."""
    from esnet_ros.tooling.synthetic_camera import published_in_log

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
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes to it until close()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
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
                + indent_log(self.tail(25))
            )

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGINT, a bounded wait, then SIGTERM and SIGKILL if needed; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s (pid %d) did not exit %.0f s after SIGINT; sending SIGTERM", self.name, self.pid, timeout_s
                )
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
        return [
            m.group(0) if m.group(0).startswith("Traceback") else text[m.start() : text.find("\n", m.start())]
            for m in TRACEBACK_RE.finditer(text)
        ]


class interruptible:
    """Within: SIGINT and SIGTERM raise ``KeyboardInterrupt``, so the children are stopped in order.

    (A process started in the background by a non-interactive shell inherits SIGINT ignored.)
    ``interruptible.signalled`` says whether one arrived: a ``KeyboardInterrupt`` raised while rclpy
    converts a message (Python called from C++) comes out of ``spin_once`` as pybind11's
    ``RuntimeError`` instead (see :meth:`esnet_ros.tooling.monitor.Monitor.spin`).
    """

    signalled = False

    def __enter__(self) -> interruptible:
        self._saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        interruptible.signalled = False
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, frame: Any) -> None:
    interruptible.signalled = True
    raise KeyboardInterrupt


def indent_log(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in (text.splitlines() or ["(empty log)"]))


def _python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def camera_argv(
    *,
    width: int = 1280,
    height: int = 720,
    rate_hz: float = DEFAULT_CAMERA_RATE_HZ,
    pool_size: int = 10,
    seed: int = 0,
    reliability: str = "reliable",
    images: str | os.PathLike | None = None,
    labels_dir: str | os.PathLike | None = None,
) -> list[str]:
    """The camera's command line (publishes ``/camera/image_raw`` and ``/camera/labels_gt``): synthetic scenes,
    or with ``images`` a folder or video replayed (``width``/``height`` 0: their own size)."""
    argv = _python_module("esnet_ros.tooling.synthetic_camera") + [
        "--ros-args",
        "-p",
        f"width:={int(width)}",
        "-p",
        f"height:={int(height)}",
        "-p",
        f"rate_hz:={float(rate_hz)!r}",
        "-p",
        f"pool_size:={int(pool_size)}",
        "-p",
        f"seed:={int(seed)}",
        "-p",
        f"reliability:={reliability}",
    ]
    if images:
        argv += ["-p", f"images:={os.fspath(pathlib.Path(images).resolve())}"]
    if labels_dir:
        argv += ["-p", f"labels_dir:={os.fspath(pathlib.Path(labels_dir).resolve())}"]
    return argv


def node_argv(
    *,
    weights: str | os.PathLike,
    input_size: tuple[int, int],
    camera_topic: str = CAMERA_TOPIC,
    transport: str = "raw",
    extra_params: Iterable[str] = (),
) -> list[str]:
    """The segmentation node's command line (``extra_params``: more ``name:=value`` pairs)."""
    argv = _python_module("esnet_ros.ros") + [
        "--ros-args",
        "-p",
        f"weights:={os.fspath(weights)}",
        "-p",
        f"input_width:={int(input_size[0])}",
        "-p",
        f"input_height:={int(input_size[1])}",
    ]
    if camera_topic != CAMERA_TOPIC:
        argv += ["-p", f"image_topic:={camera_topic}"]
    if transport != "raw":
        argv += ["-p", f"input_transport:={transport}"]
    for param in extra_params:
        argv += ["-p", param]
    return argv


def network_input_size(weights: str | os.PathLike, width: int | None = None, height: int | None = None):
    """``((W, H), meta, labels)``: the network input recorded in the checkpoint (or a fixed-size
    ``.onnx`` from ``esnet export``) unless overridden."""
    from esnet_ros.core.checkpoint import load_checkpoint
    from esnet_ros.inference.onnx_export import read_onnx_metadata

    path = pathlib.Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights {path} not found; pass --weights PATH to a checkpoint (.safetensors, .pt or .onnx)"
        )
    meta = read_onnx_metadata(path) if path.suffix == ".onnx" else load_checkpoint(path, "cpu")[1]
    size = meta.onnx_input_size or meta.input_size
    w = int(width) if width else size[0]
    h = int(height) if height else size[1]
    for name, v in (("--width", w), ("--height", h)):
        if v <= 0 or v % 8:
            lo, hi = max(8, v - v % 8), v - v % 8 + 8
            raise ValueError(
                f"{name} {v} must be a positive multiple of 8 (ESNet downsamples 3 times); try {lo} or {hi}"
            )
    return (w, h), meta, meta.labels


def parse_camera_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``; a clear error for anything else (``--camera-size``)."""
    return parse_size(text, "--camera-size", network=False, example="1280x720")
