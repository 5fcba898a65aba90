"""Recorded data: rosbag2 recordings (MCAP, sqlite3) segmented offline with the node's recipe.

- :mod:`.reader`: open a bag (or recover a damaged one), topic selection;
- :mod:`.writer`: the output bag (rosbag2 conventions, temporary name, our message definition);
- :mod:`.job`: :class:`BagJob`; :mod:`.session`: what a run opens (:class:`BagSession`);
  :mod:`.pipeline`: ``segment_bag``, the threaded read / segment / write loop (it imports rclpy: import it
  from :mod:`esnet_ros.ros.bag.pipeline`);
- :mod:`.summary`: counters, how the threads ended (:class:`RunOutcome`) and the summary; :mod:`.video`:
  the video file;
- :mod:`.record`: synthetic recordings (``esnet synth --bag``) and (prediction, ground truth) pairs
  for ``esnet evaluate --bag``; :mod:`.bench`: frames/s against the model alone.
"""

from esnet_ros.ros.bag.job import OUTPUT_NAMES, BagJob
from esnet_ros.ros.bag.reader import IMAGE_TYPES, BagInput, TopicInfo, select_image_topic
from esnet_ros.ros.bag.summary import format_summary
from esnet_ros.ros.bag.video import VIDEO_STREAMS
from esnet_ros.ros.bag.writer import OUTPUT_TOPICS, STORAGES, BagOutput

__all__ = [
    "BagJob",
    "OUTPUT_NAMES",
    "OUTPUT_TOPICS",
    "STORAGES",
    "VIDEO_STREAMS",
    "IMAGE_TYPES",
    "BagInput",
    "BagOutput",
    "TopicInfo",
    "select_image_topic",
    "format_summary",
]
