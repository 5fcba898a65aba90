"""Synthetic scenes, part 2: the street (sky, road with markings, curbs, sidewalks, grass, facades)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from esnet_ros.data.synth.scene import (
    BUILDING,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEGETATION,
    Camera,
    Canvas,
    noise_field,
    random_color,
    vary,
)

# --------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------


@dataclass
class Street:
    """Cross-section of the street (world X, meters) and the side facades."""

    road_left: float
    road_right: float
    lanes: int
    lane_width: float
    walk_left: float  # outer edge of the sidewalks
    walk_right: float
    facade_left: float
    facade_right: float
    z_end: float  # distance of a facade closing the street, inf for none


def make_street(rng: np.random.Generator) -> Street:
    lanes = int(rng.integers(2, 5))
    lane_width = rng.uniform(3.0, 3.8)
    cam = (rng.integers(0, lanes) + rng.uniform(0.3, 0.7)) * lane_width
    road_left, road_right = -cam, lanes * lane_width - cam
    walk_left = road_left - rng.uniform(1.8, 5.0)
    walk_right = road_right + rng.uniform(1.8, 5.0)
    grass = rng.uniform(1.0, 5.0, 2) * (rng.random(2) < 0.45)
    return Street(
        road_left,
        road_right,
        lanes,
        lane_width,
        walk_left,
        walk_right,
        walk_left - grass[0],
        walk_right + grass[1],
        rng.uniform(70, 200) if rng.random() < 0.6 else np.inf,
    )


def draw_sky(rng, canvas: Canvas, cam: Camera) -> None:
    h, w = canvas.label.shape
    kind = rng.random()
    if kind < 0.55:  # clear blue
        top, bottom = vary(rng, (60, 120, 200), 20), vary(rng, (170, 200, 230), 15)
    elif kind < 0.8:  # overcast
        g = rng.uniform(150, 235)
        top, bottom = vary(rng, (g, g, g + 5), 8), vary(rng, (g + 10, g + 10, g + 10), 8)
    else:  # dusk
        top, bottom = vary(rng, (70, 80, 140), 20), vary(rng, (235, 160, 110), 20)
    t = np.clip(np.arange(h, dtype=np.float32) / max(cam.horizon, 1.0), 0, 1)[:, None, None]
    sky = top * (1 - t) + bottom * t
    clouds = np.clip((noise_field(rng, h, w, w / 6) - rng.uniform(0.45, 0.7)) * 3, 0, 1)[..., None]
    sky = sky * (1 - clouds) + vary(rng, (235, 235, 240), 12) * clouds
    canvas.image[:] = np.broadcast_to(sky, canvas.image.shape)
    canvas.label[:] = SKY


def draw_ground(rng, canvas: Canvas, cam: Camera, st: Street) -> tuple[np.ndarray, np.ndarray]:
    """Road, markings, curbs, sidewalks and grass; returns the ground's (X, Z) maps."""
    h, w = canvas.label.shape
    dy = np.arange(h, dtype=np.float32)[:, None] + 0.5 - cam.horizon
    # ground distance of each row; above the horizon "infinitely" far (1e6 m), never ground
    Z = np.where(dy > 0.25, cam.f * cam.height / np.maximum(dy, 1e-3), 1e6).astype(np.float32)
    Z = np.broadcast_to(Z, (h, w))
    X = (np.arange(w, dtype=np.float32)[None, :] + 0.5 - cam.cx) * Z / cam.f
    ground = Z < 400
    if np.isfinite(st.z_end):
        ground &= st.z_end + 5 > Z

    road = ground & (st.road_left <= X) & (st.road_right > X)
    walk = ground & (((st.walk_left <= X) & (st.road_left > X)) | ((st.road_right <= X) & (st.walk_right > X)))
    grass = ground & ~road & ~walk

    img = canvas.image
    # asphalt
    asphalt = vary(rng, np.full(3, rng.uniform(55, 125)) + rng.normal(0, 6, 3), 6)
    img[road] = asphalt
    markings = np.zeros((h, w), bool)
    mark_w = rng.uniform(0.12, 0.2)
    dash, period = rng.uniform(2, 4), rng.uniform(6, 12)
    for k in range(1, st.lanes):
        xk = st.road_left + k * st.lane_width
        markings |= (np.abs(X - xk) < mark_w / 2) & ((Z % period) < dash)
    for edge in (st.road_left + 0.35, st.road_right - 0.35):
        if rng.random() < 0.6:
            markings |= np.abs(X - edge) < mark_w / 2
    if rng.random() < 0.35:  # crosswalk
        z0 = rng.uniform(8, 30)
        markings |= (z0 < Z) & (z0 + rng.uniform(3, 5) > Z) & ((X % 1.0) < 0.5)
    markings &= road
    mark_color = vary(rng, (235, 235, 230), 8) if rng.random() < 0.8 else vary(rng, (230, 190, 60), 10)
    img[markings] = mark_color * rng.uniform(0.75, 1.0)
    # sidewalks: tiles and a brighter curb
    walk_color = [(150, 150, 148), (170, 110, 95), (190, 175, 150), (120, 120, 125)][rng.integers(0, 4)]
    walk_color = vary(rng, walk_color, 14)
    tile = rng.uniform(0.3, 0.8)
    joints = ((X % tile) < 0.04) | ((Z % tile) < 0.04)
    img[walk] = walk_color
    img[walk & joints] = walk_color * 0.8
    curb = walk & ((np.abs(X - st.road_left) < 0.2) | (np.abs(X - st.road_right) < 0.2))
    img[curb] = np.clip(walk_color * 1.15 + 15, 0, 255)
    # grass strips and whatever lies behind the facade line
    grass_color = vary(rng, [(90, 130, 60), (120, 140, 70), (140, 120, 80)][rng.integers(0, 3)], 15)
    img[grass] = grass_color
    canvas.label[road] = ROAD
    canvas.label[walk] = SIDEWALK
    canvas.label[grass] = TERRAIN
    # shadows cast by the buildings on one side
    if rng.random() < 0.5:
        side = rng.choice([-1, 1])
        reach = rng.uniform(2, 12)
        edge = st.facade_left + reach if side < 0 else st.facade_right - reach
        shadow = ground & ((edge > X) if side < 0 else (edge < X))
        img[shadow] *= rng.uniform(0.45, 0.75)
    return X, Z


