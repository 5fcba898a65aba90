"""Synthetic scenes, part 3: the objects (cars, buses, poles, signs, lights, trees, hedges, the ego vehicle's
hood; people and bicycles from :mod:`.figures`) and where they stand; each is ``(distance for depth ordering,
callable drawing it)``."""

from __future__ import annotations

import numpy as np

from esnet_ros.data.synth.figures import Figure, bicycle, person
from esnet_ros.data.synth.scene import BUS, CAR, EGO, LIGHT, POLE, SIGN, VEGETATION, Camera, Canvas, random_color, vary
from esnet_ros.data.synth.street import Street, window_color

# --------------------------------------------------------------------------------------------
# Objects: each is (distance for depth ordering, callable drawing it)
# --------------------------------------------------------------------------------------------


def _box_faces(cam: Camera, x0, x1, z0, z1, y0, y1):
    """Screen polygons of the visible faces of an axis-aligned box: near face, side face (or None)."""
    near = cam.project([x0, x1, x1, x0], [y0, y0, y1, y1], [z0] * 4)
    side = None
    if x1 < -0.3:  # right face visible
        side = cam.project([x1] * 4, [y0, y0, y1, y1], [z0, z1, z1, z0])
    elif x0 > 0.3:
        side = cam.project([x0] * 4, [y0, y0, y1, y1], [z0, z1, z1, z0])
    top = None
    if y1 < cam.height - 0.05:
        top = cam.project([x0, x1, x1, x0], [y1] * 4, [z0, z0, z1, z1])
    return near, side, top


def _face_point(face: np.ndarray, s: float, t: float) -> np.ndarray:
    """Bilinear point in a quad given as (bottom-near, bottom-far/right, top-far, top-near)."""
    a, b, c, d = face
    bottom = a + (b - a) * s
    top = d + (c - d) * s
    return bottom + (top - bottom) * t


def _face_quad(face, s0, s1, t0, t1) -> np.ndarray:
    return np.array(
        [_face_point(face, s0, t0), _face_point(face, s1, t0), _face_point(face, s1, t1), _face_point(face, s0, t1)]
    )


def _draw_wheels(canvas, cam, face, length, x_side, z0, radius, positions, label):
    dark = np.full(3, 25.0)
    for p in positions:
        zc = z0 + p * length
        c = cam.project(x_side, radius, zc)
        ry = cam.f * radius / zc
        canvas.ellipse(c, (ry * 0.55, ry), dark, label)


def _car(rng, cam: Camera, x: float, z: float, facing_away: bool):
    width, length, height = rng.uniform(1.65, 1.95), rng.uniform(3.9, 4.9), rng.uniform(1.35, 1.65)
    color = random_color(rng)
    glass = window_color(rng)

    def draw(canvas: Canvas) -> None:
        x0, x1 = x - width / 2, x + width / 2
        belt = height * rng.uniform(0.5, 0.6)
        # shadow under the car (image only)
        canvas.polygon(
            cam.project([x0 - 0.1, x1 + 0.1, x1 + 0.1, x0 - 0.1], 0, [z - 0.2, z - 0.2, z + length, z + length]),
            np.full(3, 20.0),
            None,
        )
        near, side, top = _box_faces(cam, x0, x1, z, z + length, 0.15, belt)
        for face, k in ((side, 0.8), (top, 1.1), (near, 1.0)):
            if face is not None:
                canvas.polygon(face, color * k, CAR)
        cab_z0, cab_z1 = z + length * rng.uniform(0.15, 0.3), z + length * rng.uniform(0.7, 0.85)
        inset = width * 0.08
        cn, cs, ct = _box_faces(cam, x0 + inset, x1 - inset, cab_z0, cab_z1, belt, height)
        if cs is not None:
            # the cabin's side face joins the body's near edge so there is no gap above the belt
            canvas.polygon(cs, color * 0.8, CAR)
            canvas.polygon(_face_quad(cs, 0.06, 0.94, 0.1, 0.85), glass, CAR)
        canvas.polygon(np.array([near[3], near[2], cn[2], cn[3]]), color * 0.95, CAR)  # rear/front slope
        canvas.polygon(cn, color * 0.95, CAR)
        canvas.polygon(_face_quad(cn, 0.08, 0.92, 0.05, 0.85), glass * (0.8 if facing_away else 1.1), CAR)
        if ct is not None:
            canvas.polygon(ct, color * 1.1, CAR)
        if side is not None:
            xs = x1 if x1 < -0.3 else x0
            _draw_wheels(canvas, cam, side, length, xs, z, 0.33, (0.18, 0.8), CAR)
        lamp = (220, 30, 30) if facing_away else (240, 240, 220)
        for s0 in (0.03, 0.8):
            canvas.polygon(_face_quad(near, s0, s0 + 0.17, 0.55, 0.8), lamp, CAR)
        canvas.polygon(_face_quad(near, 0.38, 0.62, 0.15, 0.35), (230, 230, 230), CAR)  # plate
        canvas.polygon(_face_quad(near, 0.05, 0.22, -0.45, 0.0), (25, 25, 25), CAR)  # tyres below
        canvas.polygon(_face_quad(near, 0.78, 0.95, -0.45, 0.0), (25, 25, 25), CAR)

    return z, draw


