"""Transforms on ``(image uint8 (H,W,3) RGB, label uint8 (H,W))`` pairs, for training and validation.

The last step, :class:`ToTensor`, normalizes with a :class:`~esnet_ros.core.metadata.Normalization`:
the one the checkpoint records (``ModelMeta.normalization``), which the engine and int8
calibration read too, so training and inference cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    "RandomScale",
    "PhotometricJitter",
    "RandomBlur",
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
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = array[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
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
        return image[y : y + h, x : x + w], label[y : y + h, x : x + w]


class RandomScale:
    """Resize by a factor drawn uniformly from ``[low, high]`` (image bilinear, labels nearest).

    With :class:`RandomCrop` after it, the network sees objects at other distances than the
    dataset's camera shows them: the usual scale augmentation of real-scene segmentation.
    """

    def __init__(self, low: float, high: float) -> None:
        if not 0 < low <= high:
            raise ValueError(f"scale range [{low}, {high}] needs 0 < low <= high")
        self.low, self.high = float(low), float(high)

    def __call__(self, image, label):
        factor = self.low + (self.high - self.low) * float(torch.rand(()))
        h, w = label.shape
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        if size == (w, h):
            return image, label
        return (
            cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST),
        )


class PhotometricJitter:
    """Brightness, contrast, saturation, hue and gamma, each drawn per image (labels unchanged).

    Real cameras differ in exposure, white balance and tone curve; night frames are dark and
    low-contrast. ``strength`` scales every range (1: brightness x[0.6, 1.4], contrast x[0.6, 1.4],
    saturation x[0.5, 1.5], hue +-10 degrees, gamma [0.6, 1.6]).
    """

    def __init__(self, strength: float = 1.0, p: float = 0.8) -> None:
        self.strength, self.p = float(strength), float(p)

    def _draw(self, spread: float) -> float:
        return 1.0 + self.strength * spread * (2.0 * float(torch.rand(())) - 1.0)

    def __call__(self, image, label):
        if self.strength <= 0 or float(torch.rand(())) >= self.p:
            return image, label
        x = image.astype(np.float32) / 255.0
        x = x * self._draw(0.4)
        mean = x.mean()
        x = (x - mean) * self._draw(0.4) + mean
        gray = x @ np.float32([0.299, 0.587, 0.114])
        x = gray[..., None] + (x - gray[..., None]) * self._draw(0.5)
        x = np.clip(x, 0.0, 1.0)
        gamma = float(np.exp(self.strength * np.log(1.6) * (2.0 * float(torch.rand(())) - 1.0)))
        x = x**gamma
        out = (x * 255.0 + 0.5).astype(np.uint8)
        shift = round(self.strength * 5 * (2.0 * float(torch.rand(())) - 1.0))  # OpenCV hue: 0..179, 2 deg/step
        if shift:
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return out, label


class RandomBlur:
    """With probability ``p``: Gaussian blur (defocus, motion), sensor noise, or JPEG at quality 40..90.

    One of the three per image; labels unchanged. What a robot's camera, its compression and its
    speed do to frames that CamVid's did not.
    """

    def __init__(self, p: float = 0.3) -> None:
        self.p = float(p)

    def __call__(self, image, label):
        if float(torch.rand(())) >= self.p:
            return image, label
        kind = int(torch.randint(0, 3, ()))
        if kind == 0:
            sigma = 0.3 + 1.2 * float(torch.rand(()))
            return cv2.GaussianBlur(image, (0, 0), sigma), label
        if kind == 1:
            sigma = 2.0 + 8.0 * float(torch.rand(()))
            noise = torch.randn(image.shape).numpy() * sigma
            return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8), label
        quality = int(torch.randint(40, 91, ()))
        _ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1], label


def _pad(array: np.ndarray, h: int, w: int, fill: int) -> np.ndarray:
    out = np.full((max(h, array.shape[0]), max(w, array.shape[1])) + array.shape[2:], fill, array.dtype)
    out[: array.shape[0], : array.shape[1]] = array
    return out


class ToTensor:
    """``(3,H,W)`` float normalized by ``normalization`` (a model's :class:`ModelMeta.normalization`;
    pixel/255 in RGB order by default) and ``(H,W)`` int64 targets.  Images come in RGB order."""

    def __init__(self, normalization: Normalization = DEFAULT_NORMALIZATION) -> None:
        if not isinstance(normalization, Normalization):
            raise TypeError(
                f"ToTensor needs a Normalization (ModelMeta.normalization), got {type(normalization).__name__}"
            )
        self.normalization = normalization

    def __call__(self, image, label):
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        image = self.normalization.apply(pixels, color_order="rgb")
        return image, torch.from_numpy(np.ascontiguousarray(label)).long()


def train_transforms(
    input_size: tuple[int, int],
    *,
    normalization: Normalization = DEFAULT_NORMALIZATION,
    flip: bool = True,
    translate: int = 2,
    ignore_index: int = 255,
    crop_size: tuple[int, int] | None = None,
    scale_range: tuple[float, float] | None = None,
    photometric: float = 0.0,
    degrade: float = 0.0,
) -> Compose:
    """Resize to the network input, random horizontal flip, small random translation (the paper's recipe).

    ``crop_size`` then trains on random windows of the resized image (same scale, cheaper steps);
    ``scale_range`` rescales the resized image by a random factor first (the window then comes from
    an image zoomed in or out). ``photometric`` (strength, 0: off) and ``degrade`` (probability of
    blur, noise or JPEG, 0: off) change the pixels, not the labels.
    """
    steps: list[Callable] = [Resize(input_size)]
    if scale_range is not None and tuple(scale_range) != (1.0, 1.0):
        steps.append(RandomScale(*scale_range))
        steps.append(RandomCrop(crop_size or input_size, ignore_index))
    elif crop_size is not None and tuple(crop_size) != tuple(input_size):
        steps.append(RandomCrop(crop_size, ignore_index))
    if flip:
        steps.append(RandomHorizontalFlip())
    if translate:
        steps.append(RandomTranslate(translate, ignore_index))
    if photometric > 0:
        steps.append(PhotometricJitter(photometric))
    if degrade > 0:
        steps.append(RandomBlur(degrade))
    return Compose(steps + [ToTensor(normalization)])


def eval_transforms(
    input_size: tuple[int, int],
    *,
    normalization: Normalization = DEFAULT_NORMALIZATION,
    full_resolution_labels: bool = True,
) -> Compose:
    """Image resized to the network input; labels kept at full resolution (the Cityscapes benchmark)."""
    return Compose([Resize(input_size, resize_label=not full_resolution_labels), ToTensor(normalization)])
