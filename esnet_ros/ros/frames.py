"""One camera frame through the engine: the recipe the node runs, shared with offline tools.

:class:`FrameProcessor` converts a sensor_msgs ``Image``/``CompressedImage`` (:mod:`esnet_ros.ros.images`),
runs the :class:`~esnet_ros.inference.segmenter.Segmenter` with the node's settings
(``output_resolution``, ``overlay_alpha``, ``upsample``) and builds the output messages, each with the
input's header:

=============  ===========================  ========================================
output         message                      content
=============  ===========================  ========================================
``labels``     sensor_msgs/Image ``mono8``  class id per pixel
``color``      sensor_msgs/Image ``rgb8``   the class palette
``overlay``    sensor_msgs/Image            the input blended with the palette, in the
                                            input's color encoding (``rgb8``/``bgr8``)
``confidence`` sensor_msgs/Image ``mono8``  max softmax x 255
``stats``      esnet_ros/SegmentationStats  sizes, stage times, counts, class fractions
=============  ===========================  ========================================

The node and ``esnet bag`` both call :meth:`FrameProcessor.process`, so a bag processed offline
carries exactly the messages the node would have published for the same frames.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage

from esnet_ros.core.labels import LabelSet
from esnet_ros.inference.defaults import MAX_INPUT_PIXELS
from esnet_ros.inference.label_space import LabelSpace
from esnet_ros.inference.segmenter import Inferred, Segmenter
from esnet_ros.msg import ClassInfo, ClassMap, SegmentationStats
from esnet_ros.ros.images import (
    ColorInput,
    ImageConversionError,
    ImagePublisherBuffer,
    compressed_to_color_input,
    to_color_input,
)
from esnet_ros.ros.topics import IMAGE_OUTPUTS, OUTPUTS

try:  # optional: the Nav2 semantic_segmentation_layer contract
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:
    LabelInfo = VisionClass = None

__all__ = [
    "IMAGE_OUTPUTS",
    "OUTPUTS",
    "FrameProcessor",
    "PendingFrame",
    "FrameResult",
    "InferenceError",
    "LabelInfo",
    "LatestSlot",
    "class_map_messages",
    "ImageConversionError",
    "segmenter_outputs",
    "stamp_ns",
]

#: encodings of the image outputs; the overlay's follows the input (``ColorInput.overlay_encoding``)
FIXED_ENCODINGS = {"labels": "mono8", "color": "rgb8", "confidence": "mono8"}

Publish = Callable[[str, Any], None]


class InferenceError(RuntimeError):
    """The engine failed on a frame (e.g. CUDA out of memory); ``cause`` is ``"inference_error"``."""

    cause = "inference_error"


@dataclasses.dataclass
class FrameResult:
    """What :meth:`FrameProcessor.process` produced for one frame.

    ``messages``: output name -> message, in :data:`OUTPUTS` order, only the wanted ones.
    ``timings_ms``: ``decode``, ``preprocess``, ``inference``, ``postprocess``, ``publish``, ``total``.
    ``input_size``: the camera frame's ``(width, height)``. ``labels``: the ``(H,W) uint8`` class ids (in the
    processor's label space); ``confidence``: their ``(H,W) uint8`` confidence when it was computed.
    """

    messages: dict[str, Any]
    timings_ms: dict[str, float]
    input_size: tuple[int, int]
    labels: np.ndarray
    confidence: np.ndarray | None = None


@dataclasses.dataclass
class PendingFrame:
    """A frame between :meth:`FrameProcessor.start` and :meth:`FrameProcessor.complete`."""

    msg: Any
    wanted: tuple[str, ...]
    counts: tuple[int, int, int]
    frame: ColorInput
    inferred: Inferred
    decode_ms: float
    work_ms: float  # decode, pre-processing and the network


def segmenter_outputs(wanted: tuple[str, ...], confidence: bool = False) -> tuple[str, ...]:
    """Labels always (stats and every other output derive from them), plus the wanted images (and the
    confidence when ``confidence``: the 3D outputs carry it)."""
    extra = ("confidence",) if confidence and "confidence" not in wanted else ()
    return ("labels",) + tuple(o for o in wanted if o in IMAGE_OUTPUTS and o != "labels") + extra


def stamp_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` in integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


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


def class_map_messages(
    labels: LabelSet, model_name: str, stamp: Any, space: LabelSpace | None = None
) -> tuple[Any, Any]:
    """The ``esnet/class_map`` message, and ``esnet/label_info``'s (None without vision_msgs): the model's
    classes, or those of the label ``space`` it is published in (a class remap)."""
    table = space.classes if space is not None else None
    ids = table.ids if table else tuple(range(labels.num_classes))
    names, colors = (table.names, table.colors) if table else (labels.names, labels.colors)
    msg = ClassMap()
    msg.header.stamp = stamp
    msg.model_name = model_name
    msg.dataset = labels.name if table is None or not table.path else f"{labels.name} remapped by {table.path}"
    msg.classes = [
        ClassInfo(id=int(i), name=name, r=int(c[0]), g=int(c[1]), b=int(c[2]))
        for i, name, c in zip(ids, names, colors, strict=True)
    ]
    msg.ignore_id = int(space.unknown_label if space is not None else labels.ignore_index)
    if LabelInfo is None:
        return msg, None
    info = LabelInfo()
    info.header = msg.header
    info.class_map = [VisionClass(class_id=int(i), class_name=name) for i, name in zip(ids, names, strict=True)]
    info.threshold = 0.0
    return msg, info


class FrameProcessor:
    """Convert -> segment -> build messages, for one frame at a time (see the module docstring).

    ``segmenter``: the engine. ``max_input_pixels``: larger frames are refused (cause ``too_large``)
    before any decoding. ``output_resolution`` (``input``/``network``), ``overlay_alpha`` (0..1) and
    ``upsample`` (``nearest``/``bilinear``) go to the engine call. ``clock_ns`` gives "now" for
    ``stats.age_ms`` (NaN without it, or for a zero stamp). ``buffers``: one
    :class:`~esnet_ros.ros.images.ImagePublisherBuffer` per image output, reused between frames
    (one copy per output, no allocation); a processor without them makes its own. Either way an
    Image message stays valid only until the next :meth:`process` (or :meth:`complete`) call:
    publish or serialize it first.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        *,
        max_input_pixels: int,
        output_resolution: str,
        overlay_alpha: float,
        upsample: str,
        clock_ns: Callable[[], int] | None = None,
        buffers: dict[str, ImagePublisherBuffer] | None = None,
        label_space: LabelSpace | None = None,
        confidence: bool = False,
    ) -> None:
        if int(max_input_pixels) < 1:
            raise ValueError(f"max_input_pixels={max_input_pixels} must be at least 1; e.g. {MAX_INPUT_PIXELS} (8K)")
        self.segmenter = segmenter
        self.max_input_pixels = int(max_input_pixels)
        self.output_resolution = output_resolution
        self.overlay_alpha = float(overlay_alpha)
        self.upsample = upsample
        self.clock_ns = clock_ns
        self.buffers = buffers if buffers is not None else {name: ImagePublisherBuffer() for name in IMAGE_OUTPUTS}
        self.label_space = label_space
        self.confidence = confidence  # computed even when not published (the 3D outputs carry it)

    def convert(self, msg: Any) -> ColorInput:
        """The message as the engine's input; raises :class:`ImageConversionError` (with ``.cause``)."""
        if isinstance(msg, CompressedImage):
            return compressed_to_color_input(msg, max_pixels=self.max_input_pixels)
        return to_color_input(msg, max_pixels=self.max_input_pixels)

    def process(
        self,
        msg: Any,
        wanted: tuple[str, ...] = OUTPUTS,
        counts: tuple[int, int, int] = (0, 0, 0),
        *,
        publish: Publish | None = None,
    ) -> FrameResult:
        """Run one frame and build the ``wanted`` outputs' messages, each with ``msg.header``.

        ``counts``: ``(frame_index, dropped_total, rejected_total)`` for the stats message.
        ``publish(name, message)``, when given, is called for each message as soon as it is built:
        the labels as soon as the engine has them (before it computes the other images), then the
        other images, then the stats (whose ``publish_ms``/``total_ms`` include that work).
        Raises :class:`ImageConversionError` for a frame that cannot be read and
        :class:`InferenceError` when the engine fails; nothing is built or published then.

        The same as ``complete(start(msg, wanted, counts), publish)``: a pipeline may :meth:`start`
        the next frame (decode, network) while another thread completes this one.
        """
        return self.complete(self.start(msg, wanted, counts), publish=publish)

    def start(
        self, msg: Any, wanted: tuple[str, ...] = OUTPUTS, counts: tuple[int, int, int] = (0, 0, 0)
    ) -> PendingFrame:
        """The first half of :meth:`process`: convert the message and run the network (raises as it does)."""
        unknown = [o for o in wanted if o not in OUTPUTS]
        if unknown:
            raise ValueError(f"outputs {unknown} unknown; choose from: {', '.join(OUTPUTS)}")
        t0 = time.perf_counter()
        frame = self.convert(msg)
        t1 = time.perf_counter()
        try:
            inferred = self.segmenter.infer(
                frame.image,
                color_order=frame.color_order,
                outputs=segmenter_outputs(wanted, self.confidence),
                resolution=self.output_resolution,
                alpha=self.overlay_alpha,
                upsample=self.upsample,
                label_space=self.label_space,
            )
        except RuntimeError as exc:  # e.g. CUDA out of memory: the caller counts it and keeps serving
            raise InferenceError(f"inference failed: {exc}") from exc
        return PendingFrame(
            msg, tuple(wanted), counts, frame, inferred, (t1 - t0) * 1e3, (time.perf_counter() - t0) * 1e3
        )

    def complete(self, pending: PendingFrame, publish: Publish | None = None) -> FrameResult:
        """The second half of :meth:`process`: the outputs at their size, their messages, published as built."""
        t0 = time.perf_counter()
        msg, wanted, frame = pending.msg, pending.wanted, pending.frame
        messages: dict[str, Any] = {}
        early_ms = [0.0]

        def publish_labels(labels: np.ndarray) -> None:  # while the engine still computes the rest
            t = time.perf_counter()
            messages["labels"] = self.buffers["labels"].fill(labels, FIXED_ENCODINGS["labels"], msg.header)
            publish("labels", messages["labels"])
            early_ms[0] = (time.perf_counter() - t) * 1e3

        try:
            result = self.segmenter.finish(
                pending.inferred,
                out=self._message_arrays(wanted, frame.image.shape[:2]),
                on_labels=publish_labels if publish is not None and "labels" in wanted else None,
            )
        except RuntimeError as exc:
            raise InferenceError(f"inference failed: {exc}") from exc
        t2 = time.perf_counter()
        for name in IMAGE_OUTPUTS:
            if name in wanted and name not in messages:
                encoding = FIXED_ENCODINGS.get(name, frame.overlay_encoding)
                messages[name] = self.buffers[name].fill(getattr(result, name), encoding, msg.header)
                if publish is not None:
                    publish(name, messages[name])
        t3 = time.perf_counter()
        timings = {"decode": pending.decode_ms, **result.timings_ms, "publish": (t3 - t2) * 1e3 + early_ms[0]}
        timings["postprocess"] -= early_ms[0]  # the labels' publishing happened within the engine call
        height, width = frame.image.shape[:2]
        work_before = pending.work_ms  # the first half's time: a wait between the halves is not work
        if "stats" in wanted:
            messages["stats"] = self._stats(msg.header, (width, height), result.labels, timings, pending.counts)
            messages["stats"].total_ms = work_before + (time.perf_counter() - t0) * 1e3
            if publish is not None:
                publish("stats", messages["stats"])
        timings["total"] = work_before + (time.perf_counter() - t0) * 1e3
        return FrameResult(messages, timings, (width, height), result.labels, result.confidence)

    def _message_arrays(self, wanted: tuple[str, ...], input_hw: tuple[int, int]) -> dict[str, np.ndarray]:
        """The wanted images' message buffers as arrays, for the engine to compute into (no copy to publish)."""
        hw = input_hw if self.output_resolution == "input" else self.segmenter.input_size[::-1]
        return {
            name: self.buffers[name].array(tuple(hw) + ((3,) if name in ("color", "overlay") else ()))
            for name in IMAGE_OUTPUTS
            if name in wanted
        }

    def age_ms(self, stamp: Any) -> float:
        """Milliseconds from ``stamp`` to now (``clock_ns``); NaN for a zero stamp or without a clock."""
        ns = stamp_ns(stamp)
        if ns == 0 or self.clock_ns is None:
            return math.nan
        return (self.clock_ns() - ns) / 1e6

    def _stats(
        self,
        header: Any,
        input_size: tuple[int, int],
        labels: np.ndarray,
        timings: dict[str, float],
        counts: tuple[int, int, int],
    ) -> Any:
        seg = self.segmenter
        stats = SegmentationStats(header=header)
        stats.input_width, stats.input_height = input_size
        stats.network_width, stats.network_height = seg.input_size
        stats.device, stats.backend, stats.precision = str(seg.device), seg.backend.name, seg.precision
        stats.decode_ms, stats.publish_ms = timings["decode"], timings["publish"]
        stats.preprocess_ms = timings["preprocess"]
        stats.inference_ms = timings["inference"]
        stats.postprocess_ms = timings["postprocess"]
        stats.frame_index, stats.dropped_total, stats.rejected_total = counts
        pixels = cv2.calcHist([labels], [0], None, [256], [0, 256]).ravel()  # 3x faster than bincount
        space = self.label_space
        ids = list(range(seg.num_classes)) if space is None else [*space.classes.ids, space.unknown_label]
        stats.class_ids = ids
        stats.class_fraction = (pixels[ids] / max(labels.size, 1)).astype(np.float32).tolist()
        stats.age_ms = self.age_ms(header.stamp)
        return stats