def _bus(rng, cam: Camera, x: float, z: float, facing_away: bool):
    width = rng.uniform(2.4, 2.6)
    length = rng.uniform(9, 12.5)
    height = rng.uniform(2.9, 3.3)
    color = vary(
        rng, [(230, 200, 40), (200, 40, 40), (235, 235, 235), (40, 90, 170), (60, 150, 80)][rng.integers(0, 5)], 15
    )
    glass = window_color(rng)

    def draw(canvas: Canvas) -> None:
        x0, x1 = x - width / 2, x + width / 2
        canvas.polygon(
            cam.project([x0, x1, x1, x0], 0, [z - 0.2, z - 0.2, z + length, z + length]), np.full(3, 20.0), None
        )
        near, side, top = _box_faces(cam, x0, x1, z, z + length, 0.35, height)
        for face, k in ((side, 0.8), (top, 1.1), (near, 1.0)):
            if face is not None:
                canvas.polygon(face, color * k, BUS)
        if side is not None:  # window band, window pillars, wheels
            canvas.polygon(_face_quad(side, 0.03, 0.97, 0.35, 0.85), glass, BUS)
            for s in np.arange(0.1, 0.95, rng.uniform(0.1, 0.15)):
                canvas.polygon(_face_quad(side, s, s + 0.012, 0.35, 0.85), color * 0.8, BUS)
            _draw_wheels(canvas, cam, side, length, x1 if x1 < -0.3 else x0, z, 0.5, (0.15, 0.8), BUS)
        canvas.polygon(_face_quad(near, 0.06, 0.94, 0.4, 0.88 if facing_away else 0.93), glass, BUS)
        canvas.polygon(_face_quad(near, 0.1, 0.9, 0.9, 0.97), (250, 160, 40), BUS)  # destination sign
        lamp = (220, 30, 30) if facing_away else (240, 240, 220)
        for s0 in (0.04, 0.84):
            canvas.polygon(_face_quad(near, s0, s0 + 0.12, 0.05, 0.15), lamp, BUS)

    return z, draw


def _pole_width(canvas: Canvas, fig: Figure, meters: float) -> float:
    return max(fig.px(meters), 4.0 * canvas.min_px)


def _sign_plate(canvas, center, size_px, rng) -> None:
    kind = rng.integers(0, 5)
    red, white, blue, yellow = (200, 30, 30), (240, 240, 240), (30, 70, 170), (240, 200, 40)
    cx, cy = center
    r = size_px / 2
    if kind == 0:  # prohibitory: red ring
        canvas.ellipse(center, (r, r), red, SIGN)
        canvas.ellipse(center, (r * 0.7, r * 0.7), white, SIGN)
    elif kind == 1:  # mandatory: blue disc with a white arrow
        canvas.ellipse(center, (r, r), blue, SIGN)
        canvas.line((cx, cy + r * 0.5), (cx, cy - r * 0.5), r * 0.3, white, SIGN)
    elif kind == 2:  # warning triangle
        canvas.polygon([(cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8), (cx, cy - r)], red, SIGN)
        canvas.polygon([(cx - r * 0.6, cy + r * 0.55), (cx + r * 0.6, cy + r * 0.55), (cx, cy - r * 0.45)], white, SIGN)
    elif kind == 3:  # priority diamond
        canvas.polygon([(cx - r, cy), (cx, cy - r), (cx + r, cy), (cx, cy + r)], white, SIGN)
        canvas.polygon([(cx - r * 0.6, cy), (cx, cy - r * 0.6), (cx + r * 0.6, cy), (cx, cy + r * 0.6)], yellow, SIGN)
    else:  # information rectangle
        color = [blue, (30, 120, 60), white][rng.integers(0, 3)]
        canvas.polygon(
            [
                (cx - r * 1.2, cy - r * 0.7),
                (cx + r * 1.2, cy - r * 0.7),
                (cx + r * 1.2, cy + r * 0.7),
                (cx - r * 1.2, cy + r * 0.7),
            ],
            color,
            SIGN,
        )


