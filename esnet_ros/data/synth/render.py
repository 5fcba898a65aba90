"""Synthetic scenes, part 4: one scene from a generator (street, objects in depth order, then
texture, lighting and sensor effects); :func:`render_scene` is the public entry point."""

from __future__ import annotations

import cv2
import numpy as np

from esnet_ros.data.synth.objects import ego_hood, place_objects
from esnet_ros.data.synth.scene import (
    BUILDING,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEGETATION,
    Camera,
    Canvas,
    label_ids_to_train_ids,
    noise_field,
)
from esnet_ros.data.synth.street import draw_facades, draw_ground, draw_sky, make_street

_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


# --------------------------------------------------------------------------------------------
# Finishing: texture, lighting, sensor
# --------------------------------------------------------------------------------------------

# texture amplitude per labelId (fine grain and blotches)
_TEXTURE = np.full(256, 0.08, np.float32)
_TEXTURE[[ROAD, SIDEWALK]] = 0.18
_TEXTURE[[VEGETATION]] = 0.45
_TEXTURE[[TERRAIN]] = 0.35
_TEXTURE[[SKY]] = 0.03
_TEXTURE[[BUILDING]] = 0.15


def finish(rng, canvas: Canvas) -> np.ndarray:
    h, w = canvas.label.shape
    img = canvas.image
    amp = _TEXTURE[canvas.label] * rng.uniform(0.6, 1.4)
    fine = noise_field(rng, h, w, max(1.2, w / 400)) - 0.5
    blotch = noise_field(rng, h, w, w / 25) - 0.5
    img *= (1 + amp * (fine * 1.5 + blotch))[..., None]
    # lighting: exposure, white balance, gamma, a soft vignette
    img *= rng.uniform(0.6, 1.25) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    gamma = rng.uniform(0.8, 1.25)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img *= (1 - rng.uniform(0, 0.3) * r2 / 2)[..., None]
    if rng.random() < 0.4:
        k = 2 * int(rng.integers(1, max(2, w // 500) + 1)) + 1
        img = cv2.GaussianBlur(img, (k, k), 0)
    img += rng.normal(0, rng.uniform(1, 7), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split`` in a dataset made with ``seed``."""
    if split not in _SPLIT_CODE:
        raise ValueError(f"split={split!r} must be one of: {', '.join(_SPLIT_CODE)}")
    return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index)])


def draw_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, Canvas]:
    cam = Camera(
        f=width * rng.uniform(0.55, 0.8),
        cx=width * rng.uniform(0.42, 0.58),
        horizon=height * rng.uniform(0.36, 0.5),
        height=rng.uniform(1.2, 1.7),
    )
    street = make_street(rng)
    canvas = Canvas(height, width)
    draw_sky(rng, canvas, cam)
    draw_ground(rng, canvas, cam, street)
    draw_facades(rng, canvas, cam, street)
    objects = sorted(place_objects(rng, cam, street), key=lambda o: -o[0])
    for index, (_, draw) in enumerate(objects, start=1):
        canvas.object_index = index
        draw(canvas)
    canvas.object_index = 0
    if rng.random() < 0.3:
        ego_hood(rng, canvas)
    return finish(rng, canvas), canvas


def render_scene(
    rng: np.random.Generator, width: int, height: int, *, label_ids: bool = False, color_order: str = "rgb"
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene.

    Args:
        rng: the scene's random generator (``numpy.random.default_rng(seed)``); the same state
            always gives the same scene.
        width, height: image size in pixels (any size; scenes look alike at every resolution).
        label_ids: return Cityscapes labelIds (ego vehicle = 1) instead of trainIds.
        color_order: ``"rgb"`` (default) or ``"bgr"`` (for OpenCV or a ``bgr8`` ROS image).

    Returns:
        ``(image, labels)``: ``(H,W,3)`` uint8 and ``(H,W)`` uint8 trainIds (0..18, 255 ignored)
        or labelIds.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), got {type(rng).__name__}"
        )
    if int(width) < 16 or int(height) < 16:
        raise ValueError(f"width x height = {width}x{height} is too small; use at least 16x16")
    if color_order not in ("rgb", "bgr"):
        raise ValueError(f"color_order={color_order!r} must be one of: rgb, bgr")
    image, canvas = draw_scene(rng, int(width), int(height))
    if color_order == "bgr":
        image = np.ascontiguousarray(image[..., ::-1])
    labels = canvas.label if label_ids else label_ids_to_train_ids(canvas.label)
    return image, labels
