"""What one ``esnet bag`` run opens before its threads start: the image topic, the topics it copies, the
output bag and the video (no rclpy here: :mod:`.summary` reads it too)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from esnet_ros.ros.bag.job import BagJob
from esnet_ros.ros.bag.reader import BagInput, TopicInfo
from esnet_ros.ros.bag.video import VideoSink
from esnet_ros.ros.bag.writer import OUTPUT_TOPICS, BagOutput

__all__ = ["BagSession", "copy_list", "open_output", "open_video"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BagSession:
    """A job with what it opened: the input and its image topic, the copied topics, the output, the video."""

    job: BagJob
    bag: BagInput
    image: TopicInfo
    copies: tuple[TopicInfo, ...]  # the input topics --copy-topics asks for
    out: BagOutput
    video: VideoSink | None


def copy_list(job: BagJob, bag: BagInput) -> list[TopicInfo]:
    """The input topics ``--copy-topics`` names (``*``: all of them); ``ValueError`` for one not in the bag."""
    if not job.copy_topics:
        return []
    if "*" in job.copy_topics:
        return list(bag.topics.values())
    missing = [t for t in job.copy_topics if t not in bag.topics]
    if missing:
        raise ValueError(
            f"--copy-topics: {', '.join(missing)} not in the bag; topics: "
            + "; ".join(t.describe() for t in bag.topics.values())
        )
    return [bag.topics[t] for t in job.copy_topics]


def open_video(job: BagJob, bag: BagInput, image: TopicInfo) -> VideoSink | None:
    """The video of ``job.video`` at ``--video-fps`` or the recording's frame rate; ``None`` without one."""
    if not job.video:
        return None
    fps = float(job.video_fps) if job.video_fps else _rate(bag.log_times(image.name, 32))
    return VideoSink(job.video, fps, job.video_stream)


def _rate(times: list[int]) -> float:
    """Frames per second from log times (median interval); 10 when there are too few."""
    if len(times) < 2:
        return 10.0
    step = float(np.median(np.diff(np.asarray(times, dtype=np.int64))))
    return 1e9 / step if step > 0 else 10.0


def open_output(job: BagJob, bag: BagInput, copies: list[TopicInfo]) -> BagOutput:
    """The output bag with the node's outputs that ``job`` asks for and the copied topics we can declare."""
    out = BagOutput(job.output, storage=job.storage or bag.storage, overwrite=job.overwrite)
    for name in job.outputs:
        out.add(OUTPUT_TOPICS[name].topic, OUTPUT_TOPICS[name].msgtype)
    for info in copies:
        if not out.add(info.name, info.msgtype, info.qos, source=info):
            log.warning(
                "not copying %s: no message definition for %s in the input or in ROS 2 Kilted", info.name, info.msgtype
            )
    return out