def _facade_segments(rng, z_far: float):
    """Buildings and gaps along one side of the street: (start, height, kind, color, window params)."""
    starts, heights, kinds, colors, windows = [], [], [], [], []
    z = -rng.uniform(0, 10)
    while z < z_far:
        gap = rng.random() < 0.22
        starts.append(z)
        if gap:
            kinds.append(1 if rng.random() < 0.6 else 2)  # 1: tree line, 2: open (low hedge)
            heights.append(rng.uniform(4, 14) if kinds[-1] == 1 else rng.uniform(0.4, 1.2))
            colors.append(vary(rng, (60, 100, 45), 20))
            z += rng.uniform(4, 18)
        else:
            kinds.append(0)
            heights.append(rng.uniform(6, 35))
            colors.append(random_color(rng) * 0.6 + vary(rng, (170, 160, 150), 30) * 0.4)
            z += rng.uniform(8, 35)
        windows.append(
            (
                rng.uniform(2.5, 4.5),
                rng.uniform(2.8, 3.6),
                rng.uniform(0.3, 0.7),
                rng.uniform(0.3, 0.65),
                rng.uniform(2.5, 4.5),
                rng.random(),
            )
        )
    return (np.array(starts), np.array(heights), np.array(kinds), np.array(colors), np.array(windows))


def window_color(rng) -> np.ndarray:
    return vary(rng, [(40, 50, 70), (90, 110, 140), (150, 170, 190), (30, 30, 35)][rng.integers(0, 4)], 10)


def draw_facades(rng, canvas: Canvas, cam: Camera, st: Street) -> None:
    h, w = canvas.label.shape
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float32) + 0.5
    win_color = window_color(rng)
    veg_noise = noise_field(rng, 1, w, max(2.0, w / 120))[0]
    leaf = noise_field(rng, h, w, max(1.5, w / 300))
    z_far = min(st.z_end, 400.0)
    for side, facade_x in ((-1, st.facade_left), (1, st.facade_right)):
        starts, heights, kinds, colors, win = _facade_segments(rng, z_far)
        with np.errstate(divide="ignore", invalid="ignore"):
            Zf = cam.f * facade_x / (xs - cam.cx)  # where each column's ray meets the facade plane
        valid = (Zf > 0.5) & (Zf < z_far)
        Zf = np.where(valid, Zf, 1.0)
        seg = np.clip(np.searchsorted(starts, Zf, side="right") - 1, 0, len(starts) - 1)
        seg_h = heights[seg] + np.where(kinds[seg] == 1, (veg_noise - 0.5) * 3.0, 0.0)
        top = cam.horizon + cam.f * (cam.height - seg_h) / Zf
        bottom = cam.horizon + cam.f * cam.height / Zf
        mask = valid[None, :] & (ys >= top[None, :]) & (ys < bottom[None, :])
        v = cam.height - (ys - cam.horizon) * Zf[None, :] / cam.f  # height on the facade (m)
        u = (Zf - starts[seg])[None, :]
        wp = win[seg]
        window = (
            ((u % wp[:, 0]) / wp[:, 0] > (1 - wp[:, 2]) / 2)
            & ((u % wp[:, 0]) / wp[:, 0] < (1 + wp[:, 2]) / 2)
            & ((v % wp[:, 1]) / wp[:, 1] > 0.3)
            & ((v % wp[:, 1]) / wp[:, 1] < 0.3 + wp[:, 3])
            & (v > wp[:, 4])
            & (v < seg_h - 1.0)
        )
        building = mask & (kinds[seg] == 0)[None, :]
        vegetation = mask & (kinds[seg] != 0)[None, :]
        base = colors[seg]  # (W,3)
        shade = 0.75 if side < 0 else 1.0
        img = np.broadcast_to(base[None, :, :] * shade, (h, w, 3))
        canvas.image[building] = img[building]
        canvas.image[building & window] = win_color * (0.7 + 0.6 * leaf[building & window, None])
        canvas.image[vegetation] = img[vegetation] * (0.5 + leaf[vegetation, None])
        canvas.label[building] = BUILDING
        canvas.label[vegetation] = VEGETATION
    if np.isfinite(st.z_end):  # a facade closing the street
        x0, x1 = cam.cx + cam.f * st.facade_left / st.z_end, cam.cx + cam.f * st.facade_right / st.z_end
        x = x0
        while x < x1:
            xe = min(x1, x + rng.uniform(10, 40) * cam.f / st.z_end)
            hgt = rng.uniform(8, 40)
            y_top = cam.horizon + cam.f * (cam.height - hgt) / st.z_end
            y_bot = cam.horizon + cam.f * cam.height / st.z_end
            canvas.polygon([(x, y_top), (xe, y_top), (xe, y_bot), (x, y_bot)], random_color(rng) * 0.5 + 80, BUILDING)
            x = xe
