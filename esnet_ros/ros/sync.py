"""Matching the camera image with its depth and camera_info by header stamp, as message_filters does.

:class:`StampSync` takes messages one at a time (``add(index, msg)``, index 0 being the image) and calls
``callback(msg_0, ..., msg_n-1)`` for each set it completes. It subscribes to nothing, so the node feeds it
from its own subscriptions and a test feeds it plain objects with a ``header.stamp`` (``sec``, ``nanosec``).
Two policies, those of message_filters' Python package (``src/message_filters/__init__.py``, ros2/message_filters,
the same on humble and rolling):

- **exact** (``slop_s`` None or 0, ``TimeSynchronizer``): each input keeps up to ``queue_size`` messages by
  stamp (a second message with the same stamp replaces the first; past ``queue_size`` the oldest *stamp*
  goes); whenever a stamp is present on every input, that set is emitted, oldest stamp first.
- **approximate** (``slop_s`` > 0, ``ApproximateTimeSynchronizer``): on each arrival, the new message is
  matched with the other inputs' queued messages within ``slop_s`` of it, nearest first; the first
  combination whose spread (newest minus oldest stamp) is *strictly* below ``slop_s`` is emitted and its
  messages leave their queues. Older queued messages stay until the queue pushes them out. (This is the
  Python policy, not the C++ ``ApproximateTime`` one, which waits for a set it knows to be optimal.)

Where ``message_filters`` imports (``backend="auto"``), its synchronizers do the matching, fed through
``SimpleFilter`` inputs; elsewhere (it is not on PyPI) the equivalent here does. Both keep the same
counters: sets emitted, messages dropped unmatched per input (pushed out of a full queue or replaced), and
the offset of each partner from the image (its queued or recent stamp nearest to the newest image stamp),
for diagnostics such as :meth:`StampSync.unmatched`. The callback runs after the lock is released, on the
thread that called :meth:`add`.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["StampSync", "SyncStats", "stamp_ns", "message_filters_available"]

BACKENDS = ("auto", "message_filters", "builtin")


def stamp_ns(msg: Any) -> int:
    """A message's ``header.stamp`` in integer nanoseconds (a builtin_interfaces Time or an rclpy Time)."""
    stamp = msg.header.stamp
    ns = getattr(stamp, "nanoseconds", None)
    return int(ns) if ns is not None else int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class SyncStats:
    """Counters of a :class:`StampSync`. Per input: ``received == matched + dropped + pending``, where
    ``matched`` is ``emitted`` (each set takes one message of every input). ``offsets_s[i]``: partner ``i``'s
    stamp nearest the newest image stamp, minus that stamp, in seconds (None until both were seen; None for
    the image itself, index 0)."""

    emitted: int
    received: tuple[int, ...]
    dropped: tuple[int, ...]
    pending: tuple[int, ...]
    offsets_s: tuple[float | None, ...]


class _ExactQueues:
    """message_filters.TimeSynchronizer's rule, on ``queues``: one ``{stamp_ns: msg}`` dict per input."""

    def __init__(self, n_inputs: int, queue_size: int, emit: Callable[..., None]) -> None:
        self.queues: list[dict[int, Any]] = [{} for _ in range(n_inputs)]
        self.queue_size = queue_size
        self.emit = emit

    def store(self, index: int, msg: Any) -> int:
        queue, stamp = self.queues[index], stamp_ns(msg)
        queue[stamp] = msg
        while len(queue) > self.queue_size:
            del queue[min(queue)]
        return stamp

    def add(self, index: int, msg: Any) -> None:
        self.store(index, msg)
        for stamp in sorted(set.intersection(*(set(q) for q in self.queues))):
            self.emit(*(q.pop(stamp) for q in self.queues))


class _ApproximateQueues(_ExactQueues):
    """message_filters.ApproximateTimeSynchronizer's rule (Python), with the slop in nanoseconds."""

    def __init__(self, n_inputs: int, queue_size: int, emit: Callable[..., None], slop_s: float) -> None:
        super().__init__(n_inputs, queue_size, emit)
        self.slop_ns = int(slop_s * 1e9)  # as rclpy's Duration(seconds=slop) rounds it

    def add(self, index: int, msg: Any) -> None:
        stamp = self.store(index, msg)
        candidates = []
        for other in self.queues[:index] + self.queues[index + 1 :]:
            near = sorted((s for s in other if abs(s - stamp) <= self.slop_ns), key=lambda s: abs(s - stamp))
            if not near:
                return
            candidates.append(near)
        for combination in itertools.product(*candidates):
            stamps = list(combination)
            stamps.insert(index, stamp)
            if max(stamps) - min(stamps) < self.slop_ns and all(
                s in q for q, s in zip(self.queues, stamps, strict=True)
            ):
                self.emit(*(q.pop(s) for q, s in zip(self.queues, stamps, strict=True)))
                return


class _MessageFiltersQueues:
    """message_filters' own synchronizer, fed through one ``SimpleFilter`` per input."""

    def __init__(self, n_inputs: int, queue_size: int, emit: Callable[..., None], slop_s: float | None) -> None:
        import message_filters

        self.inputs = [message_filters.SimpleFilter() for _ in range(n_inputs)]
        if slop_s is None:
            self.sync = message_filters.TimeSynchronizer(self.inputs, queue_size)
        else:
            self.sync = message_filters.ApproximateTimeSynchronizer(self.inputs, queue_size, slop_s)
        if not isinstance(getattr(self.sync, "queues", None), list):
            raise ImportError("this message_filters keeps no readable 'queues'; the counters need them")
        self.queues = self.sync.queues
        self.sync.registerCallback(emit)

    def add(self, index: int, msg: Any) -> None:
        self.inputs[index].signalMessage(msg)


