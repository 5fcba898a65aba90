"""The segmentation node: camera in; labels, color mask, overlay, confidence, stats out.

Thin ROS 2 glue over :class:`esnet_ros.inference.segmenter.Segmenter` (see docs/node.md for every topic,
parameter and QoS decision). In short:

- A lifecycle node ``esnet_segmentation`` that configures (loads the model) and activates itself
  unless ``autostart:=false``; deactivate frees GPU memory, cleanup drops the model.
- **Latest frame only**: the subscription callback only counts the frame and puts it in a
  one-slot mailbox (a waiting frame it replaces is counted as dropped); a worker thread takes it,
  converts, runs the segmenter, publishes, counts. ``received == processed + dropped + rejected``
  up to the one frame in flight.
- **Lazy outputs**: an output is computed only while it has a subscriber; with none at all the
  frame is counted (``dropped``, cause ``no_subscriber``) and nothing runs.
- **Input QoS** ``auto`` matches the camera publishers' reliability, read from the graph and
  re-checked every 0.5 s (recreating the subscription when it must change).

Run it with ``python -m esnet_ros.ros.node --ros-args -p weights:=model.safetensors``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import pathlib
import sys
import threading
import time
from typing import Any

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleState, Node as LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image

from esnet_ros.inference.backends import BACKENDS, PRECISIONS, resolve_device, resolve_precision
from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights
from esnet_ros.ros.dds import use_large_message_profile
from esnet_ros.core.labels import LabelSet, load_labels_yaml
from esnet_ros.core.model import OUTPUT_STRIDE, nearest_valid_sizes
from esnet_ros.msg import ClassInfo, ClassMap, SegmentationStats
from esnet_ros.ros.images import (
    CAUSES,
    ImageConversionError,
    ImagePublisherBuffer,
    compressed_to_color_input,
    to_color_input,
)
from esnet_ros.inference.segmenter import Segmenter

try:  # optional: the Nav2 semantic_segmentation_layer contract
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:
    LabelInfo = VisionClass = None

__all__ = ["SegmentationNode", "main", "NODE_NAME", "REJECT_CAUSES", "WARNING_CAUSES"]

RCLError = _rclpy.RCLError
NODE_NAME = "esnet_segmentation"
IMAGE_OUTPUTS = ("labels", "color", "overlay", "confidence")
#: rejection causes counted in /diagnostics (conversion causes plus a failed inference)
REJECT_CAUSES = CAUSES + ("inference_error",)
#: frames that are processed, but with a warning counted by cause
WARNING_CAUSES = ("stamp_zero", "stamp_backwards", "stamp_duplicate", "frame_id_long")
FRAME_ID_WARN_CHARS = 256
LOG_THROTTLE_S = 5.0
QOS_CHECK_PERIOD_S = 0.5
DIAGNOSTICS_PERIOD_S = 1.0
RELIABILITIES = ("auto", "reliable", "best_effort")
MODEL_PARAMS = ("weights", "labels_file", "device", "precision", "backend", "input_width", "input_height")
INPUT_PARAMS = ("image_topic", "input_transport", "input_qos.reliability", "input_qos.depth")


# -- parameters --------------------------------------------------------------------------------------


def _descriptor(
    description: str,
    *,
    choices: tuple[str, ...] | None = None,
    int_range: tuple[int, int] | None = None,
    float_range: tuple[float, float] | None = None,
    read_only: bool = False,
) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=read_only)
    if choices:
        d.additional_constraints = "one of: " + ", ".join(choices)
    if int_range:
        d.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    if float_range:
        d.floating_point_range = [FloatingPointRange(from_value=float_range[0], to_value=float_range[1], step=0.0)]
    return d


#: name -> (default, descriptor); docs/node.md and config/esnet.yaml document the same table
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "weights": ("", _descriptor(
        "ESNet checkpoint (.safetensors, or the authors' .pt state_dict). Empty: the bundled demo "
        "model, trained on synthetic scenes (not for real cameras). Changing it reloads in the "
        "background; a missing or corrupt file is refused and the old model keeps serving.")),
    "labels_file": ("", _descriptor(
        "Class/palette YAML for a custom dataset (format: esnet_ros/core/labels.py). Empty: the "
        "checkpoint's own classes.")),
    "device": ("auto", _descriptor(
        "Inference device: auto (CUDA when available, else the CPU), cpu, cuda or cuda:N. "
        "Changing it reloads in the background.", choices=("auto", "cpu", "cuda", "cuda:N"))),
    "precision": ("auto", _descriptor(
        "auto (fp16 on CUDA, fp32 on the CPU), fp32, fp16 (CUDA only) or int8 (an int8 ONNX model "
        "from `esnet export --int8`, CPU only).", choices=PRECISIONS)),
    "backend": ("auto", _descriptor(
        "Inference backend: auto (onnxruntime on the CPU, torch on CUDA), torch, onnxruntime or "
        "tensorrt; changing it reloads in the background.", choices=BACKENDS)),
    "input_width": (1024, _descriptor(
        "Network input width in pixels (the camera image is resized to it); a multiple of 8.",
        int_range=(OUTPUT_STRIDE, 8192))),
    "input_height": (512, _descriptor(
        "Network input height in pixels; a multiple of 8.", int_range=(OUTPUT_STRIDE, 8192))),
    "output_resolution": ("input", _descriptor(
        "Size of labels/color/overlay/confidence: input (the camera's, pixels line up with it) or "
        "network (input_width x input_height, cheaper).", choices=("input", "network"))),
    "image_topic": ("camera/image_raw", _descriptor(
        "Camera topic (relative names resolve in the node's namespace; remapping works too). With "
        "input_transport=compressed the node subscribes to <image_topic>/compressed.")),
    "input_transport": ("raw", _descriptor(
        "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, JPEG or PNG).",
        choices=("raw", "compressed"))),
    "input_qos.reliability": ("auto", _descriptor(
        "Camera subscription reliability. auto: reliable if any camera publisher is reliable, best "
        "effort if all are (re-checked as publishers come and go).", choices=RELIABILITIES)),
    "input_qos.depth": (1, _descriptor(
        "Camera subscription queue depth (the node keeps only the newest frame anyway).", int_range=(1, 100))),
    "output_qos.reliability": ("reliable", _descriptor(
        "Reliability of labels/color/overlay/confidence/stats. Best effort loses large frames on "
        "default Fast DDS (see docs/node.md).", choices=("reliable", "best_effort"), read_only=True)),
    "output_qos.depth": (1, _descriptor("Queue depth of the outputs.", int_range=(1, 100), read_only=True)),
    "overlay_alpha": (0.5, _descriptor(
        "Overlay blend: 0 shows the camera image only, 1 the class colors only.", float_range=(0.0, 1.0))),
    "max_rate_hz": (0.0, _descriptor(
        "Upper bound on processed frames per second (newer frames replace waiting ones); 0: unlimited.",
        float_range=(0.0, 1000.0))),
    "max_input_pixels": (7680 * 4320, _descriptor(
        "Camera frames with more pixels than this are rejected (cause too_large) before any decoding.",
        int_range=(1, 1 << 31))),
    "autostart": (True, _descriptor(
        "Configure and activate at start-up; false leaves the node unconfigured for a lifecycle manager.",
        read_only=True)),
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a Segmenter is built from (the model parameters)."""

    weights: str
    labels_file: str
    device: str
    precision: str
    backend: str
    input_width: int
    input_height: int

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "ModelConfig":
        return cls(**{name: values[name] for name in MODEL_PARAMS})

    def weights_path(self) -> pathlib.Path:
        return resolve_weights(self.weights)


