"""Procedural street scenes with exact ground truth, in the Cityscapes folder layout.

``esnet synth --out DIR --train N --val M --seed S [--size 2048x1024]`` writes::

    DIR/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    DIR/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    DIR/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
    DIR/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  (16-bit, id*1000+k)

so the Cityscapes tools and :mod:`esnet_ros.data.datasets` read it unchanged.

The scenes are seen from a pinhole camera 1.2-1.7 m above a flat street: a perspective road with
lane markings (and sometimes a crosswalk), curbs and tiled sidewalks, grass strips, facades with
window grids, tree lines, trees, hedges, street lamps, traffic signs and traffic lights, cars and
buses (rear, front and side faces in perspective), pedestrians and parked bicycles, and now and
then the ego vehicle's hood (Cityscapes' "ego vehicle", ignored in training and evaluation).
Lighting, tint, colors, textures, cast shadows, noise, blur, camera height, focal length and
horizon vary per scene; objects occlude each other in depth order. 13 of the 19 Cityscapes train
classes appear (not wall, fence, truck, train, rider, motorcycle): of trucks and buses, and of
riders and bicycles, the generator draws buses and bicycles, so that the demo model's classes are
told apart by shape and context alone.

Everything is drawn in world units (meters) and projected, so a scene looks the same at any
resolution; only the smallest structures have a minimum size in pixels (poles and traffic light
housings ``width / 64``, signs ``width / 36``, bicycle frames ``width / 128``) and people and
bicycles stay within 18 m, so that they stay learnable at a 256x128 network input.

Python API (no rclpy needed; the ROS synthetic camera uses it)::

    rng = numpy.random.default_rng(seed)
    image, train_ids = render_scene(rng, 1280, 720)                  # RGB uint8 (H,W,3), (H,W) uint8
    image, label_ids = render_scene(rng, 1280, 720, label_ids=True)  # Cityscapes labelIds instead

The same generator state always gives the same scene.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import time
from dataclasses import dataclass

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import id2label, name2label

from esnet_ros.core.labels import cityscapes

__all__ = [
    "render_scene",
    "write_dataset",
    "scene_rng",
    "label_ids_to_train_ids",
    "CLASSES_DRAWN",
    "TRAIN_CITIES",
    "VAL_CITIES",
    "add_arguments",
    "run",
]

log = logging.getLogger(__name__)

_ID = {name: name2label[name].id for name in (
    "ego vehicle", "road", "sidewalk", "building", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "car", "bus", "bicycle",
)}
EGO, ROAD, SIDEWALK, BUILDING = _ID["ego vehicle"], _ID["road"], _ID["sidewalk"], _ID["building"]
POLE, LIGHT, SIGN, VEGETATION = _ID["pole"], _ID["traffic light"], _ID["traffic sign"], _ID["vegetation"]
TERRAIN, SKY, PERSON = _ID["terrain"], _ID["sky"], _ID["person"]
CAR, BUS, BICYCLE = _ID["car"], _ID["bus"], _ID["bicycle"]

#: Cityscapes class names that the generator draws (the ego vehicle is drawn but ignored).
CLASSES_DRAWN = tuple(name for name in _ID if name != "ego vehicle")
TRAIN_CITIES = ("synthbourg", "synthhausen", "synthstadt")
VAL_CITIES = ("synthville",)
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


_TRAIN_ID_LUT = cityscapes().raw_to_train_lut()
_HAS_INSTANCES = np.zeros(256, bool)
_HAS_INSTANCES[[i for i, lab in id2label.items() if 0 <= i < 256 and lab.hasInstances]] = True


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds -> trainIds (255 for classes ignored in evaluation)."""
    return _TRAIN_ID_LUT[label_ids]


# --------------------------------------------------------------------------------------------
# Drawing primitives
# --------------------------------------------------------------------------------------------

_SHIFT = 4  # sub-pixel precision of OpenCV drawing (coordinates * 16)


def _fix(points) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 2)


@dataclass(frozen=True)
class _Camera:
    """Pinhole camera over a flat ground; world X right, Y up (0 = ground), Z forward (m)."""

    f: float
    cx: float
    horizon: float
    height: float

    def project(self, X, Y, Z) -> np.ndarray:
        X, Y, Z = np.broadcast_arrays(np.asarray(X, float), np.asarray(Y, float), np.asarray(Z, float))
        return np.stack([self.cx + self.f * X / Z, self.horizon + self.f * (self.height - Y) / Z], -1)


