"""``esnet bag``'s pipeline: every frame of a recording through the node's recipe, into a new recording.

Four threads overlap the work: a reader (storage read + CDR decode of the input messages), the
caller's thread running the first half of :class:`esnet_ros.ros.frames.FrameProcessor` (conversion,
pre-processing, the network), a completion thread running its second half (the outputs at full size
and their messages: the node's recipe and its two threads, so the messages equal what the node
publishes), and a writer (CDR encode + storage write, and the video).  Bounded queues between them
keep memory flat.

Every output message carries the input's header and the input message's log time.  Frames the
node would reject are skipped and counted by the same causes; damage in the input ends the read
after the last good message, and what came before is written.  Ctrl-C (SIGINT) stops the reader
at once, finishes the frames under way and closes the output bag so that it is complete.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from typing import Any, Callable

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from tqdm import tqdm

from esnet_ros.ros.bag.job import OUTPUT_NAMES, BagJob
from esnet_ros.ros.bag.reader import BagInput, TopicInfo, select_image_topic
from esnet_ros.ros.bag.summary import RunCounters, summarize
from esnet_ros.ros.bag.video import VideoSink
from esnet_ros.ros.bag.writer import OUTPUT_TOPICS, BagOutput
from esnet_ros.ros.frames import FrameProcessor, InferenceError, PendingFrame
from esnet_ros.ros.images import ImageConversionError, compressed_to_color_input, image_to_numpy, to_color_input
from esnet_ros.ros.worker import CompletionThread

__all__ = ["segment_bag"]

log = logging.getLogger(__name__)

_QUEUE_FRAMES = 4
_POLL_S = 0.05
_MESSAGE_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}


class _Stop:
    """Set by SIGINT (first Ctrl-C: finish cleanly; a second one: KeyboardInterrupt) or by a failing stage."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.interrupted = False
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.event.set()

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        self.event.set()


def _put(q: queue.Queue, item: Any, stop: _Stop) -> bool:
    """Put unless stopped (a full queue is retried every poll); False when stopped."""
    while not stop.event.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _copy_list(job: BagJob, bag: BagInput, image: TopicInfo) -> list[TopicInfo]:
    if not job.copy_topics:
        return []
    if "*" in job.copy_topics:
        return list(bag.topics.values())
    missing = [t for t in job.copy_topics if t not in bag.topics]
    if missing:
        raise ValueError(f"--copy-topics: {', '.join(missing)} not in the bag; topics: "
                         + "; ".join(t.describe() for t in bag.topics.values()))
    return [bag.topics[t] for t in job.copy_topics]


def _reader(bag: BagInput, image: TopicInfo, copies: set[str], q_in: queue.Queue, stop: _Stop) -> None:
    """Thread: input messages -> ("frame", t, msg) / ("copy", topic, t, raw) / ("reject", cause, text)."""
    msg_type = _MESSAGE_TYPES[image.msgtype]
    try:
        for topic, timestamp, raw in bag.messages({image.name} | copies):
            if stop.event.is_set():
                break
            if topic in copies and not _put(q_in, ("copy", topic, timestamp, raw), stop):
                break
            if topic != image.name:
                continue
            try:
                item = ("frame", timestamp, deserialize_message(raw, msg_type))
            except Exception as exc:  # noqa: BLE001 - rclpy raises bare errors for malformed CDR; counted below
                item = ("reject", "cdr_corrupt", f"the message is not a valid {image.msgtype} ({exc})")
            if not _put(q_in, item, stop):
                break
    except BaseException as exc:  # an unexpected failure reaches the caller through stop.error
        stop.fail(exc)
    finally:
        while True:  # the end marker always goes in, even when the queue is full and nobody reads it
            try:
                q_in.put(None, timeout=_POLL_S)
                return
            except queue.Full:
                if stop.event.is_set():
                    try:
                        q_in.get_nowait()
                    except queue.Empty:
                        pass


def _input_bgr(msg: Any) -> np.ndarray:
    frame = compressed_to_color_input(msg) if isinstance(msg, CompressedImage) else to_color_input(msg)
    return frame.image[..., ::-1] if frame.color_order == "rgb" else frame.image