def check_model_config(cfg: ModelConfig) -> tuple[Any, LabelSet | None]:
    """Validate ``cfg`` cheaply and load its weights on the CPU: ``((model, meta), labels)``.

    Raises ``ValueError``/``FileNotFoundError`` naming the parameter and the fix.
    """
    for name, value in (("input_width", cfg.input_width), ("input_height", cfg.input_height)):
        if value % OUTPUT_STRIDE:
            lo, hi = nearest_valid_sizes(value)
            raise ValueError(
                f"{name}={value} must be divisible by {OUTPUT_STRIDE} (ESNet downsamples 3 times); try {lo} or {hi}"
            )
    if cfg.backend not in BACKENDS:
        raise ValueError(f"backend={cfg.backend!r} must be one of: {', '.join(BACKENDS)}")
    if cfg.device != "auto" or cfg.precision != "auto":  # auto always resolves (the Segmenter logs its choice)
        resolve_precision(cfg.precision, resolve_device(cfg.device))
    labels = load_labels_yaml(cfg.labels_file) if cfg.labels_file else None
    path = cfg.weights_path()
    if not cfg.weights and not path.is_file():
        raise FileNotFoundError(
            f"weights is empty but the bundled demo model {path} is missing; set weights:=/path/to/model.safetensors"
        )
    if path.suffix == ".onnx":  # an exported model: check it is readable and carries our metadata
        from esnet_ros.inference.onnx_export import read_onnx_metadata

        try:
            read_onnx_metadata(path)
        except (ValueError, FileNotFoundError):
            raise
        except Exception as exc:  # protobuf's DecodeError and friends: re-raised with the fix
            raise ValueError(f"weights {path} is not a readable ONNX file ({exc}); re-export it with `esnet export`") from exc
        return str(path), labels
    model, meta = load_checkpoint(path, "cpu", labels=labels)
    return (model, meta), labels


# -- small helpers -----------------------------------------------------------------------------------


