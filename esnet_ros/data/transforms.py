"""Transforms on ``(image uint8 HxWx3 RGB, label uint8 HxW)`` pairs, and the pipelines built from a model's metadata.

:func:`train_transforms` and :func:`eval_transforms` take the :class:`~esnet_ros.core.metadata.ModelMeta`
that the checkpoint will carry: its ``input_size``, its class list's ``ignore_index`` and its
:class:`~esnet_ros.core.metadata.Normalization`, the same object the engine
(:class:`esnet_ros.inference.segmenter.Segmenter`) and int8 calibration read, so training and
inference cannot normalize pixels differently.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from esnet_ros.core.metadata import DEFAULT_NORMALIZATION, ModelMeta, Normalization

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
    """RGB ``(H,W,3)`` uint8 -> ``(3,H,W)`` float ``(pixel * scale - mean) / std`` in the model's
    color order; labels -> ``(H,W)`` int64."""

    def __init__(self, normalization: Normalization = DEFAULT_NORMALIZATION) -> None:
        self.normalization = normalization
        gain, bias = normalization.gain_bias()
        self._gain = torch.from_numpy(gain).view(3, 1, 1)
        self._bias = torch.from_numpy(bias).view(3, 1, 1)
        self._bias_zero = not bool(np.any(bias))

    def __call__(self, image, label):
        if self.normalization.color_order == "bgr":
            image = image[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().mul_(self._gain)
        if not self._bias_zero:
            x.add_(self._bias)
        return x, torch.from_numpy(np.ascontiguousarray(label)).long()


def train_transforms(meta: ModelMeta, *, flip: bool = True, translate: int = 2,
                     crop_size: tuple[int, int] | None = None) -> Compose:
    """Resize to ``meta.input_size``, random horizontal flip, small random translation (the paper's
    recipe), normalized as ``meta.normalization``.

    ``crop_size`` then trains on random windows of the resized image (same scale, cheaper steps).
    """
    ignore_index = meta.labels.ignore_index
    steps: list[Callable] = [Resize(meta.input_size)]
    if crop_size is not None and tuple(crop_size) != tuple(meta.input_size):
        steps.append(RandomCrop(crop_size, ignore_index))
    if flip:
        steps.append(RandomHorizontalFlip())
    if translate:
        steps.append(RandomTranslate(translate, ignore_index))
    return Compose(steps + [ToTensor(meta.normalization)])


def eval_transforms(meta: ModelMeta, *, full_resolution_labels: bool = True) -> Compose:
    """Image resized to ``meta.input_size`` and normalized; labels kept at full resolution (the Cityscapes benchmark)."""
    return Compose([Resize(meta.input_size, resize_label=not full_resolution_labels), ToTensor(meta.normalization)])
