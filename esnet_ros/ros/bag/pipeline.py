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

import contextlib
import dataclasses
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from tqdm import tqdm

from esnet_ros.ros.bag.job import OUTPUT_NAMES, BagJob
from esnet_ros.ros.bag.reader import BagInput, TopicInfo, select_image_topic
from esnet_ros.ros.bag.session import BagSession, copy_list, open_output, open_video
from esnet_ros.ros.bag.summary import RunCounters, RunOutcome, summarize
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


# What the queues carry: the reader puts _Frame, _Copy and _Reject (then None at the end); the frame loop
# passes each _Copy on to the writer and turns each frame into _Outputs (then None).


@dataclasses.dataclass(frozen=True)
class _Frame:
    """An image message of the input, decoded."""

    log_time: int
    msg: Any  # sensor_msgs Image or CompressedImage


@dataclasses.dataclass(frozen=True)
class _Copy:
    """A message of a copied topic, written to the output as it was read."""

    topic: str
    log_time: int
    data: bytes | memoryview


@dataclasses.dataclass(frozen=True)
class _Reject:
    """An image message the reader could not decode, counted by its cause like the node's rejections."""

    cause: str
    text: str


@dataclasses.dataclass(frozen=True)
class _VideoFrame:
    """What the video's frame is composed of (the outputs as BGR arrays of their own)."""

    source: Any  # the input message (side_by_side shows it)
    overlay: np.ndarray | None
    color: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class _Outputs:
    """One frame's output messages, serialized, with the input's log time (and its video frame)."""

    log_time: int
    serialized: dict[str, bytes]
    video: _VideoFrame | None


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


def _reader(bag: BagInput, image: TopicInfo, copies: set[str], q_in: queue.Queue, stop: _Stop) -> None:
    """Thread: input messages -> :class:`_Frame` / :class:`_Copy` / :class:`_Reject`, then ``None``."""
    msg_type = _MESSAGE_TYPES[image.msgtype]
    try:
        for topic, timestamp, raw in bag.messages({image.name} | copies):
            if stop.event.is_set():
                break
            if topic in copies and not _put(q_in, _Copy(topic, timestamp, raw), stop):
                break
            if topic != image.name:
                continue
            try:
                item = _Frame(timestamp, deserialize_message(raw, msg_type))
            except Exception as exc:
                item = _Reject("cdr_corrupt", f"the message is not a valid {image.msgtype} ({exc})")
            if not _put(q_in, item, stop):
                break
    except BaseException as exc:  # an unexpected failure reaches the caller through stop.error
        stop.fail(exc)
    finally:
        _put_end(q_in, stop)


def _put_end(q_in: queue.Queue, stop: _Stop) -> None:
    """The end marker always goes in, even when the queue is full and nobody reads it."""
    while True:
        try:
            q_in.put(None, timeout=_POLL_S)
            return
        except queue.Full:
            if stop.event.is_set():
                with contextlib.suppress(queue.Empty):
                    q_in.get_nowait()


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
                if isinstance(item, _Copy):
                    self.out.write(item.topic, item.log_time, item.data)
                    continue
                t0 = time.perf_counter()
                for name, data in item.serialized.items():
                    self.out.write(OUTPUT_TOPICS[name].topic, item.log_time, data)
                if self.video is not None:
                    self._video_frame(item.video)
                self.counters.written(1e3 * (time.perf_counter() - t0))
            self.out.finish()
        except BaseException as exc:  # e.g. a full disk: stop everything, the caller reports it
            self.stop.fail(exc)
            self.out.abort()
            while self.queue.get() is not None:  # drain so that the producer never blocks
                pass

    def _video_frame(self, frame: _VideoFrame) -> None:
        image = _input_bgr(frame.source) if self.video.stream == "side_by_side" else None
        self.video.write(self.video.compose(image, frame.overlay, frame.color))

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()


