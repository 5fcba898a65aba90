"""Synthetic scenes, part 3 (continued): the objects drawn in a figure's own frame, people and bicycles
(:class:`Figure`: meters right and up from the ground point it stands on); each is ``(distance for depth
ordering, callable drawing it)``, as in :mod:`.objects`."""

from __future__ import annotations

import cv2
import numpy as np

from esnet_ros.data.synth.scene import BICYCLE, PERSON, Camera, Canvas, fixed_point, random_color, vary

__all__ = ["Figure", "person", "bicycle"]


class Figure:
    """Local 2D coordinates (u right, v up, meters) of a figure standing at a ground point."""

    def __init__(self, cam: Camera, x: float, z: float, facing: float = 1.0, squeeze: float = 1.0) -> None:
        self.origin = cam.project(x, 0.0, z)
        self.scale = cam.f / z
        self.sx = facing * squeeze

    def __call__(self, u, v) -> np.ndarray:
        return self.origin + np.array([u * self.sx, -v]) * self.scale

    def px(self, meters: float) -> float:
        return meters * self.scale


def _skin(rng) -> np.ndarray:
    return vary(rng, [(240, 200, 170), (200, 150, 110), (140, 95, 65), (90, 60, 40)][rng.integers(0, 4)], 8)


def _draw_person_body(canvas, fig: Figure, rng, colors) -> None:
    label = PERSON
    shirt, pants, skin, hair = colors
    g = rng.uniform(0.85, 1.2)  # girth
    stride = rng.uniform(-0.3, 0.3)
    for side, swing in ((-1, stride), (1, -stride)):
        canvas.line(fig(0.08 * side * g, 0.9), fig(0.08 * side * g + swing, 0.05), fig.px(0.15 * g), pants, label)
        canvas.line(
            fig(0.08 * side * g + swing - 0.05, 0.04),
            fig(0.08 * side * g + swing + 0.12, 0.04),
            fig.px(0.09),
            (30, 30, 30),
            label,
        )
    hip = 0.92
    torso = [fig(-0.2 * g, 1.45), fig(0.2 * g, 1.45), fig(0.17 * g, hip - 0.05), fig(-0.17 * g, hip - 0.05)]
    if rng.random() < 0.3:  # coat or skirt
        torso = [fig(-0.2 * g, 1.45), fig(0.2 * g, 1.45), fig(0.26 * g, 0.55), fig(-0.26 * g, 0.55)]
    canvas.polygon(torso, shirt, label)
    for side in (-1, 1):
        swing = rng.uniform(-0.2, 0.2)
        canvas.line(fig(0.2 * side * g, 1.42), fig(0.24 * side * g + swing, 0.9), fig.px(0.09 * g), shirt * 0.9, label)
        canvas.ellipse(fig(0.24 * side * g + swing, 0.87), (fig.px(0.05),) * 2, skin, label)
    if rng.random() < 0.25:  # bag
        canvas.polygon(
            [fig(0.22 * g, 1.0), fig(0.42 * g, 1.0), fig(0.42 * g, 0.7), fig(0.22 * g, 0.7)], random_color(rng), label
        )
    head = fig(0.0, 1.6)
    r = fig.px(0.115)
    canvas.ellipse(head, (r, r * 1.1), skin, label)
    canvas.ellipse(head - np.array([0, r * 0.5]), (r * 1.02, r * 0.65), hair, label)


def person(rng, cam: Camera, x: float, z: float):
    height = rng.uniform(1.55, 1.95)
    colors = (
        random_color(rng),
        random_color(rng) * 0.7,
        _skin(rng),
        vary(rng, [(30, 25, 20), (90, 60, 30), (200, 170, 110), (120, 120, 120)][rng.integers(0, 4)], 10),
    )
    facing = rng.choice([-1.0, 1.0])

    def draw(canvas: Canvas) -> None:
        fig = Figure(cam, x, z, facing)
        fig.scale *= height / 1.75
        _draw_person_body(canvas, fig, rng, colors)

    return z, draw


def _drawbicycle(canvas, fig: Figure, rng, color) -> None:
    tyre, rim = np.full(3, 25.0), np.full(3, 150.0)
    back = canvas.image.copy()
    r = 0.34
    rear, front, bracket = fig(-0.52, r), fig(0.52, r), fig(0.0, 0.3)
    seat, head, bar = fig(-0.15, 0.88), fig(0.38, 0.85), fig(0.34, 1.02)
    lw = max(fig.px(0.06), 2 * canvas.min_px)
    for hub in (rear, front):  # wheels: tyre ring, see-through spokes
        canvas.ellipse(hub, (abs(fig.px(r * fig.sx)), fig.px(r)), tyre, BICYCLE)
        canvas.ellipse(hub, (abs(fig.px((r - 0.05) * fig.sx)), fig.px(r - 0.05)), rim, BICYCLE)
    frame = np.array([rear, bracket, head, seat])
    inner = np.zeros(canvas.label.shape, np.uint8)
    for hub in (rear, front):
        c = tuple(int(round(v * 16)) for v in hub)
        a = (max(1, int(round(abs(fig.px((r - 0.08) * fig.sx)) * 16))), max(1, int(round(fig.px(r - 0.08) * 16))))
        cv2.ellipse(inner, c, a, 0, 0, 360, 1, -1, cv2.LINE_8, 4)
    cv2.fillPoly(inner, [fixed_point(frame)], 1, cv2.LINE_8, 4)
    inside = inner.astype(bool)
    canvas.image[inside] = back[inside] * 0.55 + 20  # spokes and frame interior show the background
    canvas.paint(inside, BICYCLE)
    for a, b in (
        (rear, bracket),
        (bracket, head),
        (head, seat),
        (seat, bracket),
        (seat, rear),
        (head, front),
        (head, bar),
    ):
        canvas.line(a, b, lw, color, BICYCLE)
    canvas.line(fig(-0.25, 0.9), fig(-0.05, 0.9), lw, (30, 30, 30), BICYCLE)  # saddle
    canvas.line(fig(0.28, 1.02), fig(0.44, 1.02), lw, (30, 30, 30), BICYCLE)  # handlebar


def bicycle(rng, cam: Camera, x: float, z: float):
    color = random_color(rng)
    facing = rng.choice([-1.0, 1.0])
    squeeze = rng.uniform(0.55, 1.0)

    def draw(canvas: Canvas) -> None:
        _drawbicycle(canvas, Figure(cam, x, z, facing, squeeze), rng, color)

    return z, draw
