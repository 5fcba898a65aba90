"""The label space the outputs are published in: the model's classes or a planner's remap, and a
confidence threshold.

:class:`LabelSpace` turns the network's labels into the published ones, one lookup per pixel at the
network's resolution (before the outputs are upsampled):

- ``classes`` (:class:`~esnet_ros.core.remap.ClassRemap`): each model class onto a published id
  (:meth:`LabelSpace.for_model` without a remap: every class keeps its id), with the palette the
  color and overlay images are drawn in;
- ``min_confidence`` (0..1, 0: off): a pixel whose confidence (the max softmax, as the ``confidence``
  image carries it, ``round(255 p)``) is below it becomes ``unknown_label``, drawn black. In integers:
  ``round(255 p) < ceil(255 min_confidence)``.

The engine applies it in :meth:`~esnet_ros.inference.segmenter.Segmenter.finish` (``label_space=`` of
:meth:`~esnet_ros.inference.segmenter.Segmenter.infer`), so labels, color, overlay, the cloud's labels
and the stats all agree.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import cv2
import numpy as np
import torch

from esnet_ros.core.labels import LabelSet
from esnet_ros.core.remap import ClassRemap
from esnet_ros.inference.cpu_ops import CpuBuffers, blend
from esnet_ros.inference.torch_ops import resize_image

__all__ = ["LabelSpace"]


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """Published class ids (``classes``) and the ``min_confidence`` below which a pixel is unknown."""

    classes: ClassRemap
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.min_confidence) <= 1.0:
            raise ValueError(f"min_confidence={self.min_confidence} must be within 0..1 (0: off)")

    @classmethod
    def for_model(
        cls, labels: LabelSet, *, unknown_label: int = 255, min_confidence: float = 0.0, remap: ClassRemap | None = None
    ) -> LabelSpace:
        """The model's own classes (ids unchanged), or ``remap``'s; ``unknown_label`` for what is neither."""
        if remap is not None:
            return cls(remap, float(min_confidence))
        n = labels.num_classes
        if not n <= int(unknown_label) <= 255:
            owner = f"the id of class {labels.names[unknown_label]}" if 0 <= unknown_label < n else "outside 0..255"
            raise ValueError(f"unknown_label={unknown_label} is {owner}; use a value in {n}..255 (default 255)")
        table = ClassRemap.from_table(
            labels,
            tuple(labels.names),
            tuple(range(n)),
            tuple(labels.colors),
            tuple((name,) for name in labels.names),
            unknown_label=int(unknown_label),
        )
        return cls(table, float(min_confidence))

    @property
    def unknown_label(self) -> int:
        return self.classes.unknown_label

    @property
    def palette(self) -> np.ndarray:
        """``(256,3) uint8``: published id -> RGB (black for unknown)."""
        return self.classes.palette

    @property
    def needs_confidence(self) -> bool:
        return self.min_confidence > 0.0

    @property
    def threshold_u8(self) -> int:
        """Confidence values (0..255) below this are unknown."""
        return int(math.ceil(255.0 * self.min_confidence - 1e-9))

    def apply(self, labels: np.ndarray, confidence: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
        """Model labels (and their confidence) -> published labels, a new array (or ``out``)."""
        published = self.classes.apply(labels, out=out)
        if self.needs_confidence:
            if confidence is None or confidence.shape != labels.shape:
                raise ValueError(
                    "min_confidence needs the confidence of the same pixels; ask for outputs=('confidence',)"
                )
            published[confidence < self.threshold_u8] = self.unknown_label
        return published

    def relabel(self, result: Any, image: np.ndarray, resolution: str, color_order: str, alpha: float) -> None:
        """A finished result in the model's classes (CUDA's) -> this space: labels, color, overlay redrawn."""
        result.labels = self.apply(result.labels, result.confidence)
        color = np.take(self.palette, result.labels, axis=0)
        if result.color is not None:
            result.color = color
        if result.overlay is not None:
            base = (
                image if resolution == "input" else resize_image(torch.from_numpy(image), result.labels.shape).numpy()
            )
            mask = cv2.cvtColor(color, cv2.COLOR_RGB2BGR) if color_order == "bgr" else color
            result.overlay = blend(np.ascontiguousarray(base), mask, alpha, CpuBuffers())
