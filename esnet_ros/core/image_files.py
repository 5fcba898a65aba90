"""Image files on disk: which suffixes the tools read, and reading one as uint8 BGR (OpenCV only)."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "read_bgr", "resize_frame", "calibration_images", "find_images"]

#: the image files that datasets, ``esnet predict`` and int8 calibration read
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_bgr(path: str | pathlib.Path) -> np.ndarray:
    """An image file as ``(H,W,3) uint8`` BGR (``FileNotFoundError`` naming the file otherwise)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}; is it a PNG/JPEG file?")
    return bgr


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` at a camera's resolution ``size`` (W, H), as a camera driver would scale it: area
    averaging when it gets narrower, bilinear otherwise; unchanged when it already has that size."""
    if image.shape[1::-1] == tuple(size):
        return image
    return cv2.resize(
        image, tuple(size), interpolation=cv2.INTER_AREA if size[0] < image.shape[1] else cv2.INTER_LINEAR
    )


def calibration_images(directory: str | pathlib.Path, limit: int) -> list[pathlib.Path]:
    """Up to ``limit`` images under ``directory`` (recursive), spread evenly over the sorted list."""
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration directory {root} does not exist; pass a folder of PNG/JPEG images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and "gtFine" not in p.parts)
    if not files:
        raise FileNotFoundError(f"no .png/.jpg images under {root}; pass a folder of camera-like images")
    if limit < 1:
        raise ValueError(f"calibration image count {limit} must be >= 1")
    idx = np.linspace(0, len(files) - 1, num=min(limit, len(files))).round().astype(int)
    return [files[i] for i in sorted(set(idx.tolist()))]


def find_images(path: str | pathlib.Path, what: str = "images") -> tuple[pathlib.Path, list[pathlib.Path]]:
    """``(root, images)``: the image files under a folder (recursively), or one image file."""
    path = pathlib.Path(path)
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"{what} {path} is not a .png/.jpg/.jpeg image")
        return path.parent, [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} does not exist; pass a folder of .png/.jpg images or one image")
    images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise ValueError(f"{what} {path} holds no .png/.jpg/.jpeg images")
    return path, images