class LatestSlot:
    """A one-frame mailbox: ``put`` replaces a waiting frame (returns True when it did)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> Any:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> bool:
        with self._cond:
            had, self._item = self._item is not None, None
            return had

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class Counters:
    """Frame accounting shared by the callback, the worker and the diagnostics timer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped_superseded = 0
        self.dropped_no_subscriber = 0
        # frames a publisher sent that never reached the callback (DDS replaced them in the depth-1
        # history while the node was busy): gaps in each publisher's sequence numbers. Not part of
        # `received`, so reported beside the identity, never hidden.
        self.missed_in_transport = 0
        self.last_sequence: dict[bytes, int] = {}
        self.rejected = collections.Counter({c: 0 for c in REJECT_CAUSES})
        self.warnings = collections.Counter({c: 0 for c in WARNING_CAUSES})
        self.computed = collections.Counter({o: 0 for o in IMAGE_OUTPUTS + ("stats",)})
        self.frames_since_activation = 0
        self.timings = collections.deque(maxlen=300)  # (total_ms, age_ms, inference_ms)

    @property
    def dropped(self) -> int:
        return self.dropped_superseded + self.dropped_no_subscriber

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


class CauseThrottle:
    """Log at most once per ``period`` per cause, telling how many were suppressed."""

    def __init__(self, period: float = LOG_THROTTLE_S) -> None:
        self.period = period
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, cause: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(cause, -math.inf) < self.period:
                self._suppressed[cause] += 1
                return None
            self._last[cause] = now
            n, self._suppressed[cause] = self._suppressed[cause], 0
        return f" ({n} more since the last report)" if n else ""


def _reliability_name(policy: ReliabilityPolicy) -> str:
    return {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best_effort"}.get(
        policy, str(policy).split(".")[-1].lower()
    )


def _policy_name(kind: Any) -> str:
    """``RELIABILITY`` from a QoSPolicyKind / rmw policy enum, whatever the rclpy version calls it."""
    name = str(getattr(kind, "name", kind)).split(".")[-1].upper()
    return name[len("RMW_QOS_POLICY_"):] if name.startswith("RMW_QOS_POLICY_") else name