def _as_bgr(msg: Any) -> np.ndarray | None:
    """An output Image as a BGR array of its own (the processor reuses its buffers for the next frame)."""
    if msg is None:
        return None
    image = image_to_numpy(msg)
    return np.ascontiguousarray(image[..., ::-1] if msg.encoding == "rgb8" else image)


class _WriterStage:
    """Thread: output messages -> CDR -> the output bag (and the video)."""

    def __init__(self, out: BagOutput, video: VideoSink | None, counters: RunCounters, stop: _Stop) -> None:
        self.out, self.video, self.counters, self.stop = out, video, counters, stop
        self.queue: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
        self.thread = threading.Thread(target=self._run, name="esnet-bag-writer", daemon=True)

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                if item[0] == "copy":
                    self.out.write(item[1], item[2], item[3])
                    continue
                _, timestamp, serialized, video_frame = item
                t0 = time.perf_counter()
                for name, data in serialized.items():
                    self.out.write(OUTPUT_TOPICS[name][0], timestamp, data)
                if self.video is not None:
                    self._video_frame(*video_frame)
                self.counters.written(1e3 * (time.perf_counter() - t0))
            self.out.finish()
        except BaseException as exc:  # e.g. a full disk: stop everything, the caller reports it
            self.stop.fail(exc)
            self.out.abort()
            while self.queue.get() is not None:  # drain so that the producer never blocks
                pass

    def _video_frame(self, source: Any, overlay: np.ndarray | None, color: np.ndarray | None) -> None:
        image = _input_bgr(source) if self.video.stream == "side_by_side" else None
        self.video.write(self.video.compose(image, overlay, color))

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()


def _video_fps(job: BagJob, bag: BagInput, image: TopicInfo) -> float:
    return float(job.video_fps) if job.video_fps else _rate(bag.log_times(image.name, 32))


def _rate(times: list[int]) -> float:
    """Frames per second from log times (median interval); 10 when there are too few."""
    if len(times) < 2:
        return 10.0
    step = float(np.median(np.diff(np.asarray(times, dtype=np.int64))))
    return 1e9 / step if step > 0 else 10.0