@dataclasses.dataclass(frozen=True)
class _FrameLoop:
    """The caller's thread: convert + the network (:meth:`FrameProcessor.start`) of each frame, while a
    completion thread builds the previous frames' output messages (:meth:`FrameProcessor.complete`) and
    hands them to the writer, in order, until the end or a stop."""

    processor: FrameProcessor
    wanted: tuple[str, ...]  # the outputs to build
    writer: _WriterStage
    counters: RunCounters
    stop: _Stop
    tick: Callable[[], None]  # one frame done (processed or rejected): the progress bar

    def run(self, q_in: queue.Queue) -> None:
        completion = CompletionThread("esnet-bag-outputs", backlog=_QUEUE_FRAMES)
        started = rejected = 0  # counted here, so that each frame's stats carry what a serial run gives
        try:
            while (item := self._next(q_in)) is not None:
                if isinstance(item, _Copy):
                    completion.submit(self._guarded(lambda item=item: _put(self.writer.queue, item, self.stop)))
                    continue
                if isinstance(item, _Reject):
                    rejected += 1
                    completion.submit(self._guarded(lambda item=item: self._reject(item.cause, item.text)))
                    continue
                try:
                    pending = self.processor.start(item.msg, self.wanted, (started + 1, 0, rejected))
                except (ImageConversionError, InferenceError) as exc:
                    rejected += 1
                    completion.submit(self._guarded(lambda exc=exc: self._reject(exc.cause, str(exc))))
                    continue
                started += 1
                completion.submit(self._guarded(lambda p=pending, t=item.log_time: self._complete(p, t)))
        finally:
            completion.wait()

    def _next(self, q_in: queue.Queue) -> _Frame | _Copy | _Reject | None:
        """The reader's next item; ``None`` at its end or once stopped."""
        while True:
            try:
                item = q_in.get(timeout=_POLL_S)
            except queue.Empty:
                if self.stop.event.is_set():
                    return None
                continue
            return None if self.stop.event.is_set() else item

    def _guarded(self, job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except BaseException as exc:  # reported by segment_bag, like a failure on this thread
                self.stop.fail(exc)

        return run

    def _reject(self, cause: str, text: str) -> None:
        self.counters.reject(cause, text)
        self.tick()

    def _complete(self, pending: PendingFrame, log_time: int) -> None:
        """Completion thread: one frame's output messages, serialized, to the writer."""
        serialized: dict[str, bytes] = {}
        try:
            result = self.processor.complete(
                pending, publish=lambda name, m: serialized.__setitem__(name, serialize_message(m))
            )
        except InferenceError as exc:
            self._reject(exc.cause, str(exc))
            return
        self.counters.processed(result)
        self.tick()
        video = None
        if self.writer.video is not None:
            video = _VideoFrame(
                pending.msg, _as_bgr(result.messages.get("overlay")), _as_bgr(result.messages.get("color"))
            )
        _put(self.writer.queue, _Outputs(log_time, serialized, video), self.stop)


def segment_bag(job: BagJob, segmenter: Any) -> dict[str, Any]:
    """Segment ``job.input`` into ``job.output``; returns the summary (see :func:`summarize`)."""
    unknown = [o for o in job.outputs if o not in OUTPUT_TOPICS]
    if unknown or not job.outputs:
        raise ValueError(f"--outputs {','.join(job.outputs)}: choose from {', '.join(OUTPUT_NAMES)}")
    with BagInput(job.input) as bag:
        image = select_image_topic(bag.topics, job.topic)
        copies = copy_list(job, bag)
        video = open_video(job, bag, image)
        out = open_output(job, bag, copies)
        session = BagSession(job=job, bag=bag, image=image, copies=tuple(copies), out=out, video=video)
        try:
            outcome = _run_threads(session, segmenter)
        except BaseException:
            out.abort()
            raise
        finally:
            if video is not None:
                video.close()
        if outcome.error is not None:
            out.abort()
            raise _failure(job, outcome)
        out.close()
        return summarize(session, outcome, segmenter)


def _failure(job: BagJob, outcome: RunOutcome) -> BaseException:
    error = outcome.error
    if isinstance(error, OSError):
        return ValueError(
            f"writing {job.output} failed after {outcome.counters.frames_written} frames: "
            f"{error.strerror or error}; free space or choose another --output (nothing was left at "
            f"{job.output})"
        )
    return error


def _run_threads(session: BagSession, segmenter: Any) -> RunOutcome:
    job = session.job
    processor = FrameProcessor(
        segmenter,
        max_input_pixels=job.max_input_pixels,
        output_resolution=job.output_resolution,
        overlay_alpha=job.overlay_alpha,
        upsample=job.upsample,
    )
    counters, stop = RunCounters(), _Stop()
    writer = _WriterStage(session.out, session.video, counters, stop)
    q_in: queue.Queue = queue.Queue(maxsize=_QUEUE_FRAMES)
    copy_names = {c.name for c in session.copies if c.name in session.out.counts}
    reader = threading.Thread(
        target=_reader, args=(session.bag, session.image, copy_names, q_in, stop), name="esnet-bag-reader", daemon=True
    )
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, stop.on_sigint) if in_main else None
    bar = tqdm(total=session.image.count, unit="frame", desc="esnet bag", disable=not job.progress, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        writer.thread.start()
        reader.start()
        _FrameLoop(
            processor=processor, wanted=job.outputs, writer=writer, counters=counters, stop=stop, tick=bar.update
        ).run(q_in)
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
    return RunOutcome(counters=counters, seconds=seconds, interrupted=stop.interrupted, error=stop.error)


def _join_reader(reader: threading.Thread, q_in: queue.Queue, stop: _Stop) -> bool:
    """Wait for the reader, emptying its queue so that a blocked put returns."""
    deadline = time.monotonic() + 5.0
    while reader.is_alive() and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            q_in.get(timeout=_POLL_S)
    return not reader.is_alive()
