"""What one ``esnet bag`` run is asked to do (no rclpy here: the CLI builds it before the pipeline loads)."""

from __future__ import annotations

import dataclasses
import pathlib

from esnet_ros.inference.defaults import DEFAULT_UPSAMPLE, MAX_INPUT_PIXELS
from esnet_ros.ros.bag.writer import OUTPUT_TOPICS

__all__ = ["BagJob", "OUTPUT_NAMES"]

OUTPUT_NAMES = tuple(OUTPUT_TOPICS)


@dataclasses.dataclass
class BagJob:
    """What to segment and where to; the engine settings live in the Segmenter passed beside it."""

    input: pathlib.Path
    output: pathlib.Path
    topic: str | None = None
    outputs: tuple[str, ...] = OUTPUT_NAMES
    copy_topics: tuple[str, ...] | None = None  # None: none; ("*",): every topic of the input
    storage: str | None = None  # None: the input's storage
    overwrite: bool = False
    video: pathlib.Path | None = None
    video_stream: str = "overlay"
    video_fps: float | None = None
    max_input_pixels: int = MAX_INPUT_PIXELS
    output_resolution: str = "input"
    overlay_alpha: float = 0.5
    upsample: str = DEFAULT_UPSAMPLE
    progress: bool = True