class _Canvas:
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
        return int(label) * 1000 + self.object_index if _HAS_INSTANCES[label] and self.object_index else 0

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
        pts = [_fix(points)]
        cv2.fillPoly(self.image, pts, self._color(color), cv2.LINE_AA, _SHIFT)
        if label is not None:
            cv2.fillPoly(self.label, pts, int(label), cv2.LINE_8, _SHIFT)
            cv2.fillPoly(self.instance, pts, self._instance_value(label), cv2.LINE_8, _SHIFT)

    def line(self, p0, p1, width_px: float, color, label: int | None) -> None:
        """A thick segment as a polygon (exact sub-pixel width, at least ``min_px``)."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        d = p1 - p0
        n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-6) * max(width_px, self.min_px) / 2
        self.polygon([p0 + n, p1 + n, p1 - n, p0 - n], color, label)

    def ellipse(self, center, axes, color, label: int | None, angle: float = 0.0) -> None:
        c = tuple(int(round(v * (1 << _SHIFT))) for v in center)
        a = tuple(max(1, int(round(v * (1 << _SHIFT)))) for v in axes)
        cv2.ellipse(self.image, c, a, angle, 0, 360, self._color(color), -1, cv2.LINE_AA, _SHIFT)
        if label is not None:
            cv2.ellipse(self.label, c, a, angle, 0, 360, int(label), -1, cv2.LINE_8, _SHIFT)
            cv2.ellipse(self.instance, c, a, angle, 0, 360, self._instance_value(label), -1, cv2.LINE_8, _SHIFT)


def _noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth value noise in [0, 1] with features about ``cell`` pixels wide."""
    gh, gw = int(height / cell) + 2, int(width / cell) + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _vary(rng: np.random.Generator, color, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, amount, 3), 0, 255)


