"""Real frames for the camera: a folder of images (sorted by name) or a video file, with optional labels.

:func:`load_frames` reads what ``esnet demo --images DIR_OR_VIDEO [--labels DIR]`` replays through the
camera node (:mod:`esnet_ros.tooling.synthetic_camera`, parameter ``images``): ``[(BGR image, labels or
None)]``, resized to ``size`` when one is given (images bilinear, labels nearest). A label file is
``LABELS/<image stem>.png`` (CamVid's ``testannot/`` has exactly these names), single-channel, the
image's size. ROS-free, so it is tested and used without a running graph.
"""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

from esnet_ros.core.image_files import IMAGE_EXTENSIONS, find_images, read_bgr, resize_frame

__all__ = ["VIDEO_EXTENSIONS", "Frame", "load_frames", "is_video", "check_label_folder"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm")
#: a video is read up to this many frames unless told otherwise (each 640x480 frame is ~0.9 MB in memory)
DEFAULT_MAX_VIDEO_FRAMES = 600

Frame = tuple[np.ndarray, "np.ndarray | None"]


def is_video(path: str | pathlib.Path) -> bool:
    return pathlib.Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _resize(image: np.ndarray, label: np.ndarray | None, size: tuple[int, int] | None) -> Frame:
    if size is None or image.shape[1::-1] == tuple(size):
        return image, label
    image = resize_frame(image, size)
    if label is not None:
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    return image, label


def _read_label(path: pathlib.Path, image_path: pathlib.Path, image: np.ndarray) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise FileNotFoundError(
            f"label file {path} for image {image_path} does not exist or is not a PNG; every "
            f"image needs LABELS/<its name>.png (e.g. CamVid's testannot/)"
        )
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(
            f"label file {path} has shape {label.shape} and dtype {label.dtype}; expected a "
            f"single-channel 8-bit PNG of class ids (CamVid's *annot/ files, not a color image)"
        )
    if label.shape != image.shape[:2]:
        raise ValueError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its labels {path} are "
            f"{label.shape[1]}x{label.shape[0]}; they must have the same size"
        )
    return label


def _video_frames(path: pathlib.Path, max_frames: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(
            f"--images {path}: OpenCV cannot open this video (is it a video file? try an .mp4 or .avi, "
            f"or a folder of images)"
        )
    frames = []
    try:
        while len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"--images {path}: the video has no frame OpenCV can decode")
    return frames


def load_frames(
    source: str | pathlib.Path,
    labels_dir: str | pathlib.Path | None = None,
    *,
    size: tuple[int, int] | None = None,
    max_frames: int = 0,
) -> list[Frame]:
    """The frames of a folder (images sorted by path) or a video, each with its labels when ``labels_dir``
    is given (folders only); ``max_frames`` 0: every image, or up to 600 frames of a video."""
    source = pathlib.Path(source)
    if source.is_file() and is_video(source):
        if labels_dir:
            raise ValueError(
                f"--labels {labels_dir} goes with a folder of images, not with the video {source}; "
                f"leave out --labels (a video has no ground truth here)"
            )
        frames = _video_frames(source, max_frames or DEFAULT_MAX_VIDEO_FRAMES)
        return [_resize(frame, None, size) for frame in frames]
    if source.is_file() and source.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"--images {source} is neither a video ({', '.join(VIDEO_EXTENSIONS)}) nor an image "
            f"({', '.join(IMAGE_EXTENSIONS)}); pass a folder of images or a video file"
        )
    _, paths = find_images(source, what="--images")
    if max_frames:
        paths = paths[:max_frames]
    labels = pathlib.Path(labels_dir) if labels_dir else None
    if labels is not None and not labels.is_dir():
        raise FileNotFoundError(
            f"--labels {labels} is not a folder; pass the folder of label PNGs named like the "
            f"images (e.g. CamVid/testannot beside CamVid/test)"
        )
    frames = []
    for path in paths:
        image = read_bgr(path)
        label = _read_label(labels / f"{path.stem}.png", path, image) if labels is not None else None
        frames.append(_resize(image, label, size))
    return frames


def check_label_folder(images: str | pathlib.Path, labels_dir: str | pathlib.Path, labels) -> int:
    """Before a replay is scored: every image has its label file and each holds only the model's class ids
    (``labels``, a :class:`~esnet_ros.core.labels.LabelSet`) or its ignore value. Returns the files checked."""
    from esnet_ros.data.datasets import label_mapping, read_label

    lut, valid = label_mapping(labels, "labelTrainIds")  # ground truth in the model's own ids
    _, paths = find_images(images, what="--images")
    folder = pathlib.Path(labels_dir)
    for path in paths:
        label = folder / f"{path.stem}.png"
        if not label.is_file():
            raise FileNotFoundError(
                f"--labels {folder} has no {label.name} for the image {path}; every image needs "
                f"LABELS/<its name>.png (e.g. CamVid's testannot/ for CamVid's test/)"
            )
        read_label(label, lut, valid, labels)
    return len(paths)