def _light_box(canvas, top_center, width_px, rng) -> None:
    housing = vary(rng, [(25, 25, 25), (40, 55, 40), (200, 170, 40)][rng.integers(0, 3)], 6)
    cx, cy = top_center
    hgt = width_px * 2.6
    canvas.polygon(
        [
            (cx - width_px / 2, cy),
            (cx + width_px / 2, cy),
            (cx + width_px / 2, cy + hgt),
            (cx - width_px / 2, cy + hgt),
        ],
        housing,
        LIGHT,
    )
    lit = rng.integers(0, 3)
    for k, color in enumerate(((255, 40, 30), (255, 190, 30), (40, 230, 90))):
        c = np.array(color, float) if k == lit else np.array(color, float) * 0.25 + 20
        canvas.ellipse((cx, cy + hgt * (0.18 + 0.32 * k)), (width_px * 0.32,) * 2, c, LIGHT)


def _pole(rng, cam: Camera, x: float, z: float, kind: str, toward_road: float):
    """A street lamp, a sign post or a traffic light post (``toward_road`` is +1 or -1 in X)."""
    height = {"lamp": rng.uniform(6, 9), "sign": rng.uniform(2.4, 3.4), "light": rng.uniform(3.2, 4.5)}[kind]
    color = vary(rng, [(90, 95, 100), (60, 70, 60), (150, 150, 150), (40, 40, 40)][rng.integers(0, 4)], 10)
    with_sign = kind == "sign" or (kind == "lamp" and rng.random() < 0.4)
    overhead = kind == "light" and rng.random() < 0.4
    sign_size = rng.uniform(0.6, 0.95)

    def draw(canvas: Canvas) -> None:
        fig = Figure(cam, x, z)
        wpx = _pole_width(canvas, fig, rng.uniform(0.15, 0.28))
        top = fig(0, height)
        canvas.line(fig(0, 0), top, wpx, color, POLE)
        if kind == "lamp":
            end = cam.project(x + toward_road * 1.8, height, z)
            canvas.line(top, end, wpx * 0.8, color, POLE)
            canvas.polygon(
                [end + (-wpx * 1.5, 0), end + (wpx * 1.5, 0), end + (wpx, wpx * 1.2), end + (-wpx, wpx * 1.2)],
                color * 0.8,
                POLE,
            )
        if with_sign:
            _sign_plate(
                canvas,
                fig(0, 2.2 if kind == "lamp" else height - sign_size / 2),
                max(fig.px(sign_size), 7 * canvas.min_px),
                rng,
            )
        if kind == "light":
            box_w = max(fig.px(rng.uniform(0.38, 0.5)), 4 * canvas.min_px)
            if overhead:
                end = cam.project(x + toward_road * rng.uniform(3, 6), height, z)
                canvas.line(top, end, wpx * 0.8, color, POLE)
                _light_box(canvas, end + (0, wpx * 0.4), box_w, rng)
            else:
                _light_box(canvas, top - (0, box_w * 0.3), box_w, rng)

    return z, draw


def _tree(rng, cam: Camera, x: float, z: float):
    trunk_h = rng.uniform(2.0, 3.5)
    crown_r = rng.uniform(1.3, 3.0)
    blobs = [
        (
            rng.normal(0, crown_r * 0.5),
            trunk_h + crown_r + rng.normal(0, crown_r * 0.4),
            crown_r * rng.uniform(0.5, 0.9),
        )
        for _ in range(int(rng.integers(4, 9)))
    ]
    leaf_color = vary(rng, [(50, 100, 40), (80, 120, 50), (40, 70, 35), (160, 120, 40)][rng.integers(0, 4)], 12)
    bark = vary(rng, (80, 65, 50), 10)

    def draw(canvas: Canvas) -> None:
        fig = Figure(cam, x, z)
        canvas.line(fig(0, 0), fig(0, trunk_h + crown_r), max(fig.px(0.3), 2 * canvas.min_px), bark, VEGETATION)
        for u, v, r in blobs:
            shade = rng.uniform(0.7, 1.2)
            canvas.ellipse(fig(u, v), (fig.px(r), fig.px(r * rng.uniform(0.8, 1.1))), leaf_color * shade, VEGETATION)

    return z, draw


def _hedge(rng, cam: Camera, x: float, z0: float, z1: float, side: float):
    height = rng.uniform(0.6, 1.6)
    color = vary(rng, (60, 100, 45), 15)

    def draw(canvas: Canvas) -> None:
        x_near = x - side * 0.8
        near, face, top = _box_faces(cam, min(x, x_near), max(x, x_near), z0, z1, 0.0, height)
        for f_, k in ((top, 1.1), (face, 0.9), (near, 1.0)):
            if f_ is not None:
                canvas.polygon(f_, color * k, VEGETATION)

    return z0, draw


