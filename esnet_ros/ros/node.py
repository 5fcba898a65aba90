"""The segmentation node: camera in; labels, color mask, overlay, confidence, stats out.

Thin ROS 2 glue over :class:`esnet_ros.inference.segmenter.Segmenter` (see docs/node.md for every topic,
parameter and QoS decision). In short:

- A lifecycle node ``esnet_segmentation`` that configures (loads the model) and activates itself
  unless ``autostart:=false``; deactivate frees GPU memory, cleanup drops the model.
- **Latest frame only**: the subscription callback only counts the frame and puts it in a
  one-slot mailbox (a waiting frame it replaces is counted as dropped); a worker thread takes it
  and runs :class:`esnet_ros.ros.frames.FrameProcessor` (convert, network), and a completion thread
  the outputs, publishing and counting, beside the next frame's network (:mod:`esnet_ros.ros.worker`).
  ``received == processed + dropped + rejected`` up to the two frames in flight.
- **Lazy outputs**: an output is computed only while it has a subscriber; with none at all the
  frame is counted (``dropped``, cause ``no_subscriber``) and nothing runs.
- **Input QoS** ``auto`` matches the camera publishers' reliability (:mod:`esnet_ros.ros.qos`).

Parameters: :mod:`esnet_ros.ros.parameters`; counters, /diagnostics: :mod:`esnet_ros.ros.diagnostics`.
Run it with ``python -m esnet_ros.ros --ros-args -p weights:=model.safetensors`` (:mod:`esnet_ros.ros.process`).
"""

from __future__ import annotations

import pathlib
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.exceptions import InvalidHandle
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle import Node as LifecycleNode

from esnet_ros.inference.label_space import LabelSpace
from esnet_ros.inference.segmenter import Segmenter
from esnet_ros.ros.diagnostics import REJECT_CAUSES, WARNING_CAUSES, FrameAccounting, diagnostic_status
from esnet_ros.ros.frames import (
    IMAGE_OUTPUTS,
    OUTPUTS,
    FrameProcessor,
    ImageConversionError,
    InferenceError,
    PendingFrame,
    class_map_messages,
)
from esnet_ros.ros.idle import IdleWatch
from esnet_ros.ros.images import ImagePublisherBuffer
from esnet_ros.ros.node_parameters import LABEL_SPACE_PARAMS, NodeParameters, make_label_space
from esnet_ros.ros.parameters import INPUT_PARAMS, PARAMETERS, ModelConfig, ros_syntax
from esnet_ros.ros.qos import InputSubscription, OutputQosWarnings, create_output_publishers, reliability_name
from esnet_ros.ros.reload import ModelSlot
from esnet_ros.ros.spatial import SPATIAL_PARAMS, SpatialOutputs
from esnet_ros.ros.worker import FrameWorker

__all__ = ["SegmentationNode", "NODE_NAME", "PARAMETERS", "REJECT_CAUSES", "WARNING_CAUSES"]

RCLError = _rclpy.RCLError
NODE_NAME = "esnet_segmentation"
QOS_CHECK_PERIOD_S = 0.5
DIAGNOSTICS_PERIOD_S = 1.0


