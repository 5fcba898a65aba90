"""Synthetic scenes, part 1: the classes drawn, the pinhole camera and the canvas.

:class:`Camera` projects world points (meters; X right, Y up, Z forward) to pixels; :class:`Canvas`
draws an RGB float image, its Cityscapes labelIds and instanceIds together, with OpenCV at
sub-pixel precision (:data:`SHIFT`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import id2label, name2label

from esnet_ros.core.labels import cityscapes

CLASS_ID = {
    name: name2label[name].id
    for name in (
        "ego vehicle",
        "road",
        "sidewalk",
        "building",
        "pole",
        "traffic light",
        "traffic sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "car",
        "bus",
        "bicycle",
    )
}
EGO, ROAD, SIDEWALK, BUILDING = CLASS_ID["ego vehicle"], CLASS_ID["road"], CLASS_ID["sidewalk"], CLASS_ID["building"]
POLE, LIGHT, SIGN, VEGETATION = (
    CLASS_ID["pole"],
    CLASS_ID["traffic light"],
    CLASS_ID["traffic sign"],
    CLASS_ID["vegetation"],
)
TERRAIN, SKY, PERSON = CLASS_ID["terrain"], CLASS_ID["sky"], CLASS_ID["person"]
CAR, BUS, BICYCLE = CLASS_ID["car"], CLASS_ID["bus"], CLASS_ID["bicycle"]

#: Cityscapes class names that the generator draws (the ego vehicle is drawn but ignored).

CLASSES_DRAWN = tuple(name for name in CLASS_ID if name != "ego vehicle")


_TRAIN_ID_LUT = cityscapes().raw_to_train_lut()
HAS_INSTANCES = np.zeros(256, bool)
HAS_INSTANCES[[i for i, lab in id2label.items() if 0 <= i < 256 and lab.hasInstances]] = True


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds -> trainIds (255 for classes ignored in evaluation)."""
    return _TRAIN_ID_LUT[label_ids]


# --------------------------------------------------------------------------------------------
# Drawing primitives
# --------------------------------------------------------------------------------------------

SHIFT = 4  # sub-pixel precision of OpenCV drawing (coordinates * 16)


def fixed_point(points) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * (1 << SHIFT)).astype(np.int32).reshape(-1, 2)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera over a flat ground; world X right, Y up (0 = ground), Z forward (m)."""

    f: float
    cx: float
    horizon: float
    height: float

    def project(self, X, Y, Z) -> np.ndarray:
        X, Y, Z = np.broadcast_arrays(np.asarray(X, float), np.asarray(Y, float), np.asarray(Z, float))
        return np.stack([self.cx + self.f * X / Z, self.horizon + self.f * (self.height - Y) / Z], -1)


class Canvas:
    """An RGB float image, its labelIds and its Cityscapes instanceIds, drawn together.

    ``instance`` holds ``labelId * 1000 + k`` for the k-th object drawn (instance classes only);
    :meth:`instance_ids` fills in the plain labelId everywhere else, as Cityscapes does.
    """

    def __init__(self, height: int, width: int) -> None:
        self.image = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        self.instance = np.zeros((height, width), np.uint16)
        self.object_index = 0  # the object being drawn (set by the scene loop)
        self.min_px = max(1.0, width / 256.0)  # thinnest line drawn, in pixels

    def _instance_value(self, label: int) -> int:
        return int(label) * 1000 + self.object_index if HAS_INSTANCES[label] and self.object_index else 0

    def paint(self, mask: np.ndarray, label: int) -> None:
        """Label the pixels of a boolean mask."""
        self.label[mask] = label
        self.instance[mask] = self._instance_value(label)

    def instance_ids(self) -> np.ndarray:
        """``(H,W)`` uint16 Cityscapes instanceIds."""
        own = (self.instance // 1000 == self.label) & (self.instance > 0)
        return np.where(own, self.instance, self.label.astype(np.uint16))

    @staticmethod
    def _color(color) -> tuple[float, float, float]:
        return tuple(float(c) for c in np.clip(color, 0, 255))

    def polygon(self, points, color, label: int | None) -> None:
        pts = [fixed_point(points)]
        cv2.fillPoly(self.image, pts, self._color(color), cv2.LINE_AA, SHIFT)
        if label is not None:
            cv2.fillPoly(self.label, pts, int(label), cv2.LINE_8, SHIFT)
            cv2.fillPoly(self.instance, pts, self._instance_value(label), cv2.LINE_8, SHIFT)

    def line(self, p0, p1, width_px: float, color, label: int | None) -> None:
        """A thick segment as a polygon (exact sub-pixel width, at least ``min_px``)."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        d = p1 - p0
        n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-6) * max(width_px, self.min_px) / 2
        self.polygon([p0 + n, p1 + n, p1 - n, p0 - n], color, label)

    def ellipse(self, center, axes, color, label: int | None, angle: float = 0.0) -> None:
        c = tuple(int(round(v * (1 << SHIFT))) for v in center)
        a = tuple(max(1, int(round(v * (1 << SHIFT)))) for v in axes)
        cv2.ellipse(self.image, c, a, angle, 0, 360, self._color(color), -1, cv2.LINE_AA, SHIFT)
        if label is not None:
            cv2.ellipse(self.label, c, a, angle, 0, 360, int(label), -1, cv2.LINE_8, SHIFT)
            cv2.ellipse(self.instance, c, a, angle, 0, 360, self._instance_value(label), -1, cv2.LINE_8, SHIFT)


def noise_field(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth value noise in [0, 1] with features about ``cell`` pixels wide."""
    gh, gw = int(height / cell) + 2, int(width / cell) + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def vary(rng: np.random.Generator, color, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, amount, 3), 0, 255)


def random_color(rng: np.random.Generator) -> np.ndarray:
    """Any color: saturated, pastel, gray, white or black (so no class owns a color)."""
    kind = rng.random()
    if kind < 0.35:
        return np.full(3, rng.uniform(15, 235), np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(40, 255), rng.integers(40, 250)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
