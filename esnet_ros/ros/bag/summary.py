"""What a run of ``esnet bag`` did: counters kept while it runs, and the summary (text and JSON) at the end."""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from typing import Any

import numpy as np

from esnet_ros.ros.bag.session import BagSession

__all__ = ["RunCounters", "RunOutcome", "summarize", "format_summary"]

log = logging.getLogger(__name__)

_LOG_EVERY = 100  # a rejection cause is logged on its 1st, 101st, 201st ... occurrence


class RunCounters:
    """Frames processed, written and rejected (by the node's causes), stage timings and class pixel sums.

    Stages: ``decode``, ``preprocess``, ``inference``, ``postprocess`` (the engine), ``build`` (output
    messages + CDR, on the completion thread), ``total`` (the node's recipe for the frame, all of the above)
    and ``write`` (storage and video, on the writer thread).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames_processed = 0
        self.frames_written = 0
        self.rejected: collections.Counter[str] = collections.Counter()
        self.timings: dict[str, list[float]] = collections.defaultdict(list)
        self.class_sums: np.ndarray | None = None

    def reject(self, cause: str, text: str) -> None:
        with self.lock:
            self.rejected[cause] += 1
            n = self.rejected[cause]
        if n % _LOG_EVERY == 1:
            more = f" ({n} so far)" if n > 1 else ""
            log.warning("skipped a frame (%s): %s%s", cause, text, more)

    def processed(self, result: Any) -> None:
        """Count a frame and keep its stage timings and class pixel shares (from its stats, else its labels)."""
        for stage in ("decode", "preprocess", "inference", "postprocess", "publish", "total"):
            if stage in result.timings_ms:
                self.timings["build" if stage == "publish" else stage].append(float(result.timings_ms[stage]))
        stats = result.messages.get("stats")
        if stats is not None:
            fractions = np.asarray(stats.class_fraction, dtype=np.float64)
        else:
            fractions = np.bincount(result.labels.ravel(), minlength=256)[:255] / max(result.labels.size, 1)
        with self.lock:
            self.frames_processed += 1
            if self.class_sums is None or self.class_sums.shape != fractions.shape:
                self.class_sums = np.zeros_like(fractions)
            self.class_sums += fractions

    def written(self, write_ms: float) -> None:
        with self.lock:
            self.frames_written += 1
            self.timings["write"].append(write_ms)


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """How a run's threads ended: what they counted, for how long, and why they stopped early, if they did."""

    counters: RunCounters
    seconds: float  # from the threads' start to the writer's end
    interrupted: bool = False  # Ctrl-C: the frames under way were finished and the bag closed
    error: BaseException | None = None  # the first failure of a stage (the run is aborted)


def _stage_summary(timings: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        stage: {
            "median_ms": round(float(np.median(v)), 3),
            "mean_ms": round(float(np.mean(v)), 3),
            "p90_ms": round(float(np.percentile(v, 90)), 3),
        }
        for stage, v in timings.items()
        if v
    }


def _class_shares(counters: RunCounters, names: list[str]) -> dict[str, float]:
    if counters.class_sums is None or not counters.frames_processed:
        return {}
    shares = counters.class_sums / counters.frames_processed
    return {names[i] if i < len(names) else str(i): round(float(s), 5) for i, s in enumerate(shares) if s > 0}


def summarize(session: BagSession, outcome: RunOutcome, segmenter: Any) -> dict[str, Any]:
    """The run as a JSON-ready dict (``esnet bag --json``)."""
    counters, seconds, image, out, video = outcome.counters, outcome.seconds, session.image, session.out, session.video
    rejected = dict(sorted(counters.rejected.items()))
    return {
        "input": str(session.job.input),
        "output": str(out.path),
        "storage": out.storage,
        "topic": image.name,
        "topic_type": image.msgtype,
        "frames_in_bag": image.count,
        "frames_processed": counters.frames_processed,
        "frames_written": counters.frames_written,
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "interrupted": outcome.interrupted,
        "input_damage": session.bag.damage,
        "seconds": round(seconds, 3),
        "fps": round(counters.frames_written / seconds, 2) if seconds > 0 else 0.0,
        "stage_timings": _stage_summary(counters.timings),
        "class_share": _class_shares(counters, list(segmenter.labels.names)),
        "messages_written": dict(out.counts),
        "engine": {
            "device": str(segmenter.device),
            "backend": segmenter.backend.name,
            "precision": segmenter.precision,
            "network_size": list(segmenter.input_size),
        },
        "video": None
        if video is None
        else {
            "path": str(video.path),
            "codec": video.fourcc,
            "fps": round(video.fps, 3),
            "frames": video.frames,
            "stream": video.stream,
        },
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary for people: a few lines."""
    lines = [
        f"{'interrupted: ' if s['interrupted'] else ''}wrote {s['frames_written']} of {s['frames_in_bag']} frames "
        f"of {s['topic']} to {s['output']} ({s['storage']}) in {s['seconds']:.1f} s, {s['fps']:.1f} frames/s"
    ]
    if s["rejected_total"]:
        causes = ", ".join(f"{cause}: {n}" for cause, n in s["rejected"].items())
        lines.append(f"rejected {s['rejected_total']} frames ({causes})")
    if s["input_damage"]:
        lines.append(f"input damaged: {s['input_damage']}")
    if s["stage_timings"]:
        lines.append(
            "stage medians: " + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in s["stage_timings"].items())
        )
    if s["class_share"]:
        top = sorted(s["class_share"].items(), key=lambda kv: -kv[1])[:8]
        lines.append("class shares: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in top))
    if s["video"]:
        v = s["video"]
        lines.append(f"video: {v['path']} ({v['stream']}, {v['codec']}, {v['fps']:.1f} fps, {v['frames']} frames)")
    return "\n".join(lines)
