"""Image files on disk: which suffixes the tools read, and reading one as uint8 BGR (OpenCV only)."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "read_bgr"]

#: the image files that datasets, ``esnet predict`` and int8 calibration read
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_bgr(path: str | pathlib.Path) -> np.ndarray:
    """An image file as ``(H,W,3) uint8`` BGR (``FileNotFoundError`` naming the file otherwise)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}; is it a PNG/JPEG file?")
    return bgr