def ego_hood(rng, canvas: Canvas) -> None:
    h, w = canvas.label.shape
    rise = h * rng.uniform(0.05, 0.12)
    color = random_color(rng) * 0.6
    canvas.ellipse((w / 2 + rng.normal(0, w * 0.03), h + rise * 0.6), (w * 0.8, rise * 1.6), color, EGO)
    canvas.ellipse((w / 2, h + rise * 0.6), (w * 0.5, rise * 0.7), color * 1.4 + 30, EGO)  # reflection


def _traffic(rng, cam: Camera, st: Street) -> list:
    """Cars and buses in the lanes (oncoming on the lanes left of the camera)."""
    objects = []
    lanes_x = [st.road_left + (k + 0.5) * st.lane_width for k in range(st.lanes)]
    oncoming = [x < -st.lane_width * 0.5 for x in lanes_x]  # lanes left of the camera come toward us
    n_lanes_left = sum(oncoming)
    if n_lanes_left == 0:
        oncoming = [False] * st.lanes
    for x_lane, towards in zip(lanes_x, oncoming, strict=True):
        z = rng.uniform(5, 14)
        while z < 70:
            if rng.random() < 0.6:
                x = x_lane + rng.normal(0, 0.2)
                r = rng.random()
                if r < 0.75:
                    objects.append(_car(rng, cam, x, z, not towards))
                    z += rng.uniform(6, 25)
                else:
                    objects.append(_bus(rng, cam, x, z, not towards))
                    z += rng.uniform(14, 30)
            else:
                z += rng.uniform(5, 20)
    return objects


def place_objects(rng, cam: Camera, st: Street) -> list:
    """Every object of a scene as ``(distance, draw)``; the caller draws them far to near."""
    objects = _traffic(rng, cam, st)
    for side, curb in ((-1, st.road_left), (1, st.road_right)):
        if rng.random() < 0.6:  # parked cars along the curb
            z = rng.uniform(4, 10)
            while z < 60:
                if rng.random() < 0.75:
                    r = rng.random()
                    if r < 0.85:
                        objects.append(_car(rng, cam, curb - side * 1.1, z, True))
                    else:
                        objects.append(_bus(rng, cam, curb - side * 1.35, z, True))
                z += rng.uniform(5.5, 8)
        walk_in, walk_out = (st.road_left, st.walk_left) if side < 0 else (st.road_right, st.walk_right)
        for _ in range(int(rng.integers(0, 7))):  # pedestrians
            x = rng.uniform(min(walk_in, walk_out) + 0.4, max(walk_in, walk_out) - 0.4)
            objects.append(person(rng, cam, x, rng.uniform(4, 18)))
        for _ in range(int(rng.integers(0, 4))):  # parked bicycles
            x = rng.uniform(min(walk_in, walk_out) + 0.5, max(walk_in, walk_out) - 0.5)
            objects.append(bicycle(rng, cam, x, rng.uniform(4, 14)))
        pole_x = curb + side * 0.5
        z = rng.uniform(3, 12)
        spacing = rng.uniform(12, 25)
        while z < 45:  # street lamps, some carrying signs
            objects.append(_pole(rng, cam, pole_x, z, "lamp", -side))
            z += spacing
        for _ in range(int(rng.integers(0, 3))):  # sign posts
            objects.append(_pole(rng, cam, pole_x + side * rng.uniform(0, 0.5), rng.uniform(5, 22), "sign", -side))
        if rng.random() < 0.5:
            objects.append(_pole(rng, cam, pole_x, rng.uniform(8, 22), "light", -side))
        tree_x = (st.walk_left + st.facade_left) / 2 if side < 0 else (st.walk_right + st.facade_right) / 2
        if abs(st.facade_left - st.walk_left if side < 0 else st.facade_right - st.walk_right) < 0.5:
            tree_x = curb + side * 1.2
        if rng.random() < 0.6:
            z = rng.uniform(4, 12)
            spacing = rng.uniform(7, 18)
            while z < 70:
                objects.append(_tree(rng, cam, tree_x + rng.normal(0, 0.2), z))
                z += spacing * rng.uniform(0.8, 1.2)
        facade = st.facade_left if side < 0 else st.facade_right
        if rng.random() < 0.35:
            z0 = rng.uniform(3, 30)
            objects.append(_hedge(rng, cam, facade, z0, z0 + rng.uniform(5, 30), -side))
    for _ in range(int(rng.integers(0, 3))):  # people crossing
        objects.append(person(rng, cam, rng.uniform(st.road_left, st.road_right), rng.uniform(5, 16)))
    return [o for o in objects if o[0] > 2.5]