def _segmenter_outputs(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """Labels always (stats and every other output derive from them), plus the wanted images."""
    return ("labels",) + tuple(o for o in wanted if o in IMAGE_OUTPUTS and o != "labels")


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# -- the node ----------------------------------------------------------------------------------------


class SegmentationNode(LifecycleNode):
    """ESNet semantic segmentation of a camera stream (see the module docstring and docs/node.md)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        self._values = {name: self.get_parameter(name).value for name in PARAMETERS}
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.counters = Counters()
        self._throttle = CauseThrottle()
        self._slot = LatestSlot()
        self._seg: Segmenter | None = None
        self._next_seg: Segmenter | None = None
        self._model_cfg: ModelConfig | None = None
        self._reload_lock = threading.Lock()
        self._reload_generation = 0
        self._reverting = False
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._sub = None
        self._sub_reliability: ReliabilityPolicy | None = None
        self._sub_dirty = False
        self._sub_declared_topics: set[str] = set()
        self._warned_qos: set[tuple[str, str]] = set()
        self._pubs: dict[str, Any] = {}
        self._buffers = {name: ImagePublisherBuffer() for name in IMAGE_OUTPUTS}
        self._last_stamp_ns: int | None = None
        self._last_error = ""
        self._state = "unconfigured"
        self._diag_prev = (time.monotonic(), 0, 0)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._qos_timer = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> bool:
        """Configure and activate (what ``autostart`` does); False when a transition failed."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = ModelConfig.from_values(self._values)
        try:
            preloaded, labels = check_model_config(cfg)
            seg = self._build_segmenter(cfg, preloaded, labels)
        except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
            self._last_error = f"configure failed: {exc}"
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._seg, self._model_cfg, self._last_error = seg, cfg, ""
        self._create_publishers()
        self._state = "inactive"
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._seg is None and self._model_cfg is not None:  # released by deactivate: rebuild
            try:
                preloaded, labels = check_model_config(self._model_cfg)
                self._seg = self._build_segmenter(self._model_cfg, preloaded, labels)
            except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
                self._last_error = f"activate failed: {exc}"
                self.get_logger().error(f"activate failed: {exc}")
                return TransitionCallbackReturn.FAILURE
        result = super().on_activate(state)  # enables the lifecycle publishers
        with self.counters.lock:
            self.counters.frames_since_activation = 0
        self._publish_class_map()
        self._stop.clear()
        self._slot.reopen()
        self._worker = threading.Thread(target=self._work, name="esnet_worker", daemon=True)
        self._worker.start()
        self._create_subscription()
        self._qos_timer = self.create_timer(QOS_CHECK_PERIOD_S, self._check_input_qos)
        self._state = "active"
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        if self._seg is not None:
            self._seg.release()  # frees GPU memory; activate rebuilds the model
            self._seg = None
        self._state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_publishers()
        self._seg = self._next_seg = None
        self._model_cfg = None
        self._state = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        self._destroy_publishers()
        self._seg = self._next_seg = None
        self._state = "finalized"
        return super().on_shutdown(state)

    def stop(self) -> None:
        """Stop taking frames and end the worker (at most ~1.5 s); safe to call twice."""
        self._stop_input()

    def _stop_input(self) -> None:
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
            self._qos_timer = None
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        self._stop.set()
        self._slot.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=1.5)
        self._worker = None
        if self._slot.clear():  # the frame that was waiting will never be processed
            with self.counters.lock:
                self.counters.dropped_superseded += 1

    # -- model -------------------------------------------------------------------------------------

    def _build_segmenter(self, cfg: ModelConfig, preloaded: Any, labels: LabelSet | None) -> Segmenter:
        if not cfg.weights:
            self.get_logger().warning(
                f"weights is empty: using the bundled demo model {cfg.weights_path().name}, trained on synthetic "
                f"scenes; it is NOT for real cameras (set weights:=/path/to/model.safetensors)"
            )
        seg = Segmenter(
            preloaded,
            device=cfg.device,
            precision=cfg.precision,
            backend=cfg.backend,
            input_size=(cfg.input_width, cfg.input_height),
            labels=labels,
        )
        self.get_logger().info(
            f"model {cfg.weights_path().name}: {seg.num_classes} classes ({seg.labels.name}), network input "
            f"{cfg.input_width}x{cfg.input_height}, {seg.backend.name} on {seg.device} ({seg.precision})"
        )
        return seg

    def _reload(self, cfg: ModelConfig, preloaded: Any, labels: LabelSet | None, generation: int,
                previous: dict[str, Any]) -> None:
        """Build a new Segmenter in the background; the worker swaps it in before its next frame."""
        with self._reload_lock:
            if generation != self._reload_generation:
                return  # a newer change supersedes this one
            try:
                seg = self._build_segmenter(cfg, preloaded, labels)
            except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
                self.get_logger().error(f"reloading the model failed, the old model keeps serving: {exc}")
                self._revert(previous)
                return
            self._model_cfg = cfg
            if self._state == "active":
                self._next_seg = seg
            else:
                self._seg = seg

    def _revert(self, previous: dict[str, Any]) -> None:
        self._reverting = True
        try:
            self.set_parameters([Parameter(name, value=value) for name, value in previous.items()])
        finally:
            self._reverting = False

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate (all or nothing) and apply: runtime values at the next frame, the model in the background."""
        proposed = {p.name: p.value for p in params if p.name in PARAMETERS}
        if not proposed:
            return SetParametersResult(successful=True)
        if self._reverting:
            self._values.update(proposed)
            return SetParametersResult(successful=True)
        values = {**self._values, **proposed}
        reason = self._check_choices(values)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        model_changed = any(values[n] != self._values[n] for n in MODEL_PARAMS)
        reload_args = None
        if model_changed and self._state != "unconfigured":
            cfg = ModelConfig.from_values(values)
            try:
                preloaded, labels = check_model_config(cfg)
            except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
                self.get_logger().warning(f"refused {', '.join(sorted(proposed))}: {exc}")
                return SetParametersResult(successful=False, reason=str(exc))
            self._reload_generation += 1
            previous = {n: self._values[n] for n in MODEL_PARAMS if values[n] != self._values[n]}
            reload_args = (cfg, preloaded, labels, self._reload_generation, previous)
        if any(values[n] != self._values[n] for n in INPUT_PARAMS):
            self._sub_dirty = True
        self._values = values
        if reload_args is not None:
            threading.Thread(target=self._reload, args=reload_args, name="esnet_reload", daemon=True).start()
        return SetParametersResult(successful=True)

    @staticmethod
    def _check_choices(values: dict[str, Any]) -> str:
        """Reasons for string parameters outside their allowed values (ranges are checked by rclpy)."""
        for name in ("precision", "output_resolution", "input_transport", "input_qos.reliability",
                     "output_qos.reliability", "backend"):
            allowed = PARAMETERS[name][1].additional_constraints[len("one of: "):].split(", ")
            if str(values[name]) not in allowed:
                return f"{name}={values[name]!r} must be one of: {', '.join(allowed)}"
        device = str(values["device"])
        if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
            return f"device={device!r} must be one of: auto, cpu, cuda, cuda:N"
        if not str(values["image_topic"]).strip():
            return "image_topic must not be empty; e.g. camera/image_raw"
        return ""

    # -- topics --------------------------------------------------------------------------------------

    def _output_qos(self) -> QoSProfile:
        reliable = self._values["output_qos.reliability"] == "reliable"
        return QoSProfile(
            depth=int(self._values["output_qos.depth"]),
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )

    def _create_publishers(self) -> None:
        if self._pubs:
            return
        overrides = QoSOverridingOptions.with_default_policies()
        for name, msg_type in (("labels", Image), ("color", Image), ("overlay", Image), ("confidence", Image),
                               ("stats", SegmentationStats)):
            topic = f"esnet/{name}"
            self._pubs[name] = self.create_lifecycle_publisher(
                msg_type, topic, self._output_qos(), qos_overriding_options=overrides,
                event_callbacks=PublisherEventCallbacks(
                    incompatible_qos=lambda event, t=topic: self._on_publisher_incompatible(t, event)),
            )
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pubs["class_map"] = self.create_lifecycle_publisher(ClassMap, "esnet/class_map", latched)
        if LabelInfo is not None:
            self._pubs["label_info"] = self.create_lifecycle_publisher(LabelInfo, "esnet/label_info", latched)
            self.get_logger().info("vision_msgs found: publishing esnet/label_info (vision_msgs/LabelInfo)")
        else:
            self.get_logger().info("vision_msgs is not installed: esnet/label_info is not published (esnet/class_map is)")

    def _destroy_publishers(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}

    def _input_topic(self) -> tuple[str, type]:
        topic = str(self._values["image_topic"]).strip()
        if self._values["input_transport"] == "compressed":
            return topic.rstrip("/") + "/compressed", CompressedImage
        return topic, Image

    def _create_subscription(self, reliability: ReliabilityPolicy | None = None, reason: str = "") -> None:
        topic, msg_type = self._input_topic()
        mode = self._values["input_qos.reliability"]
        if mode != "auto":
            reliability = ReliabilityPolicy.RELIABLE if mode == "reliable" else ReliabilityPolicy.BEST_EFFORT
            reason = f"input_qos.reliability={mode}"
        elif reliability is None:
            resolved = self.resolve_topic_name(topic)
            reliability, reason = self._auto_reliability(resolved)
            if reliability is None:
                reliability = ReliabilityPolicy.BEST_EFFORT
                reason = (f"no publisher on {resolved} yet: best effort matches any camera; re-checked when one "
                          f"appears (input_qos.reliability=auto)")
        qos = QoSProfile(depth=int(self._values["input_qos.depth"]), history=HistoryPolicy.KEEP_LAST,
                         reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        resolved = self.resolve_topic_name(topic)
        # qos_overrides.<topic>.subscription.*: declared (read-only) on the first subscription to a
        # topic; a user override of the reliability pins it (auto no longer changes it).
        options = None
        if resolved not in self._sub_declared_topics:
            options = QoSOverridingOptions.with_default_policies()
            self._sub_declared_topics.add(resolved)
        else:
            self._apply_user_qos_overrides(resolved, qos)
        if self._sub is not None:
            self.destroy_subscription(self._sub)
        self._sub = self.create_subscription(
            msg_type, topic, self._on_image, qos, qos_overriding_options=options,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_subscription_incompatible),
        )
        self._sub_reliability = self._sub.qos_profile.reliability
        if self._sub_reliability != reliability:
            reason = f"qos_overrides.{resolved}.subscription.reliability"
        self._sub_dirty = False
        self.get_logger().info(
            f"subscribed to {self._sub.topic_name} ({msg_type.__name__}, {_reliability_name(self._sub_reliability)}, "
            f"depth {self._sub.qos_profile.depth}): {reason}"
        )

    def _user_overrides(self, resolved: str) -> dict[str, Any]:
        prefix = f"qos_overrides.{resolved}.subscription."
        given = getattr(self, "_parameter_overrides", {}) or {}
        return {k[len(prefix):]: v.value for k, v in given.items() if k.startswith(prefix)}

    def _apply_user_qos_overrides(self, resolved: str, qos: QoSProfile) -> None:
        given = self._user_overrides(resolved)
        if "reliability" in given:
            qos.reliability = ReliabilityPolicy.RELIABLE if given["reliability"] == "reliable" else ReliabilityPolicy.BEST_EFFORT
        if "depth" in given:
            qos.depth = int(given["depth"])

    def _auto_reliability(self, resolved: str) -> tuple[ReliabilityPolicy | None, str]:
        infos = self.get_publishers_info_by_topic(resolved)
        if not infos:
            return None, ""
        reliable = [i for i in infos if i.qos_profile.reliability == ReliabilityPolicy.RELIABLE]
        names = ", ".join(sorted({f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos}))
        if reliable:
            return ReliabilityPolicy.RELIABLE, (
                f"{len(reliable)} of {len(infos)} publisher(s) ({names}) offer reliable: subscribing reliable, "
                f"because a best-effort connection loses most frames larger than ~0.5 MB on default Fast DDS "
                f"(input_qos.reliability=auto)")
        return ReliabilityPolicy.BEST_EFFORT, (
            f"all {len(infos)} publisher(s) ({names}) are best effort: subscribing best effort, because a reliable "
            f"subscription would not match them (input_qos.reliability=auto)")

    def _check_input_qos(self) -> None:
        """Timer: recreate the subscription when its topic/QoS parameters or the camera's reliability changed."""
        if self._state != "active":
            return
        if self._sub_dirty or self._sub is None:
            self._create_subscription()
            return
        if self._values["input_qos.reliability"] != "auto" or "reliability" in self._user_overrides(self._sub.topic_name):
            return
        wanted, reason = self._auto_reliability(self._sub.topic_name)
        if wanted is not None and wanted != self._sub_reliability:
            self._create_subscription(wanted, reason)

    def _on_subscription_incompatible(self, event: Any) -> None:
        policy = _policy_name(event.last_policy_kind)
        key = ("input", policy)
        if self._values["input_qos.reliability"] == "auto" and policy == "RELIABILITY":
            self._check_input_qos()  # auto mode: simply follow the camera
            return
        if key in self._warned_qos:
            return
        self._warned_qos.add(key)
        topic = self._sub.topic_name if self._sub is not None else self._input_topic()[0]
        if policy == "RELIABILITY":
            fix = ("the camera publishes best effort but this node subscribes reliable: set "
                   "input_qos.reliability:=best_effort (or auto), or make the camera publish reliable")
        else:
            fix = f"the camera's {policy.lower()} policy does not match; align it or set the matching qos_overrides"
        self.get_logger().warning(f"incompatible QoS on {topic} ({policy}): {fix}")

    def _on_publisher_incompatible(self, topic: str, event: Any) -> None:
        policy = _policy_name(event.last_policy_kind)
        key = (topic, policy)
        if key in self._warned_qos:
            return
        self._warned_qos.add(key)
        if policy == "RELIABILITY":
            fix = ("a subscriber requests reliable but the outputs are best effort: set "
                   "output_qos.reliability:=reliable, or subscribe best effort")
        elif policy == "DURABILITY":
            fix = "a subscriber requests transient local but the outputs are volatile: subscribe volatile"
        else:
            fix = f"a subscriber's {policy.lower()} policy does not match: align the subscriber's QoS"
        self.get_logger().warning(f"incompatible QoS on {self.resolve_topic_name(topic)} ({policy}): {fix}")

    # -- frames --------------------------------------------------------------------------------------

    def _wanted_outputs(self) -> tuple[str, ...]:
        pubs = self._pubs
        return tuple(name for name in IMAGE_OUTPUTS + ("stats",)
                     if name in pubs and pubs[name].get_subscription_count() > 0)

    def _on_image(self, msg: Any, info: dict) -> None:
        """Subscription callback: count, and leave the frame for the worker (replacing a waiting one)."""
        counters = self.counters
        seq, gid = info.get("publication_sequence_number"), info.get("publisher_gid")
        if seq is not None and gid is not None:
            key = bytes(gid.get("data", b""))
            with counters.lock:
                last = counters.last_sequence.get(key)
                if last is not None and seq > last + 1:
                    counters.missed_in_transport += seq - last - 1
                counters.last_sequence[key] = seq
        if not self._wanted_outputs():
            with counters.lock:
                counters.received += 1
                counters.dropped_no_subscriber += 1
            return
        with counters.lock:
            counters.received += 1
            if self._slot.put(msg):
                counters.dropped_superseded += 1

    def _work(self) -> None:
        next_start = 0.0
        while not self._stop.is_set():
            rate = float(self._values["max_rate_hz"])
            wait = next_start - time.monotonic()
            if rate > 0 and wait > 0 and self._stop.wait(wait):
                break
            msg = self._slot.take(timeout=0.5)
            if msg is None:
                continue
            started = time.monotonic()
            try:
                self._process(msg)
            except (RCLError, InvalidHandle) as exc:
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down (SIGINT/SIGTERM ended the context while publishing)
                self.get_logger().error(f"publishing failed: {exc}")
            next_start = started + 1.0 / rate if rate > 0 else 0.0

    def _current_segmenter(self) -> Segmenter | None:
        if self._next_seg is not None:
            old, self._seg, self._next_seg = self._seg, self._next_seg, None
            if old is not None:
                old.release()
            self._publish_class_map()
        return self._seg

    def _reject(self, cause: str, message: str) -> None:
        with self.counters.lock:
            self.counters.rejected[cause] += 1
        suffix = self._throttle(cause)
        if suffix is not None:
            self.get_logger().warning(f"rejected a frame ({cause}): {message}{suffix}")

    def _warn(self, cause: str, message: str) -> None:
        with self.counters.lock:
            self.counters.warnings[cause] += 1
        suffix = self._throttle(cause)
        if suffix is not None:
            self.get_logger().warning(f"{message}{suffix}")

    def _process(self, msg: Any) -> None:
        """Convert, segment, publish, count: one frame, on the worker thread."""
        t0 = time.perf_counter()
        seg = self._current_segmenter()
        wanted = self._wanted_outputs()
        if seg is None or not wanted:  # the last subscriber left while the frame waited
            with self.counters.lock:
                self.counters.dropped_no_subscriber += 1
            return
        frame = self._convert(msg)
        if frame is None:
            return
        values = self._values
        t1 = time.perf_counter()
        try:
            result = seg(frame.image, color_order=frame.color_order, outputs=_segmenter_outputs(wanted),
                         resolution=values["output_resolution"], alpha=float(values["overlay_alpha"]))
        except RuntimeError as exc:  # e.g. CUDA out of memory: count it, keep serving
            self._reject("inference_error", f"inference failed: {exc}")
            return
        t2 = time.perf_counter()
        encodings = {"labels": "mono8", "color": "rgb8", "overlay": frame.overlay_encoding, "confidence": "mono8"}
        for name in IMAGE_OUTPUTS:
            if name in wanted:
                self._pubs[name].publish(self._buffers[name].fill(getattr(result, name), encodings[name], msg.header))
        t3 = time.perf_counter()
        index, dropped, rejected = self._count_processed(wanted, (t3 - t0) * 1e3, msg.header, result)
        if "stats" in wanted:
            times = {"decode_ms": (t1 - t0) * 1e3, "publish_ms": (t3 - t2) * 1e3}
            self._publish_stats(msg.header, frame.image, seg, result, times, t0, (index, dropped, rejected))

    def _convert(self, msg: Any) -> Any:
        """The message as a ColorInput, or None when it was rejected (counted and logged by cause)."""
        max_pixels = int(self._values["max_input_pixels"])
        try:
            if isinstance(msg, CompressedImage):
                frame = compressed_to_color_input(msg, max_pixels=max_pixels)
            else:
                frame = to_color_input(msg, max_pixels=max_pixels)
        except ImageConversionError as exc:
            self._reject(exc.cause, str(exc))
            return None
        self._check_header(msg.header)
        return frame

    def _count_processed(self, wanted: tuple[str, ...], total_ms: float, header: Any, result: Any) -> tuple[int, int, int]:
        age_ms = self._age_ms(header.stamp)
        with self.counters.lock:
            c = self.counters
            c.processed += 1
            c.frames_since_activation += 1
            for name in wanted:
                c.computed[name] += 1
            c.timings.append((total_ms, age_ms, result.timings_ms["inference"]))
            return c.frames_since_activation, c.dropped, c.rejected_total

    def _publish_stats(self, header: Any, image: np.ndarray, seg: Segmenter, result: Any, times: dict[str, float],
                       t0: float, counts: tuple[int, int, int]) -> None:
        stats = SegmentationStats(header=header)
        stats.input_height, stats.input_width = image.shape[:2]
        stats.network_width, stats.network_height = seg.input_size
        stats.device, stats.backend, stats.precision = str(seg.device), seg.backend.name, seg.precision
        stats.decode_ms, stats.publish_ms = times["decode_ms"], times["publish_ms"]
        stats.preprocess_ms = result.timings_ms["preprocess"]
        stats.inference_ms = result.timings_ms["inference"]
        stats.postprocess_ms = result.timings_ms["postprocess"]
        stats.frame_index, stats.dropped_total, stats.rejected_total = counts
        n = seg.num_classes
        pixels = cv2.calcHist([result.labels], [0], None, [256], [0, 256]).ravel()[:n]  # 3x faster than bincount
        stats.class_ids = list(range(n))
        stats.class_fraction = (pixels / max(result.labels.size, 1)).astype(np.float32).tolist()
        stats.total_ms = (time.perf_counter() - t0) * 1e3
        stats.age_ms = self._age_ms(header.stamp)
        self._pubs["stats"].publish(stats)

    def _check_header(self, header: Any) -> None:
        """Stamps zero/backwards/duplicated and very long frame_ids: processed, with a warning by cause."""
        stamp = _stamp_ns(header.stamp)
        last, self._last_stamp_ns = self._last_stamp_ns, stamp
        if stamp == 0:
            self._warn("stamp_zero", "frame has a zero stamp: the camera driver does not set header.stamp; "
                                     "outputs copy it unchanged and stats.age_ms is NaN")
        elif last is not None and stamp < last:
            self._warn("stamp_backwards", f"frame stamp went backwards by {(last - stamp) / 1e6:.1f} ms "
                                          f"(camera restart, bag loop or sim time reset?); processing it anyway")
        elif last is not None and stamp == last:
            self._warn("stamp_duplicate", "frame has the same stamp as the previous one; processing it anyway")
        if len(header.frame_id) > FRAME_ID_WARN_CHARS:
            self._warn("frame_id_long", f"frame_id has {len(header.frame_id)} characters; copied unchanged")

    def _age_ms(self, stamp: Any) -> float:
        ns = _stamp_ns(stamp)
        if ns == 0:
            return math.nan
        return (self.get_clock().now().nanoseconds - ns) / 1e6

    def _publish_class_map(self) -> None:
        seg, pub = self._seg, self._pubs.get("class_map")
        if seg is None or pub is None:
            return
        labels = seg.labels
        msg = ClassMap()
        msg.header.stamp = self.get_clock().now().to_msg()
        cfg = self._model_cfg
        msg.model_name = pathlib.Path(cfg.weights).stem if cfg and cfg.weights else "esnet-demo"
        msg.dataset = labels.name
        msg.classes = [ClassInfo(id=i, name=name, r=int(c[0]), g=int(c[1]), b=int(c[2]))
                       for i, (name, c) in enumerate(zip(labels.names, labels.colors))]
        msg.ignore_id = int(labels.ignore_index)
        pub.publish(msg)
        if "label_info" in self._pubs:
            info = LabelInfo()
            info.header = msg.header
            info.class_map = [VisionClass(class_id=i, class_name=name) for i, name in enumerate(labels.names)]
            info.threshold = 0.0
            self._pubs["label_info"].publish(info)

    # -- diagnostics ---------------------------------------------------------------------------------

    def diagnostics_values(self) -> dict[str, str]:
        """The key/values of the /diagnostics status (also handy in tests)."""
        now = time.monotonic()
        with self.counters.lock:
            c = self.counters
            values = {
                "state": self._state,
                "received": c.received,
                "processed": c.processed,
                "dropped": c.dropped,
                "dropped.superseded": c.dropped_superseded,
                "dropped.no_subscriber": c.dropped_no_subscriber,
                "missed_in_transport": c.missed_in_transport,
                "rejected": c.rejected_total,
                **{f"rejected.{k}": v for k, v in c.rejected.items()},
                **{f"warnings.{k}": v for k, v in c.warnings.items()},
                **{f"computed.{k}": v for k, v in c.computed.items()},
            }
            timings = np.array(c.timings, dtype=np.float64) if c.timings else None
            received, processed = c.received, c.processed
        t_prev, r_prev, p_prev = self._diag_prev
        dt = max(now - t_prev, 1e-6)
        values["rate_received_hz"] = f"{(received - r_prev) / dt:.2f}"
        values["rate_processed_hz"] = f"{(processed - p_prev) / dt:.2f}"
        self._diag_prev = (now, received, processed)
        if timings is not None:
            for i, name in enumerate(("latency_ms", "age_ms", "inference_ms")):
                col = timings[:, i][np.isfinite(timings[:, i])]
                if col.size:
                    values[f"{name}.median"] = f"{np.median(col):.2f}"
                    values[f"{name}.p95"] = f"{np.percentile(col, 95):.2f}"
        seg = self._seg
        if seg is not None:
            values.update(device=str(seg.device), backend=seg.backend.name, precision=seg.precision,
                          network_size=f"{seg.input_size[0]}x{seg.input_size[1]}")
        if self._sub is not None:
            values["input_topic"] = self._sub.topic_name
            values["input_reliability"] = _reliability_name(self._sub_reliability)
        if self._last_error:
            values["last_error"] = self._last_error
        return {k: str(v) for k, v in values.items()}

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics_values()
        status = DiagnosticStatus(name=f"{self.get_name()}: segmentation", hardware_id=values.get("device", "none"))
        if self._last_error:
            status.level, status.message = DiagnosticStatus.ERROR, self._last_error[:200]
        elif self._state != "active":
            status.level, status.message = DiagnosticStatus.WARN, f"not active ({self._state})"
        elif int(values["rejected"]) > getattr(self, "_diag_rejected", 0):
            status.level, status.message = DiagnosticStatus.WARN, "rejecting frames (see rejected.*)"
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        self._diag_rejected = int(values["rejected"])
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)


