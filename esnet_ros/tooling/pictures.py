"""The demo's pictures: PNG writing, the ``camera | classes | overlay`` panel and its legend."""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Iterable

import cv2
import numpy as np

from esnet_ros.tooling.harness import DemoError
from esnet_ros.tooling.monitor import message_array

__all__ = ["save_png", "side_by_side", "visible_classes", "record_video", "Video"]


def save_png(path: pathlib.Path, image_bgr: np.ndarray) -> pathlib.Path:
    if not cv2.imwrite(str(path), image_bgr):
        raise DemoError(f"could not write {path}; check that the output folder is writable")
    return path


def side_by_side(
    input_bgr: np.ndarray | None,
    color_bgr: np.ndarray,
    overlay_bgr: np.ndarray,
    labels=None,
    class_ids: Iterable[int] = (),
    panel_width: int = 640,
) -> np.ndarray:
    """``input | classes | overlay`` in one BGR image, each panel ``panel_width`` wide, titled, with a legend."""
    h, w = color_bgr.shape[:2]
    ph = max(1, round(h * panel_width / w))
    panels, titles = [], []
    for img, title in ((input_bgr, "camera"), (color_bgr, "ESNet classes"), (overlay_bgr, "overlay")):
        if img is None:
            continue
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        panels.append(cv2.resize(img, (panel_width, ph), interpolation=cv2.INTER_AREA))
        titles.append(title)
    row = np.concatenate(panels, axis=1)
    bar = np.full((28, row.shape[1], 3), 32, np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(
            bar, title, (i * panel_width + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA
        )
    parts = [bar, row]
    ids = [i for i in class_ids if labels is not None and 0 <= i < labels.num_classes]
    if ids:
        legend = np.full((26, row.shape[1], 3), 32, np.uint8)
        x = 8
        for i in ids:
            r, g, b = labels.colors[i]
            name = labels.names[i]
            (tw, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            if x + 20 + tw > legend.shape[1]:
                break
            cv2.rectangle(legend, (x, 7), (x + 12, 19), (int(b), int(g), int(r)), -1)
            cv2.putText(legend, name, (x + 16, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            x += 28 + tw
        parts.append(legend)
    return np.concatenate(parts, axis=0)


def visible_classes(color_bgr: np.ndarray, labels, min_share: float = 0.002) -> list[int]:
    """Class ids whose palette color covers at least ``min_share`` of a (subsampled) color mask."""
    pixels = color_bgr[::4, ::4].reshape(-1, 3)
    palette = labels.palette()[: labels.num_classes, ::-1]
    shares = [(np.all(pixels == palette[i], axis=-1).mean(), i) for i in range(labels.num_classes)]
    return [i for share, i in shares if share >= min_share]


@dataclasses.dataclass
class Video:
    path: pathlib.Path
    frames: int = 0


def record_video(monitor, path: pathlib.Path, seconds: float, fps: float, labels, children=()) -> Video:
    """``seconds`` of ``camera | classes | overlay`` panels, one per stamp the monitor receives all three of,
    written as an MP4 (``mp4v``) at the camera's rate. The monitor must already keep pictures
    (``subscribe_pictures``); frames that arrive incomplete under load are skipped, not repeated."""
    video, writer, last_stamp = Video(path), None, -1
    end = time.monotonic() + seconds
    legend: list[int] | None = None
    try:
        while time.monotonic() < end:
            monitor.spin(0.05)
            for child in children:
                child.check_alive()
            for stamp, inp, color, overlay in monitor.triples():
                if stamp <= last_stamp:  # written already, or older than what was
                    continue
                last_stamp = stamp
                color_bgr = message_array(color)
                legend = legend if legend is not None else visible_classes(color_bgr, labels)
                panel = side_by_side(message_array(inp), color_bgr, message_array(overlay), labels, legend)
                # video encoders (MPEG-4, H.264) take even sizes only: pad a row/column of the legend's gray
                panel = cv2.copyMakeBorder(
                    panel, 0, panel.shape[0] % 2, 0, panel.shape[1] % 2, cv2.BORDER_CONSTANT, value=(32, 32, 32)
                )
                if writer is None:
                    writer = cv2.VideoWriter(
                        str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (panel.shape[1], panel.shape[0])
                    )
                    if not writer.isOpened():
                        raise DemoError(
                            f"could not open {path} for writing (OpenCV without an MP4 encoder?); "
                            f"pass --video-seconds 0 to skip the video"
                        )
                writer.write(panel)
                video.frames += 1
    finally:
        if writer is not None:
            writer.release()
    return video