def _random_color(rng: np.random.Generator) -> np.ndarray:
    """Any color: saturated, pastel, gray, white or black (so no class owns a color)."""
    kind = rng.random()
    if kind < 0.35:
        return np.full(3, rng.uniform(15, 235), np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(40, 255), rng.integers(40, 250)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


# --------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------


@dataclass
class _Street:
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


def _make_street(rng: np.random.Generator) -> _Street:
    lanes = int(rng.integers(2, 5))
    lane_width = rng.uniform(3.0, 3.8)
    cam = (rng.integers(0, lanes) + rng.uniform(0.3, 0.7)) * lane_width
    road_left, road_right = -cam, lanes * lane_width - cam
    walk_left = road_left - rng.uniform(1.8, 5.0)
    walk_right = road_right + rng.uniform(1.8, 5.0)
    grass = rng.uniform(1.0, 5.0, 2) * (rng.random(2) < 0.45)
    return _Street(
        road_left, road_right, lanes, lane_width, walk_left, walk_right,
        walk_left - grass[0], walk_right + grass[1],
        rng.uniform(70, 200) if rng.random() < 0.6 else np.inf,
    )


def _draw_sky(rng, canvas: _Canvas, cam: _Camera) -> None:
    h, w = canvas.label.shape
    kind = rng.random()
    if kind < 0.55:  # clear blue
        top, bottom = _vary(rng, (60, 120, 200), 20), _vary(rng, (170, 200, 230), 15)
    elif kind < 0.8:  # overcast
        g = rng.uniform(150, 235)
        top, bottom = _vary(rng, (g, g, g + 5), 8), _vary(rng, (g + 10, g + 10, g + 10), 8)
    else:  # dusk
        top, bottom = _vary(rng, (70, 80, 140), 20), _vary(rng, (235, 160, 110), 20)
    t = np.clip(np.arange(h, dtype=np.float32) / max(cam.horizon, 1.0), 0, 1)[:, None, None]
    sky = top * (1 - t) + bottom * t
    clouds = np.clip((_noise(rng, h, w, w / 6) - rng.uniform(0.45, 0.7)) * 3, 0, 1)[..., None]
    sky = sky * (1 - clouds) + _vary(rng, (235, 235, 240), 12) * clouds
    canvas.image[:] = np.broadcast_to(sky, canvas.image.shape)
    canvas.label[:] = SKY


def _draw_ground(rng, canvas: _Canvas, cam: _Camera, st: _Street) -> tuple[np.ndarray, np.ndarray]:
    """Road, markings, curbs, sidewalks and grass; returns the ground's (X, Z) maps."""
    h, w = canvas.label.shape
    dy = np.arange(h, dtype=np.float32)[:, None] + 0.5 - cam.horizon
    # ground distance of each row; above the horizon "infinitely" far (1e6 m), never ground
    Z = np.where(dy > 0.25, cam.f * cam.height / np.maximum(dy, 1e-3), 1e6).astype(np.float32)
    Z = np.broadcast_to(Z, (h, w))
    X = (np.arange(w, dtype=np.float32)[None, :] + 0.5 - cam.cx) * Z / cam.f
    ground = Z < 400
    if np.isfinite(st.z_end):
        ground &= Z < st.z_end + 5

    road = ground & (X >= st.road_left) & (X < st.road_right)
    walk = ground & (((X >= st.walk_left) & (X < st.road_left)) | ((X >= st.road_right) & (X < st.walk_right)))
    grass = ground & ~road & ~walk

    img = canvas.image
    # asphalt
    asphalt = _vary(rng, np.full(3, rng.uniform(55, 125)) + rng.normal(0, 6, 3), 6)
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
        markings |= (Z > z0) & (Z < z0 + rng.uniform(3, 5)) & ((X % 1.0) < 0.5)
    markings &= road
    mark_color = _vary(rng, (235, 235, 230), 8) if rng.random() < 0.8 else _vary(rng, (230, 190, 60), 10)
    img[markings] = mark_color * rng.uniform(0.75, 1.0)
    # sidewalks: tiles and a brighter curb
    walk_color = [(150, 150, 148), (170, 110, 95), (190, 175, 150), (120, 120, 125)][rng.integers(0, 4)]
    walk_color = _vary(rng, walk_color, 14)
    tile = rng.uniform(0.3, 0.8)
    joints = ((X % tile) < 0.04) | ((Z % tile) < 0.04)
    img[walk] = walk_color
    img[walk & joints] = walk_color * 0.8
    curb = walk & ((np.abs(X - st.road_left) < 0.2) | (np.abs(X - st.road_right) < 0.2))
    img[curb] = np.clip(walk_color * 1.15 + 15, 0, 255)
    # grass strips and whatever lies behind the facade line
    grass_color = _vary(rng, [(90, 130, 60), (120, 140, 70), (140, 120, 80)][rng.integers(0, 3)], 15)
    img[grass] = grass_color
    canvas.label[road] = ROAD
    canvas.label[walk] = SIDEWALK
    canvas.label[grass] = TERRAIN
    # shadows cast by the buildings on one side
    if rng.random() < 0.5:
        side = rng.choice([-1, 1])
        reach = rng.uniform(2, 12)
        edge = st.facade_left + reach if side < 0 else st.facade_right - reach
        shadow = ground & ((X < edge) if side < 0 else (X > edge))
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
            colors.append(_vary(rng, (60, 100, 45), 20))
            z += rng.uniform(4, 18)
        else:
            kinds.append(0)
            heights.append(rng.uniform(6, 35))
            colors.append(_random_color(rng) * 0.6 + _vary(rng, (170, 160, 150), 30) * 0.4)
            z += rng.uniform(8, 35)
        windows.append((rng.uniform(2.5, 4.5), rng.uniform(2.8, 3.6), rng.uniform(0.3, 0.7),
                        rng.uniform(0.3, 0.65), rng.uniform(2.5, 4.5), rng.random()))
    return (np.array(starts), np.array(heights), np.array(kinds), np.array(colors), np.array(windows))


def _window_color(rng) -> np.ndarray:
    return _vary(rng, [(40, 50, 70), (90, 110, 140), (150, 170, 190), (30, 30, 35)][rng.integers(0, 4)], 10)


def _draw_facades(rng, canvas: _Canvas, cam: _Camera, st: _Street) -> None:
    h, w = canvas.label.shape
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float32) + 0.5
    win_color = _window_color(rng)
    veg_noise = _noise(rng, 1, w, max(2.0, w / 120))[0]
    leaf = _noise(rng, h, w, max(1.5, w / 300))
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
        window = (((u % wp[:, 0]) / wp[:, 0] > (1 - wp[:, 2]) / 2) & ((u % wp[:, 0]) / wp[:, 0] < (1 + wp[:, 2]) / 2)
                  & ((v % wp[:, 1]) / wp[:, 1] > 0.3) & ((v % wp[:, 1]) / wp[:, 1] < 0.3 + wp[:, 3])
                  & (v > wp[:, 4]) & (v < seg_h - 1.0))
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
            canvas.polygon([(x, y_top), (xe, y_top), (xe, y_bot), (x, y_bot)],
                           _random_color(rng) * 0.5 + 80, BUILDING)
            x = xe


