"""Frame accounting of the segmentation node: counters, throttled logs by cause, the /diagnostics status.

``received == processed + dropped + rejected`` up to the one frame in flight; frames with odd
headers are processed and counted as warnings by cause. Every rejection or warning is logged at
most once per :data:`LOG_THROTTLE_S` per cause, with the number suppressed since.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from esnet_ros.ros.frames import IMAGE_OUTPUTS, stamp_ns
from esnet_ros.ros.images import CAUSES

__all__ = [
    "REJECT_CAUSES",
    "WARNING_CAUSES",
    "Counters",
    "CauseThrottle",
    "FrameAccounting",
    "diagnostic_status",
    "RosLogHandler",
]

#: rejection causes counted in /diagnostics (conversion causes plus a failed inference)
REJECT_CAUSES = CAUSES + ("inference_error",)
#: frames that are processed, but with a warning counted by cause
WARNING_CAUSES = ("stamp_zero", "stamp_backwards", "stamp_duplicate", "frame_id_long")
FRAME_ID_WARN_CHARS = 256
LOG_THROTTLE_S = 5.0


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
        self.rejected = collections.Counter(dict.fromkeys(REJECT_CAUSES, 0))
        self.warnings = collections.Counter(dict.fromkeys(WARNING_CAUSES, 0))
        self.computed = collections.Counter(dict.fromkeys(IMAGE_OUTPUTS + ("stats",), 0))
        self.frames_since_activation = 0
        self.timings = collections.deque(maxlen=300)  # (total_ms, age_ms, inference_ms)

    @property
    def dropped(self) -> int:
        return self.dropped_superseded + self.dropped_no_subscriber

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def note_sequence(self, info: dict) -> None:
        """Count the gap in a publisher's sequence numbers (frames DDS replaced before the callback)."""
        seq, gid = info.get("publication_sequence_number"), info.get("publisher_gid")
        if seq is None or gid is None:
            return
        key = bytes(gid.get("data", b""))
        with self.lock:
            last = self.last_sequence.get(key)
            if last is not None and seq > last + 1:
                self.missed_in_transport += seq - last - 1
            self.last_sequence[key] = seq

    def next_counts(self) -> tuple[int, int, int]:
        """``(frame_index, dropped_total, rejected_total)`` for the frame about to be processed."""
        with self.lock:
            return self.frames_since_activation + 1, self.dropped, self.rejected_total

    def count_processed(self, wanted: tuple[str, ...], total_ms: float, age_ms: float, inference_ms: float) -> None:
        with self.lock:
            self.processed += 1
            self.frames_since_activation += 1
            for name in wanted:
                self.computed[name] += 1
            self.timings.append((total_ms, age_ms, inference_ms))

    def snapshot(self) -> tuple[dict[str, Any], np.ndarray | None]:
        """The counter values for /diagnostics, and the recent (total, age, inference) timings."""
        with self.lock:
            values = {
                "received": self.received,
                "processed": self.processed,
                "dropped": self.dropped,
                "dropped.superseded": self.dropped_superseded,
                "dropped.no_subscriber": self.dropped_no_subscriber,
                "missed_in_transport": self.missed_in_transport,
                "rejected": self.rejected_total,
                **{f"rejected.{k}": v for k, v in self.rejected.items()},
                **{f"warnings.{k}": v for k, v in self.warnings.items()},
                **{f"computed.{k}": v for k, v in self.computed.items()},
            }
            timings = np.array(self.timings, dtype=np.float64) if self.timings else None
        return values, timings


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


class FrameAccounting:
    """Counters, throttled logging by cause, header checks and rates, for one node (``logger``)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.counters = Counters()
        self.throttle = CauseThrottle()
        self.last_stamp_ns: int | None = None
        self._rate_prev = (time.monotonic(), 0, 0)

    def reject(self, cause: str, message: str) -> None:
        with self.counters.lock:
            self.counters.rejected[cause] += 1
        suffix = self.throttle(cause)
        if suffix is not None:
            self.logger.warning(f"rejected a frame ({cause}): {message}{suffix}")

    def warn(self, cause: str, message: str) -> None:
        with self.counters.lock:
            self.counters.warnings[cause] += 1
        suffix = self.throttle(cause)
        if suffix is not None:
            self.logger.warning(f"{message}{suffix}")

    def check_header(self, header: Any) -> None:
        """Stamps zero/backwards/duplicated and very long frame_ids: processed, with a warning by cause."""
        stamp = stamp_ns(header.stamp)
        last, self.last_stamp_ns = self.last_stamp_ns, stamp
        if stamp == 0:
            self.warn(
                "stamp_zero",
                "frame has a zero stamp: the camera driver does not set header.stamp; "
                "outputs copy it unchanged and stats.age_ms is NaN",
            )
        elif last is not None and stamp < last:
            self.warn(
                "stamp_backwards",
                f"frame stamp went backwards by {(last - stamp) / 1e6:.1f} ms "
                f"(camera restart, bag loop or sim time reset?); processing it anyway",
            )
        elif last is not None and stamp == last:
            self.warn("stamp_duplicate", "frame has the same stamp as the previous one; processing it anyway")
        if len(header.frame_id) > FRAME_ID_WARN_CHARS:
            self.warn("frame_id_long", f"frame_id has {len(header.frame_id)} characters; copied unchanged")

    def values(self) -> dict[str, Any]:
        """Counters, rates since the previous call, and medians/p95 of the recent timings."""
        values, timings = self.counters.snapshot()
        now = time.monotonic()
        t_prev, r_prev, p_prev = self._rate_prev
        dt = max(now - t_prev, 1e-6)
        values["rate_received_hz"] = f"{(values['received'] - r_prev) / dt:.2f}"
        values["rate_processed_hz"] = f"{(values['processed'] - p_prev) / dt:.2f}"
        self._rate_prev = (now, values["received"], values["processed"])
        if timings is not None:
            for i, name in enumerate(("latency_ms", "age_ms", "inference_ms")):
                col = timings[:, i][np.isfinite(timings[:, i])]
                if col.size:
                    values[f"{name}.median"] = f"{np.median(col):.2f}"
                    values[f"{name}.p95"] = f"{np.percentile(col, 95):.2f}"
        return values


def diagnostic_status(
    name: str, values: dict[str, str], state: str, last_error: str, rejected_before: int
) -> DiagnosticArray:
    """The node's /diagnostics message (unstamped): ERROR on a failure, WARN when inactive or rejecting."""
    status = DiagnosticStatus(name=f"{name}: segmentation", hardware_id=values.get("device", "none"))
    if last_error:
        status.level, status.message = DiagnosticStatus.ERROR, last_error[:200]
    elif state != "active":
        status.level, status.message = DiagnosticStatus.WARN, f"not active ({state})"
    elif int(values["rejected"]) > rejected_before:
        status.level, status.message = DiagnosticStatus.WARN, "rejecting frames (see rejected.*)"
    elif values.get("idle_reason"):
        status.level, status.message = DiagnosticStatus.WARN, values["idle_reason"][:200]
    else:
        status.level, status.message = DiagnosticStatus.OK, "ok"
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return DiagnosticArray(status=[status])


class RosLogHandler(logging.Handler):
    """Forwards the core's Python log records (``esnet_ros.*``) to a ROS logger."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.INFO)
        self._logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(text)
        else:
            self._logger.info(text)
