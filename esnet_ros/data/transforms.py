"""Transforms on ``(image uint8 (H,W,3) RGB, label uint8 (H,W))`` pairs, for training and validation.

The last step, :class:`ToTensor`, normalizes with a :class:`~esnet_ros.core.metadata.Normalization`:
the one the checkpoint records (``ModelMeta.normalization``), which the engine and int8
calibration read too, so training and inference cannot disagree.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from esnet_ros.core.metadata import DEFAULT_NORMALIZATION, Normalization

__all__ = [
    "Compose",
    "Resize",
    "RandomHorizontalFlip",
    "RandomTranslate",
    "RandomCrop",
    "ToTensor",
    "train_transforms",
    "eval_transforms",
]


class Compose:
    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image, label):
        for t in self.transforms:
            image, label = t(image, label)
        return image, label


class Resize:
    """To ``(width, height)``: image bilinear, labels nearest (``resize_label=False`` keeps full-res labels)."""

    def __init__(self, size: tuple[int, int], resize_label: bool = True) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.resize_label = resize_label

    def __call__(self, image, label):
        if image.shape[1::-1] != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        if self.resize_label and label.shape[::-1] != self.size:
            label = cv2.resize(label, self.size, interpolation=cv2.INTER_NEAREST)
        return image, label


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image, label):
        if torch.rand(()) < self.p:
            image, label = image[:, ::-1], label[:, ::-1]
        return image, label


class RandomTranslate:
    """Shift by up to ``max_pixels`` in x and y; new image borders are black, new labels ignored."""

    def __init__(self, max_pixels: int = 2, ignore_index: int = 255) -> None:
        self.max_pixels = int(max_pixels)
        self.ignore_index = ignore_index

    def __call__(self, image, label):
        if self.max_pixels <= 0:
            return image, label
        dx, dy = (int(v) for v in torch.randint(-self.max_pixels, self.max_pixels + 1, (2,)))
        if dx == 0 and dy == 0:
            return image, label
        return _shift(image, dx, dy, 0), _shift(label, dx, dy, self.ignore_index)


def _shift(array: np.ndarray, dx: int, dy: int, fill: int) -> np.ndarray:
    out = np.full_like(array, fill)
    h, w = array.shape[:2]
    out[max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = array[max(-dy, 0): h - max(dy, 0), max(-dx, 0): w - max(dx, 0)]
    return out


class RandomCrop:
    """A random ``(width, height)`` window (padded with black / ignore where the input is smaller)."""

    def __init__(self, size: tuple[int, int], ignore_index: int = 255) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.ignore_index = ignore_index

    def __call__(self, image, label):
        w, h = self.size
        ih, iw = label.shape
        if ih < h or iw < w:
            image = _pad(image, h, w, 0)
            label = _pad(label, h, w, self.ignore_index)
            ih, iw = label.shape
        y = int(torch.randint(0, ih - h + 1, ()))
        x = int(torch.randint(0, iw - w + 1, ()))
        return image[y:y + h, x:x + w], label[y:y + h, x:x + w]


def _pad(array: np.ndarray, h: int, w: int, fill: int) -> np.ndarray:
    out = np.full((max(h, array.shape[0]), max(w, array.shape[1])) + array.shape[2:], fill, array.dtype)
    out[: array.shape[0], : array.shape[1]] = array
    return out


class ToTensor:
    """``(3,H,W)`` float normalized by ``normalization`` (a model's :class:`ModelMeta.normalization`;
    pixel/255 in RGB order by default) and ``(H,W)`` int64 targets.  Images come in RGB order."""

    def __init__(self, normalization: Normalization = DEFAULT_NORMALIZATION) -> None:
        if not isinstance(normalization, Normalization):
            raise TypeError(f"ToTensor needs a Normalization (ModelMeta.normalization), got {type(normalization).__name__}")
        self.normalization = normalization

    def __call__(self, image, label):
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        image = self.normalization.apply(pixels, color_order="rgb")
        return image, torch.from_numpy(np.ascontiguousarray(label)).long()


def train_transforms(input_size: tuple[int, int], *, normalization: Normalization = DEFAULT_NORMALIZATION,
                     flip: bool = True, translate: int = 2, ignore_index: int = 255,
                     crop_size: tuple[int, int] | None = None) -> Compose:
    """Resize to the network input, random horizontal flip, small random translation (the paper's recipe).

    ``crop_size`` then trains on random windows of the resized image (same scale, cheaper steps).
    """
    steps: list[Callable] = [Resize(input_size)]
    if crop_size is not None and tuple(crop_size) != tuple(input_size):
        steps.append(RandomCrop(crop_size, ignore_index))
    if flip:
        steps.append(RandomHorizontalFlip())
    if translate:
        steps.append(RandomTranslate(translate, ignore_index))
    return Compose(steps + [ToTensor(normalization)])


def eval_transforms(input_size: tuple[int, int], *, normalization: Normalization = DEFAULT_NORMALIZATION,
                    full_resolution_labels: bool = True) -> Compose:
    """Image resized to the network input; labels kept at full resolution (the Cityscapes benchmark)."""
    return Compose([Resize(input_size, resize_label=not full_resolution_labels), ToTensor(normalization)])