class RosLogHandler(logging.Handler):
    """Forwards the core's Python log records (``esnet_ros.*``) to the node's ROS logger."""

    def __init__(self, node: LifecycleNode) -> None:
        super().__init__(logging.INFO)
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(text)
        else:
            self._logger.info(text)


# -- entry point -------------------------------------------------------------------------------------


def main(args: list[str] | None = None, *, fast_exit: bool = True) -> int:
    """``python -m esnet_ros.ros.node --ros-args -p name:=value``: run until SIGINT/SIGTERM (exit 0).

    After a clean ROS shutdown the process ends with ``os._exit`` (``fast_exit``): the
    interpreter's own teardown of torch takes over a second on a small CPU, which would break the
    promise of a clean exit within 2 s. Pass ``fast_exit=False`` to get the return code instead.
    """
    use_large_message_profile()  # before the first participant: images over shared memory
    try:
        with rclpy.init(args=args):  # installs SIGINT and SIGTERM handlers that end spin()
            node = SegmentationNode()
            core_log = logging.getLogger("esnet_ros")
            core_log.setLevel(logging.INFO)
            core_log.addHandler(RosLogHandler(node))
            core_log.propagate = False
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            try:
                if node.get_parameter("autostart").value and not node.start():
                    node.get_logger().error(
                        "autostart: the node stays unconfigured; fix the parameters, then "
                        "`ros2 lifecycle set /esnet_segmentation configure`")
                try:
                    executor.spin()
                except RCLError:
                    if node.context.ok():
                        raise
                    # SIGINT/SIGTERM shut the context down while the executor built its wait set
                    # (an rclpy race that raises RCLError instead of ExternalShutdownException)
            finally:
                node.stop()
                executor.shutdown(timeout_sec=0.5)
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    if fast_exit:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