# --------------------------------------------------------------------------------------------
# Objects: each is (distance for depth ordering, callable drawing it)
# --------------------------------------------------------------------------------------------


def _box_faces(cam: _Camera, x0, x1, z0, z1, y0, y1):
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
    return np.array([_face_point(face, s0, t0), _face_point(face, s1, t0),
                     _face_point(face, s1, t1), _face_point(face, s0, t1)])


def _draw_wheels(canvas, cam, face, length, x_side, z0, radius, positions, label):
    dark = np.full(3, 25.0)
    for p in positions:
        zc = z0 + p * length
        c = cam.project(x_side, radius, zc)
        ry = cam.f * radius / zc
        canvas.ellipse(c, (ry * 0.55, ry), dark, label)


def _car(rng, cam: _Camera, x: float, z: float, facing_away: bool):
    width, length, height = rng.uniform(1.65, 1.95), rng.uniform(3.9, 4.9), rng.uniform(1.35, 1.65)
    color = _random_color(rng)
    glass = _window_color(rng)

    def draw(canvas: _Canvas) -> None:
        x0, x1 = x - width / 2, x + width / 2
        belt = height * rng.uniform(0.5, 0.6)
        # shadow under the car (image only)
        canvas.polygon(cam.project([x0 - 0.1, x1 + 0.1, x1 + 0.1, x0 - 0.1], 0, [z - 0.2, z - 0.2, z + length, z + length]),
                       np.full(3, 20.0), None)
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


def _bus(rng, cam: _Camera, x: float, z: float, facing_away: bool):
    width = rng.uniform(2.4, 2.6)
    length = rng.uniform(9, 12.5)
    height = rng.uniform(2.9, 3.3)
    color = _vary(rng, [(230, 200, 40), (200, 40, 40), (235, 235, 235), (40, 90, 170), (60, 150, 80)][rng.integers(0, 5)], 15)
    glass = _window_color(rng)

    def draw(canvas: _Canvas) -> None:
        x0, x1 = x - width / 2, x + width / 2
        canvas.polygon(cam.project([x0, x1, x1, x0], 0, [z - 0.2, z - 0.2, z + length, z + length]),
                       np.full(3, 20.0), None)
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


class _Figure:
    """Local 2D coordinates (u right, v up, meters) of a figure standing at a ground point."""

    def __init__(self, cam: _Camera, x: float, z: float, facing: float = 1.0, squeeze: float = 1.0) -> None:
        self.origin = cam.project(x, 0.0, z)
        self.scale = cam.f / z
        self.sx = facing * squeeze

    def __call__(self, u, v) -> np.ndarray:
        return self.origin + np.array([u * self.sx, -v]) * self.scale

    def px(self, meters: float) -> float:
        return meters * self.scale


def _skin(rng) -> np.ndarray:
    return _vary(rng, [(240, 200, 170), (200, 150, 110), (140, 95, 65), (90, 60, 40)][rng.integers(0, 4)], 8)


def _draw_person_body(canvas, fig: _Figure, rng, colors) -> None:
    label = PERSON
    shirt, pants, skin, hair = colors
    g = rng.uniform(0.85, 1.2)  # girth
    stride = rng.uniform(-0.3, 0.3)
    for side, swing in ((-1, stride), (1, -stride)):
        canvas.line(fig(0.08 * side * g, 0.9), fig(0.08 * side * g + swing, 0.05), fig.px(0.15 * g), pants, label)
        canvas.line(fig(0.08 * side * g + swing - 0.05, 0.04), fig(0.08 * side * g + swing + 0.12, 0.04),
                    fig.px(0.09), (30, 30, 30), label)
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
        canvas.polygon([fig(0.22 * g, 1.0), fig(0.42 * g, 1.0), fig(0.42 * g, 0.7), fig(0.22 * g, 0.7)],
                       _random_color(rng), label)
    head = fig(0.0, 1.6)
    r = fig.px(0.115)
    canvas.ellipse(head, (r, r * 1.1), skin, label)
    canvas.ellipse(head - np.array([0, r * 0.5]), (r * 1.02, r * 0.65), hair, label)


