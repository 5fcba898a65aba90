"""The node's frame loop on two threads, so that the network of one frame overlaps the outputs of the last.

:class:`FrameWorker` takes the latest frame from a one-slot mailbox (:class:`~esnet_ros.ros.frames.LatestSlot`)
on its worker thread and runs ``start(msg)``: decode, pre-processing and the network
(:meth:`~esnet_ros.ros.frames.FrameProcessor.start`).  ``start`` returns the frame's second half, a
callable that the completion thread runs (the outputs at full size, publishing, counting:
:meth:`~esnet_ros.ros.frames.FrameProcessor.complete`) while the worker already starts the next frame.
One frame is in each half at a time; the worker waits for the completion thread before handing it the
next frame, so outputs are published in camera order and no frame queues up unseen.

Why two threads: on a 2-core robot CPU the network (OpenVINO, both cores) and the full-resolution
outputs plus DDS publishing (NumPy/OpenCV/rclpy, mostly one core) each leave CPU time idle when they
run one after the other. Run side by side, with every output subscribed, the node went from 22 to
27-28.5 frames/s of a 30 Hz camera (bf16; 30 in int8; docs/speed.md).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from esnet_ros.ros.frames import LatestSlot

__all__ = ["FrameWorker", "CompletionThread"]

log = logging.getLogger(__name__)


class CompletionThread:
    """Runs jobs one at a time, in order, on a daemon thread of its own.

    :meth:`submit` waits while more than ``backlog`` jobs are queued or running: with 0 (the node) a
    job is handed over only when the thread is idle, so at most one frame waits beside the network;
    ``esnet bag`` allows a few, so that cheap items (copied topics) never stall the network.
    """

    def __init__(self, name: str, backlog: int = 0) -> None:
        self._name = name
        self._backlog = int(backlog)
        self._cond = threading.Condition()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        with self._cond:
            self._cond.wait_for(lambda: len(self._jobs) + self._busy <= self._backlog)
            self._jobs.append(job)
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no job is queued or running; False when ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                job, self._busy = self._jobs.popleft(), True
            try:
                job()
            except Exception:  # the jobs handle their own errors; this keeps the thread alive regardless
                log.exception("a frame's completion failed")
            finally:
                job = None  # the frame (and the node it closes over) must not outlive its completion
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class FrameWorker:
    """The worker and completion threads of a node (see the module docstring).

    ``start(msg)`` returns the frame's second half, or ``None`` when nothing is left to do (a rejected
    frame). ``max_rate_hz()`` > 0 spaces the starts of frames at most that often.
    """

    def __init__(self, start: Callable[[Any], Callable[[], None] | None], max_rate_hz: Callable[[], float]) -> None:
        self.slot = LatestSlot()
        self._start_frame = start
        self._max_rate_hz = max_rate_hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._completion = CompletionThread("esnet_publish")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Start taking frames (again)."""
        self._stop.clear()
        self.slot.reopen()
        self._thread = threading.Thread(target=self._work, name="esnet_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.5) -> bool:
        """Stop taking frames and let the last one complete (each half at most ``timeout`` s).

        Returns whether a frame was left waiting in the slot (it will never be processed)."""
        self._stop.set()
        self.slot.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)
        self._thread = None
        self.drain(timeout)
        return self.slot.clear()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until the frame in its second half (if any) is done, e.g. before the engine changes."""
        return self._completion.wait(timeout)

    def _work(self) -> None:
        next_start = 0.0
        while not self._stop.is_set():
            rate = float(self._max_rate_hz())
            wait = next_start - time.monotonic()
            if rate > 0 and wait > 0 and self._stop.wait(wait):
                break
            msg = self.slot.take(timeout=0.5)
            if msg is None:
                continue
            started = time.monotonic()
            second_half = self._start_frame(msg)
            if second_half is not None:
                self._completion.submit(second_half)
            next_start = started + 1.0 / rate if rate > 0 else 0.0