class SegmentationNode(LifecycleNode):
    """ESNet semantic segmentation of a camera stream (see the module docstring and docs/node.md)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._pubs: dict[str, Any] = {}
        self.model = ModelSlot(self.get_logger(), lambda previous: self.params.revert(previous))
        self.params = NodeParameters(
            self,
            self.model,
            configured=lambda: bool(self._pubs),
            active=lambda: self.lifecycle_state == "active",
            on_change=self._on_change,
        )
        self.accounting = FrameAccounting(self.get_logger())
        self.counters = self.accounting.counters
        self._frames = FrameWorker(self._start_frame, lambda: float(self._values["max_rate_hz"]))
        self._input = InputSubscription(self, lambda: self._values, self._on_image)
        self._output_warnings = OutputQosWarnings(self)
        self.spatial = SpatialOutputs(self, lambda: self._values)
        self._label_space: LabelSpace | None = None
        self._buffers = {name: ImagePublisherBuffer() for name in IMAGE_OUTPUTS}
        self._diag_rejected = 0
        self._idle = IdleWatch(self)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._qos_timer = None

    @property
    def _values(self) -> dict[str, Any]:
        return self.params.values

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def lifecycle_state(self) -> str:
        """The lifecycle's state as its managed entities show it: the lifecycle publishers exist from configure
        to cleanup (or shutdown), and the lifecycle itself activates and deactivates them."""
        labels = self._pubs.get("labels")
        if labels is None:
            return "unconfigured"
        return "active" if labels.is_activated else "inactive"

    def start(self) -> bool:
        """Configure and activate (what ``autostart`` does); False when a transition failed."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if not self.model.load(ModelConfig.from_values(self._values), "configure"):
            return TransitionCallbackReturn.FAILURE
        try:
            self._label_space = make_label_space(self._values, self.model.serving)
        except (OSError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {ros_syntax(exc)}")
            self.model.clear()
            return TransitionCallbackReturn.FAILURE
        self._create_publishers()
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        model = self.model
        if model.serving is None and model.cfg is not None and not model.load(model.cfg, "activate"):
            return TransitionCallbackReturn.FAILURE  # (released by deactivate: rebuilt here)
        result = super().on_activate(state)  # enables the lifecycle publishers
        with self.counters.lock:
            self.counters.frames_since_activation = 0
        self._publish_class_map()
        self._frames.run()
        self.spatial.subscribe()
        self._input.create()
        self._qos_timer = self.create_timer(QOS_CHECK_PERIOD_S, self._check_input_qos)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        self.model.release()  # frees GPU memory; activate rebuilds the model
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_publishers()
        self.model.clear()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        self._destroy_publishers()
        self.model.clear(forget_config=False)
        return super().on_shutdown(state)

    def stop(self) -> None:
        """Stop taking frames and end the worker threads (at most ~3 s); safe to call twice."""
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
            self._qos_timer = None
        self._input.destroy()
        self.spatial.unsubscribe()
        if self._frames.stop():  # the frame that was waiting will never be processed
            with self.counters.lock:
                self.counters.dropped_superseded += 1

    def _on_change(self, changed: set[str], values: dict[str, Any]) -> None:
        """After a parameter change (see :class:`NodeParameters`): re-create what depends on it."""
        self._input.dirty |= bool(changed & set(INPUT_PARAMS))
        self.spatial.dirty |= bool(changed & set(SPATIAL_PARAMS))
        if changed & set(LABEL_SPACE_PARAMS) and self.model.serving is not None:
            self._label_space = make_label_space(values, self.model.serving)  # checked on set
            self._publish_class_map()

    # -- topics --------------------------------------------------------------------------------------

    def _create_publishers(self) -> None:
        if not self._pubs:
            self._pubs = create_output_publishers(
                self, self._values["output_qos.reliability"], self._values["output_qos.depth"], self._output_warnings
            )
            self.spatial.create_publishers(self._pubs["labels"].qos_profile)

    def _destroy_publishers(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self.spatial.destroy_publishers()

    def _check_input_qos(self) -> None:  # timer: follow the topic/QoS parameters and the camera's reliability
        if self.lifecycle_state == "active":
            self._input.check()
            if self.spatial.dirty:
                self.spatial.subscribe()

    def _publish_class_map(self) -> None:
        seg, pub = self.model.serving, self._pubs.get("class_map")
        if seg is None or pub is None:
            return
        cfg = self.model.cfg
        model_name = pathlib.Path(cfg.weights).stem if cfg and cfg.weights else "esnet-demo"
        class_map, label_info = class_map_messages(
            seg.labels, model_name, self.get_clock().now().to_msg(), self._label_space
        )
        pub.publish(class_map)
        if "label_info" in self._pubs:
            self._pubs["label_info"].publish(label_info)

    # -- frames --------------------------------------------------------------------------------------

    @property
    def input_subscription(self) -> Any:
        """The camera subscription (None while inactive)."""
        return self._input.sub

    def subscribed_outputs(self) -> tuple[str, ...]:
        """The 2D outputs that have subscribers now."""
        pubs = self._pubs
        return tuple(name for name in OUTPUTS if name in pubs and pubs[name].get_subscription_count() > 0)

    def _on_image(self, msg: Any, info: dict) -> None:
        """Subscription callback: count, and leave the frame for the worker (replacing a waiting one)."""
        counters = self.counters
        counters.note_sequence(info)
        self.spatial.add_image(msg)
        if not self.subscribed_outputs() and not self.spatial.wanted():
            with counters.lock:
                counters.received += 1
                counters.dropped_no_subscriber += 1
            return
        with counters.lock:
            counters.received += 1
            if self._frames.slot.put(msg):
                counters.dropped_superseded += 1

    def _current_segmenter(self) -> Segmenter | None:
        if self.model.pending is not None:
            self._frames.drain()  # the last frame completes with the engine that started it
            self.model.swap()
            try:
                self._label_space = make_label_space(self._values, self.model.serving)
            except (OSError, ValueError) as exc:  # a remap that does not fit the new model's classes
                self.get_logger().error(f"class_remap does not fit the new model, publishing its own classes: {exc}")
                self._label_space = None
            self._publish_class_map()
        return self.model.serving

    def _processor(self, seg: Segmenter) -> FrameProcessor:
        values = self._values
        return FrameProcessor(
            seg,
            max_input_pixels=int(values["max_input_pixels"]),
            output_resolution=values["output_resolution"],
            overlay_alpha=float(values["overlay_alpha"]),
            upsample=values["upsample"],
            clock_ns=lambda: self.get_clock().now().nanoseconds,
            buffers=self._buffers,
            label_space=self._label_space,
            confidence=bool(self.spatial.wanted()),
        )

    def _start_frame(self, msg: Any) -> Any:
        """Worker thread: convert and run the network; returns the frame's second half (None: nothing left)."""
        try:
            return self._begin_frame(msg)
        except (RCLError, InvalidHandle) as exc:  # rcl calls: subscriber counts, a new engine's class map
            return self._publishing_failed(exc)

    def _begin_frame(self, msg: Any) -> Any:
        seg = self._current_segmenter()
        wanted, spatial = self.subscribed_outputs(), self.spatial.wanted()
        if seg is None or not (wanted or spatial):  # the last subscriber left while the frame waited
            with self.counters.lock:
                self.counters.dropped_no_subscriber += 1
            return None
        processor = self._processor(seg)
        try:
            pending = processor.start(msg, wanted, self.counters.next_counts())
        except (ImageConversionError, InferenceError) as exc:
            self.accounting.reject(exc.cause, str(exc))
            return None
        return lambda: self._complete_frame(processor, pending, spatial)

    def _complete_frame(self, processor: FrameProcessor, pending: PendingFrame, spatial: tuple[str, ...] = ()) -> None:
        """Completion thread: the outputs at full size, published as they are built (the 3D ones last), counted."""
        msg = pending.msg
        try:
            result = processor.complete(pending, publish=lambda name, out: self._pubs[name].publish(out))
            if spatial:
                space = processor.label_space
                palette = space.palette if space is not None else processor.segmenter.labels.palette()
                self.spatial.publish(
                    msg.header, spatial, result.labels, result.confidence, palette, pending.frame.image.shape[:2]
                )
        except InferenceError as exc:
            self.accounting.reject(exc.cause, str(exc))
            return
        except (RCLError, InvalidHandle) as exc:
            return self._publishing_failed(exc)
        self.accounting.check_header(msg.header)
        self.counters.count_processed(
            pending.wanted,
            result.timings_ms["total"],
            processor.age_ms(msg.header.stamp),
            result.timings_ms["inference"],
        )

    def _publishing_failed(self, exc: Exception) -> None:
        if not self._frames.stopping and self.context.ok():  # else SIGINT/SIGTERM ended the context: quiet
            self.get_logger().error(f"publishing failed: {exc}")

    # -- diagnostics ---------------------------------------------------------------------------------

    def diagnostics_values(self) -> dict[str, str]:
        """The key/values of the /diagnostics status (also handy in tests)."""
        values: dict[str, Any] = {"state": self.lifecycle_state, **self.accounting.values()}
        seg = self.model.serving
        if seg is not None:
            values.update(
                device=str(seg.device),
                backend=seg.backend.name,
                precision=seg.precision,
                precision_reason=seg.precision_reason,
                network_size=f"{seg.input_size[0]}x{seg.input_size[1]}",
            )
        if self._input.sub is not None:
            values["input_topic"] = self._input.sub.topic_name
            values["input_reliability"] = reliability_name(self._input.reliability)
        if self.model.last_error:
            values["last_error"] = self.model.last_error
        values.update(self.spatial.diagnostics_values())
        if self._idle.reason:
            values["idle_reason"] = self._idle.reason
        return {k: str(v) for k, v in values.items()}

    def _publish_diagnostics(self) -> None:
        if self.lifecycle_state == "active":
            with self.counters.lock:
                received, published = self.counters.received, sum(self.counters.computed.values())
            self._idle.update(
                received,
                published + sum(self.spatial.published.values()),
                bool(self.spatial.wanted()),
                self.spatial.last_problem,
            )
        values = self.diagnostics_values()
        array = diagnostic_status(self.get_name(), values, values["state"], self.model.last_error, self._diag_rejected)
        self._diag_rejected = int(values["rejected"])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)