def _person(rng, cam: _Camera, x: float, z: float):
    height = rng.uniform(1.55, 1.95)
    colors = (_random_color(rng), _random_color(rng) * 0.7, _skin(rng),
              _vary(rng, [(30, 25, 20), (90, 60, 30), (200, 170, 110), (120, 120, 120)][rng.integers(0, 4)], 10))
    facing = rng.choice([-1.0, 1.0])

    def draw(canvas: _Canvas) -> None:
        fig = _Figure(cam, x, z, facing)
        fig.scale *= height / 1.75
        _draw_person_body(canvas, fig, rng, colors)

    return z, draw


def _draw_bicycle(canvas, fig: _Figure, rng, color) -> None:
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
    cv2.fillPoly(inner, [_fix(frame)], 1, cv2.LINE_8, 4)
    inside = inner.astype(bool)
    canvas.image[inside] = back[inside] * 0.55 + 20  # spokes and frame interior show the background
    canvas.paint(inside, BICYCLE)
    for a, b in ((rear, bracket), (bracket, head), (head, seat), (seat, bracket), (seat, rear), (head, front), (head, bar)):
        canvas.line(a, b, lw, color, BICYCLE)
    canvas.line(fig(-0.25, 0.9), fig(-0.05, 0.9), lw, (30, 30, 30), BICYCLE)  # saddle
    canvas.line(fig(0.28, 1.02), fig(0.44, 1.02), lw, (30, 30, 30), BICYCLE)  # handlebar


def _bicycle(rng, cam: _Camera, x: float, z: float):
    color = _random_color(rng)
    facing = rng.choice([-1.0, 1.0])
    squeeze = rng.uniform(0.55, 1.0)

    def draw(canvas: _Canvas) -> None:
        _draw_bicycle(canvas, _Figure(cam, x, z, facing, squeeze), rng, color)

    return z, draw


def _pole_width(canvas: _Canvas, fig: _Figure, meters: float) -> float:
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
        canvas.polygon([(cx - r * 1.2, cy - r * 0.7), (cx + r * 1.2, cy - r * 0.7),
                        (cx + r * 1.2, cy + r * 0.7), (cx - r * 1.2, cy + r * 0.7)], color, SIGN)


def _light_box(canvas, top_center, width_px, rng) -> None:
    housing = _vary(rng, [(25, 25, 25), (40, 55, 40), (200, 170, 40)][rng.integers(0, 3)], 6)
    cx, cy = top_center
    hgt = width_px * 2.6
    canvas.polygon([(cx - width_px / 2, cy), (cx + width_px / 2, cy), (cx + width_px / 2, cy + hgt),
                    (cx - width_px / 2, cy + hgt)], housing, LIGHT)
    lit = rng.integers(0, 3)
    for k, color in enumerate(((255, 40, 30), (255, 190, 30), (40, 230, 90))):
        c = np.array(color, float) if k == lit else np.array(color, float) * 0.25 + 20
        canvas.ellipse((cx, cy + hgt * (0.18 + 0.32 * k)), (width_px * 0.32,) * 2, c, LIGHT)


def _pole(rng, cam: _Camera, x: float, z: float, kind: str, toward_road: float):
    """A street lamp, a sign post or a traffic light post (``toward_road`` is +1 or -1 in X)."""
    height = {"lamp": rng.uniform(6, 9), "sign": rng.uniform(2.4, 3.4), "light": rng.uniform(3.2, 4.5)}[kind]
    color = _vary(rng, [(90, 95, 100), (60, 70, 60), (150, 150, 150), (40, 40, 40)][rng.integers(0, 4)], 10)
    with_sign = kind == "sign" or (kind == "lamp" and rng.random() < 0.4)
    overhead = kind == "light" and rng.random() < 0.4
    sign_size = rng.uniform(0.6, 0.95)

    def draw(canvas: _Canvas) -> None:
        fig = _Figure(cam, x, z)
        wpx = _pole_width(canvas, fig, rng.uniform(0.15, 0.28))
        top = fig(0, height)
        canvas.line(fig(0, 0), top, wpx, color, POLE)
        if kind == "lamp":
            end = cam.project(x + toward_road * 1.8, height, z)
            canvas.line(top, end, wpx * 0.8, color, POLE)
            canvas.polygon([end + (-wpx * 1.5, 0), end + (wpx * 1.5, 0), end + (wpx, wpx * 1.2), end + (-wpx, wpx * 1.2)],
                           color * 0.8, POLE)
        if with_sign:
            _sign_plate(canvas, fig(0, 2.2 if kind == "lamp" else height - sign_size / 2), max(fig.px(sign_size), 7 * canvas.min_px), rng)
        if kind == "light":
            box_w = max(fig.px(rng.uniform(0.38, 0.5)), 4 * canvas.min_px)
            if overhead:
                end = cam.project(x + toward_road * rng.uniform(3, 6), height, z)
                canvas.line(top, end, wpx * 0.8, color, POLE)
                _light_box(canvas, end + (0, wpx * 0.4), box_w, rng)
            else:
                _light_box(canvas, top - (0, box_w * 0.3), box_w, rng)

    return z, draw