def _process_frames(q_in: queue.Queue, writer: _WriterStage, processor: FrameProcessor, wanted: tuple[str, ...],
                    counters: RunCounters, stop: _Stop, tick: Callable[[], None]) -> None:
    """The caller's thread: convert + the network (:meth:`FrameProcessor.start`) of each frame, while a
    completion thread builds the previous frames' output messages (:meth:`FrameProcessor.complete`) and
    hands them to the writer, in order, until the end or a stop."""
    completion = CompletionThread("esnet-bag-outputs", backlog=_QUEUE_FRAMES)
    started = rejected = 0  # counted here, so that each frame's stats carry what a serial run gives

    def guarded(job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except BaseException as exc:  # reported by segment_bag, like a failure on this thread
                stop.fail(exc)
        return run

    def reject(cause: str, text: str) -> None:
        counters.reject(cause, text)
        tick()

    try:
        while True:
            try:
                item = q_in.get(timeout=_POLL_S)
            except queue.Empty:
                if stop.event.is_set():
                    return
                continue
            if item is None or stop.event.is_set():
                return
            if item[0] == "copy":
                completion.submit(guarded(lambda item=item: _put(writer.queue, item, stop)))
                continue
            if item[0] == "reject":
                rejected += 1
                completion.submit(guarded(lambda item=item: reject(item[1], item[2])))
                continue
            _, timestamp, msg = item
            try:
                pending = processor.start(msg, wanted, (started + 1, 0, rejected))
            except (ImageConversionError, InferenceError) as exc:
                rejected += 1
                completion.submit(guarded(lambda exc=exc: reject(exc.cause, str(exc))))
                continue
            started += 1
            completion.submit(guarded(lambda p=pending, t=timestamp: _complete_frame(p, t, processor, writer, counters,
                                                                                     stop, tick)))
    finally:
        completion.wait()


def _complete_frame(pending: PendingFrame, timestamp: int, processor: FrameProcessor, writer: _WriterStage,
                    counters: RunCounters, stop: _Stop, tick: Callable[[], None]) -> None:
    """Completion thread: one frame's output messages, serialized, to the writer."""
    serialized: dict[str, bytes] = {}
    try:
        result = processor.complete(pending, publish=lambda name, m: serialized.__setitem__(name, serialize_message(m)))
    except InferenceError as exc:
        counters.reject(exc.cause, str(exc))
        tick()
        return
    counters.processed(result)
    tick()
    video_frame = None
    if writer.video is not None:
        video_frame = (pending.msg, _as_bgr(result.messages.get("overlay")), _as_bgr(result.messages.get("color")))
    _put(writer.queue, ("frame", timestamp, serialized, video_frame), stop)


def _open_output(job: BagJob, bag: BagInput, image: TopicInfo, copies: list[TopicInfo]) -> BagOutput:
    out = BagOutput(job.output, storage=job.storage or bag.storage, overwrite=job.overwrite)
    for name in job.outputs:
        out.add(*OUTPUT_TOPICS[name])
    for info in copies:
        if not out.add(info.name, info.msgtype, info.qos, source=info):
            log.warning("not copying %s: no message definition for %s in the input or in ROS 2 Kilted",
                        info.name, info.msgtype)
    return out


def segment_bag(job: BagJob, segmenter: Any) -> dict[str, Any]:
    """Segment ``job.input`` into ``job.output``; returns the summary (see :func:`summarize`)."""
    unknown = [o for o in job.outputs if o not in OUTPUT_TOPICS]
    if unknown or not job.outputs:
        raise ValueError(f"--outputs {','.join(job.outputs)}: choose from {', '.join(OUTPUT_NAMES)}")
    with BagInput(job.input) as bag:
        image = select_image_topic(bag.topics, job.topic)
        copies = _copy_list(job, bag, image)
        video = VideoSink(job.video, _video_fps(job, bag, image), job.video_stream) if job.video else None
        out = _open_output(job, bag, image, copies)
        try:
            counters, stop, seconds = _run_threads(job, bag, image, copies, out, video, segmenter)
        except BaseException:
            out.abort()
            raise
        finally:
            if video is not None:
                video.close()
        if stop.error is not None:
            out.abort()
            raise _failure(job, stop.error, counters)
        out.close()
        return summarize(job, bag, image, out, video, counters, segmenter, seconds, stop.interrupted)


def _failure(job: BagJob, error: BaseException, counters: RunCounters) -> BaseException:
    if isinstance(error, OSError):
        return ValueError(f"writing {job.output} failed after {counters.frames_written} frames: {error.strerror or error}; "
                          f"free space or choose another --output (nothing was left at {job.output})")
    return error


def _run_threads(job: BagJob, bag: BagInput, image: TopicInfo, copies: list[TopicInfo], out: BagOutput,
                 video: VideoSink | None, segmenter: Any) -> tuple[RunCounters, _Stop, float]:
    processor = FrameProcessor(segmenter, max_input_pixels=job.max_input_pixels, output_resolution=job.output_resolution,
                               overlay_alpha=job.overlay_alpha, upsample=job.upsample)
    counters, stop = RunCounters(), _Stop()
    writer = _WriterStage(out, video, counters, stop)
    q_in: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
    copy_names = {c.name for c in copies if c.name in out.counts}
    reader = threading.Thread(target=_reader, args=(bag, image, copy_names, q_in, stop), name="esnet-bag-reader",
                              daemon=True)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, stop.on_sigint) if in_main else None
    bar = tqdm(total=image.count, unit="frame", desc="esnet bag", disable=not job.progress, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        writer.thread.start()
        reader.start()
        _process_frames(q_in, writer, processor, job.outputs, counters, stop, bar.update)
    finally:
        stop.event.set()  # the reader ends too when the frames stopped early (an error, Ctrl-C)
        reader_done = _join_reader(reader, q_in, stop)
        writer.finish()
        seconds = time.perf_counter() - start
        bar.close()
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if not reader_done:
        log.warning("the reader thread did not stop in time")
    return counters, stop, seconds


def _join_reader(reader: threading.Thread, q_in: queue.Queue, stop: _Stop) -> bool:
    """Wait for the reader, emptying its queue so that a blocked put returns."""
    deadline = time.monotonic() + 5.0
    while reader.is_alive() and time.monotonic() < deadline:
        try:
            q_in.get(timeout=_POLL_S)
        except queue.Empty:
            pass
    return not reader.is_alive()
