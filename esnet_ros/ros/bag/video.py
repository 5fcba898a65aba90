"""The segmentation as a video file (OpenCV's ``VideoWriter``), with a codec that is known to work.

OpenCV builds differ in the encoders they carry (pip's ``opencv-python-headless`` has no H.264), so
:func:`pick_codec` tries the codecs that suit the file's container in order and keeps the first whose
test file (two frames written, then read back) decodes.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile

import cv2
import numpy as np

__all__ = ["VIDEO_STREAMS", "CODECS", "pick_codec", "VideoSink"]

log = logging.getLogger(__name__)

VIDEO_STREAMS = ("overlay", "color", "side_by_side")
#: container suffix -> FourCC codes to try, best first
CODECS = {
    ".mp4": ("avc1", "mp4v"),
    ".m4v": ("avc1", "mp4v"),
    ".mov": ("avc1", "mp4v"),
    ".avi": ("MJPG", "XVID", "mp4v"),
    ".mkv": ("avc1", "XVID", "MJPG"),
}


def _codec_works(fourcc: str, suffix: str) -> bool:
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # a failing probe is expected, not an error
    try:
        return _probe(fourcc, suffix)
    finally:
        cv2.utils.logging.setLogLevel(level)


def _probe(fourcc: str, suffix: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="esnet-video-") as tmp:
        path = str(pathlib.Path(tmp) / f"probe{suffix}")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 32))
        if not writer.isOpened():
            return False
        frame = np.full((32, 64, 3), 128, np.uint8)
        for _ in range(2):
            writer.write(frame)
        writer.release()
        capture = cv2.VideoCapture(path)
        ok, back = capture.read()
        capture.release()
        return bool(ok) and back is not None and back.shape == frame.shape


def pick_codec(path: str | pathlib.Path) -> str:
    """The first FourCC of :data:`CODECS` for ``path``'s suffix that writes a readable file here."""
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in CODECS:
        raise ValueError(f"--video {path}: unknown container {suffix or '(none)'}; use one of: {', '.join(CODECS)}")
    for fourcc in CODECS[suffix]:
        if _codec_works(fourcc, suffix):
            return fourcc
    raise ValueError(
        f"--video {path}: no codec for {suffix} works in this OpenCV build (tried "
        f"{', '.join(CODECS[suffix])}); use a .avi file (MJPG) or leave out --video"
    )


class VideoSink:
    """Writes one BGR frame per call; the size is fixed by the first frame, the codec by :func:`pick_codec`."""

    def __init__(self, path: str | pathlib.Path, fps: float, stream: str = "overlay") -> None:
        if stream not in VIDEO_STREAMS:
            raise ValueError(f"--video-stream {stream!r} must be one of: {', '.join(VIDEO_STREAMS)}")
        if not fps > 0:
            raise ValueError(f"video frame rate {fps} must be > 0; pass --video-fps")
        self.path = pathlib.Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"--video {path}: the folder {self.path.parent} does not exist; create it first")
        self.stream = stream
        self.fps = float(fps)
        self.fourcc = pick_codec(self.path)
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def compose(
        self, image_bgr: np.ndarray, overlay_bgr: np.ndarray | None, color_bgr: np.ndarray | None
    ) -> np.ndarray:
        """The frame of :attr:`stream`: the overlay, the class colors, or the input and overlay side by side."""
        if self.stream == "color":
            return color_bgr
        if self.stream == "overlay":
            return overlay_bgr
        if overlay_bgr.shape[:2] != image_bgr.shape[:2]:  # overlay at network resolution
            overlay_bgr = cv2.resize(overlay_bgr, image_bgr.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        return np.hstack([image_bgr, overlay_bgr])

    def write(self, frame_bgr: np.ndarray) -> None:
        h, w = frame_bgr.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                raise ValueError(f"--video {self.path}: OpenCV cannot open it for writing; choose a writable path")
        elif (w, h) != self._size:  # the camera changed resolution: keep the video's size
            frame_bgr = cv2.resize(frame_bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame_bgr))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