def _tree(rng, cam: _Camera, x: float, z: float):
    trunk_h = rng.uniform(2.0, 3.5)
    crown_r = rng.uniform(1.3, 3.0)
    blobs = [(rng.normal(0, crown_r * 0.5), trunk_h + crown_r + rng.normal(0, crown_r * 0.4),
              crown_r * rng.uniform(0.5, 0.9)) for _ in range(int(rng.integers(4, 9)))]
    leaf_color = _vary(rng, [(50, 100, 40), (80, 120, 50), (40, 70, 35), (160, 120, 40)][rng.integers(0, 4)], 12)
    bark = _vary(rng, (80, 65, 50), 10)

    def draw(canvas: _Canvas) -> None:
        fig = _Figure(cam, x, z)
        canvas.line(fig(0, 0), fig(0, trunk_h + crown_r), max(fig.px(0.3), 2 * canvas.min_px), bark, VEGETATION)
        for u, v, r in blobs:
            shade = rng.uniform(0.7, 1.2)
            canvas.ellipse(fig(u, v), (fig.px(r), fig.px(r * rng.uniform(0.8, 1.1))), leaf_color * shade, VEGETATION)

    return z, draw


def _hedge(rng, cam: _Camera, x: float, z0: float, z1: float, side: float):
    height = rng.uniform(0.6, 1.6)
    color = _vary(rng, (60, 100, 45), 15)

    def draw(canvas: _Canvas) -> None:
        x_near = x - side * 0.8
        near, face, top = _box_faces(cam, min(x, x_near), max(x, x_near), z0, z1, 0.0, height)
        for f_, k in ((top, 1.1), (face, 0.9), (near, 1.0)):
            if f_ is not None:
                canvas.polygon(f_, color * k, VEGETATION)

    return z0, draw


def _ego_hood(rng, canvas: _Canvas) -> None:
    h, w = canvas.label.shape
    rise = h * rng.uniform(0.05, 0.12)
    color = _random_color(rng) * 0.6
    canvas.ellipse((w / 2 + rng.normal(0, w * 0.03), h + rise * 0.6), (w * 0.8, rise * 1.6), color, EGO)
    canvas.ellipse((w / 2, h + rise * 0.6), (w * 0.5, rise * 0.7), color * 1.4 + 30, EGO)  # reflection


def _place_objects(rng, cam: _Camera, st: _Street) -> list:
    objects = []
    lanes_x = [st.road_left + (k + 0.5) * st.lane_width for k in range(st.lanes)]
    oncoming = [x < -st.lane_width * 0.5 for x in lanes_x]  # lanes left of the camera come toward us
    n_lanes_left = sum(oncoming)
    if n_lanes_left == 0:
        oncoming = [False] * st.lanes
    for x_lane, towards in zip(lanes_x, oncoming):
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
            objects.append(_person(rng, cam, x, rng.uniform(4, 18)))
        for _ in range(int(rng.integers(0, 4))):  # parked bicycles
            x = rng.uniform(min(walk_in, walk_out) + 0.5, max(walk_in, walk_out) - 0.5)
            objects.append(_bicycle(rng, cam, x, rng.uniform(4, 14)))
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
        objects.append(_person(rng, cam, rng.uniform(st.road_left, st.road_right), rng.uniform(5, 16)))
    return [o for o in objects if o[0] > 2.5]


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


def _finish(rng, canvas: _Canvas) -> np.ndarray:
    h, w = canvas.label.shape
    img = canvas.image
    amp = _TEXTURE[canvas.label] * rng.uniform(0.6, 1.4)
    fine = _noise(rng, h, w, max(1.2, w / 400)) - 0.5
    blotch = _noise(rng, h, w, w / 25) - 0.5
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
    return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index)])