class StampSync:
    """Sets of ``n_inputs`` messages with matching stamps (module docstring), with counters.

    ``slop_s``: None or 0 for exact stamps, else the approximate policy's slop in seconds. ``queue_size``:
    messages kept per input. ``backend``: ``auto`` (message_filters where it imports, else ours),
    ``message_filters`` or ``builtin``.
    """

    def __init__(
        self,
        n_inputs: int,
        callback: Callable[..., None],
        *,
        slop_s: float | None = None,
        queue_size: int = 10,
        backend: str = "auto",
    ) -> None:
        if n_inputs < 2:
            raise ValueError(f"n_inputs={n_inputs}: a sync needs at least 2 inputs (the image and a partner)")
        if queue_size < 1:
            raise ValueError(f"queue_size={queue_size} must be at least 1")
        if slop_s is not None and not slop_s >= 0:
            raise ValueError(f"slop_s={slop_s} must be >= 0 seconds (0 or None: exact stamps)")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} must be one of {', '.join(BACKENDS)}")
        self.slop_s = slop_s or None
        self.queue_size = queue_size
        self._callback = callback
        self._lock = threading.Lock()
        self._completed: list[tuple[Any, ...]] = []
        self._queues = self._make_queues(n_inputs, backend)
        self.backend = "message_filters" if isinstance(self._queues, _MessageFiltersQueues) else "builtin"
        self._emitted = 0
        self._received = [0] * n_inputs
        self._dropped = [0] * n_inputs
        self._recent = [collections.deque(maxlen=queue_size) for _ in range(n_inputs)]
        self._offsets: list[float | None] = [None] * n_inputs

    def _make_queues(self, n_inputs: int, backend: str) -> Any:
        if backend != "builtin":
            try:
                return _MessageFiltersQueues(n_inputs, self.queue_size, self._collect, self.slop_s)
            except ImportError as exc:
                if backend == "message_filters":
                    raise ImportError(
                        f"backend='message_filters' needs the ROS 2 message_filters package ({exc}); "
                        f"install ros-<distro>-message-filters or use backend='auto'"
                    ) from exc
        if self.slop_s is None:
            return _ExactQueues(n_inputs, self.queue_size, self._collect)
        return _ApproximateQueues(n_inputs, self.queue_size, self._collect, self.slop_s)

    @property
    def n_inputs(self) -> int:
        return len(self._received)

    def _collect(self, *msgs: Any) -> None:
        self._completed.append(msgs)

    def add(self, index: int, msg: Any) -> None:
        """Take one message of input ``index`` (0: the image); calls the callback for each set completed."""
        if not 0 <= index < self.n_inputs:
            raise IndexError(f"index={index}: this sync has inputs 0..{self.n_inputs - 1}")
        stamp = stamp_ns(msg)
        with self._lock:
            before = [list(q.values()) for q in self._queues.queues]
            before[index].append(msg)
            self._queues.add(index, msg)
            completed, self._completed = self._completed, []
            self._count(index, stamp, before, completed)
        for msgs in completed:
            self._callback(*msgs)

    def _count(self, index: int, stamp: int, before: list[list[Any]], completed: list[tuple[Any, ...]]) -> None:
        self._received[index] += 1
        self._emitted += len(completed)
        matched = {id(m) for msgs in completed for m in msgs}
        for i, (queue, held) in enumerate(zip(self._queues.queues, before, strict=True)):
            kept = {id(m) for m in queue.values()}
            self._dropped[i] += sum(1 for m in held if id(m) not in kept and id(m) not in matched)
        self._recent[index].append(stamp)
        if self._recent[0]:
            image = max(self._recent[0])
            for i in range(1, self.n_inputs) if index == 0 else (index,):
                if self._recent[i]:
                    nearest = min(self._recent[i], key=lambda s: abs(s - image))
                    self._offsets[i] = (nearest - image) / 1e9

    @property
    def stats(self) -> SyncStats:
        with self._lock:
            return SyncStats(
                emitted=self._emitted,
                received=tuple(self._received),
                dropped=tuple(self._dropped),
                pending=tuple(len(q) for q in self._queues.queues),
                offsets_s=tuple(self._offsets),
            )

    def unmatched(self, names: Sequence[str], slop_parameter: str = "sync_slop_s") -> list[str]:
        """One sentence per partner whose latest offset from the image is outside the slop (or, exact, not 0),
        and per partner never received while images arrive; ``names[i]`` names input ``i``."""
        if len(names) != self.n_inputs:
            raise ValueError(f"names={list(names)} must name each of the {self.n_inputs} inputs")
        stats = self.stats
        slop = self.slop_s or 0.0
        problems = []
        for i in range(1, self.n_inputs):
            offset = stats.offsets_s[i]
            if stats.received[i] == 0 and stats.received[0]:
                problems.append(f"no {names[i]} received while {stats.received[0]} {names[0]} messages arrived")
            elif offset is not None and (abs(offset) >= slop if self.slop_s else offset != 0):
                when = "never" if stats.emitted == 0 else f"no longer (after {stats.emitted} matched sets)"
                rule = (
                    f"within {slop_parameter}:={slop:g} s of {names[0]}"
                    if self.slop_s
                    else f"stamped exactly as {names[0]} (exact sync, {slop_parameter}:=0.0)"
                )
                problems.append(f"{names[i]} {when} {rule}: last offset {offset:+.3f} s")
        return problems