def _render(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, _Canvas]:
    cam = _Camera(
        f=width * rng.uniform(0.55, 0.8),
        cx=width * rng.uniform(0.42, 0.58),
        horizon=height * rng.uniform(0.36, 0.5),
        height=rng.uniform(1.2, 1.7),
    )
    street = _make_street(rng)
    canvas = _Canvas(height, width)
    _draw_sky(rng, canvas, cam)
    _draw_ground(rng, canvas, cam, street)
    _draw_facades(rng, canvas, cam, street)
    objects = sorted(_place_objects(rng, cam, street), key=lambda o: -o[0])
    for index, (_, draw) in enumerate(objects, start=1):
        canvas.object_index = index
        draw(canvas)
    canvas.object_index = 0
    if rng.random() < 0.3:
        _ego_hood(rng, canvas)
    return _finish(rng, canvas), canvas


def render_scene(rng: np.random.Generator, width: int, height: int, *, label_ids: bool = False,
                 color_order: str = "rgb") -> tuple[np.ndarray, np.ndarray]:
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
        raise TypeError(f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), got {type(rng).__name__}")
    if int(width) < 16 or int(height) < 16:
        raise ValueError(f"width x height = {width}x{height} is too small; use at least 16x16")
    if color_order not in ("rgb", "bgr"):
        raise ValueError(f"color_order={color_order!r} must be one of: rgb, bgr")
    image, canvas = _render(rng, int(width), int(height))
    if color_order == "bgr":
        image = np.ascontiguousarray(image[..., ::-1])
    labels = canvas.label if label_ids else label_ids_to_train_ids(canvas.label)
    return image, labels


# --------------------------------------------------------------------------------------------
# Dataset writer and CLI
# --------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``"2048x1024"`` -> ``(2048, 1024)``."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r} must look like WIDTHxHEIGHT, e.g. 2048x1024") from None
    if w < 16 or h < 16:
        raise ValueError(f"--size {text!r} is too small; use at least 16x16")
    return w, h


def scene_paths(root: pathlib.Path, split: str, city: str, index: int) -> dict[str, pathlib.Path]:
    """Paths of scene ``index`` in the Cityscapes layout: image, labelIds, labelTrainIds, instanceIds."""
    stem = f"{city}_{index:06d}_000019"
    gt = root / "gtFine" / split / city
    return {"image": root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
            **{kind: gt / f"{stem}_gtFine_{kind}.png" for kind in ("labelIds", "labelTrainIds", "instanceIds")}}


def write_dataset(out, *, train: int, val: int, seed: int, size: tuple[int, int] = (2048, 1024),
                  progress: bool = True) -> dict[str, int]:
    """Write ``train`` + ``val`` scenes under ``out`` in the Cityscapes layout; returns counts per split."""
    root = pathlib.Path(out)
    width, height = size
    counts = {}
    for split, n, cities in (("train", train, TRAIN_CITIES), ("val", val, VAL_CITIES)):
        if n < 0:
            raise ValueError(f"--{split} {n}: the number of scenes must be >= 0")
        iterator = range(n)
        if progress and n:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc=f"synth {split}", unit="scene")
        for i in iterator:
            city = cities[i % len(cities)]
            image, canvas = _render(scene_rng(seed, split, i), width, height)
            paths = scene_paths(root, split, city, i)
            arrays = {"image": image[..., ::-1], "labelIds": canvas.label,
                      "labelTrainIds": label_ids_to_train_ids(canvas.label), "instanceIds": canvas.instance_ids()}
            for kind, path in paths.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(path), arrays[kind]):
                    raise FileNotFoundError(f"could not write {path}; check that --out {out} is writable")
        counts[split] = n
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (Cityscapes layout)")
    parser.add_argument("--train", type=int, default=100, help="number of training scenes")
    parser.add_argument("--val", type=int, default=20, help="number of validation scenes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (scenes are deterministic per seed)")
    parser.add_argument("--size", default="2048x1024", help="image size WIDTHxHEIGHT (default 2048x1024)")


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    start = time.perf_counter()
    counts = write_dataset(args.out, train=args.train, val=args.val, seed=args.seed, size=size)
    log.info("wrote %d train + %d val scenes (%dx%d) to %s in %.1f s", counts["train"], counts["val"],
             size[0], size[1], args.out, time.perf_counter() - start)
    return 0
