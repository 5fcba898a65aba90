"""Depth images to 3-D points on the labels' grid: units, resampling, intrinsics, packing. NumPy only.

What turns a depth image and a camera_info into the organized point cloud a planner fuses with the labels:

- :func:`depth_to_metres`: the two depth encodings of ROS (REP 118) to float32 metres, NaN where invalid.
- :func:`resample_nearest`: depth of another size onto the labels' grid, by nearest neighbour (a depth
  edge is never blended into a depth that exists nowhere). Each axis of the depth must be an integer
  multiple or an integer divisor of the labels' (e.g. depth 640x480 onto labels 320x240 or 1280x960): only
  then does each label pixel have one depth pixel at its own position. Any other size is refused.
- :func:`scale_intrinsics`: K, P and the ROI of a camera_info scaled to another resolution, as
  image_pipeline's ``image_proc::ResizeNode`` scales them (``image_proc/src/resize.cpp``, rolling 5.0.1):
  ``fx, cx, P[0,3]`` times ``sx``, ``fy, cy`` times ``sy``, ROI truncated to ints. Note that this is
  *not* the pixel-centre form ``c' = (c + 0.5) s - 0.5``: ROS (image_proc, image_geometry's binning) scales
  ``c`` itself, and we follow it so that our camera_info equals the one image_proc would publish for the
  same resize. With integer ratios and :func:`resample_nearest` it is also exact: label pixel ``u'`` then
  looks along the ray of camera pixel ``u' / s``, which is the pixel whose depth it takes.
- :func:`organized_points`: ``(H,W,3)`` x, y, z in the camera's optical frame by the pinhole model.
- :func:`pack_rgb_float`: colors as PCL and rviz2 read a ``rgb`` field (``0x00RRGGBB`` viewed as float32).
- :func:`check_camera_info`: refuses an uncalibrated camera_info or one for another image size.

Sizes are ``(height, width)`` throughout, as NumPy shapes are.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEPTH_ENCODINGS",
    "depth_to_metres",
    "resample_nearest",
    "scale_intrinsics",
    "organized_points",
    "pack_rgb_float",
    "unpack_rgb_float",
    "check_camera_info",
]

#: the depth encodings accepted, with the dtype each carries (REP 118)
DEPTH_ENCODINGS = {"16UC1": np.dtype(np.uint16), "32FC1": np.dtype(np.float32)}


def depth_to_metres(depth: np.ndarray, encoding: str, out: np.ndarray | None = None) -> np.ndarray:
    """A depth image as ``(H,W) float32`` metres, NaN where the camera measured nothing.

    ``16UC1``: uint16 millimetres, 0 is invalid. ``32FC1``: float32 metres; 0, NaN, +-inf and negative
    values are invalid (no point lies behind the camera). ``out``: an ``(H,W) float32`` array to fill.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(
            f"depth encoding={encoding!r} is not supported; publish depth as 16UC1 (uint16 mm) "
            f"or 32FC1 (float32 m), as REP 118 defines"
        )
    dtype = DEPTH_ENCODINGS[encoding]
    if depth.ndim != 2 or depth.dtype != dtype:
        raise ValueError(
            f"depth array {depth.shape} {depth.dtype} does not match encoding={encoding} (one channel of {dtype})"
        )
    if out is None:
        out = np.empty(depth.shape, np.float32)
    elif out.shape != depth.shape or out.dtype != np.float32:
        raise ValueError(f"out must be {depth.shape} float32, got {out.shape} {out.dtype}")
    if encoding == "16UC1":
        np.divide(depth, np.float32(1000.0), out=out, dtype=np.float32)  # correctly rounded: 1500 mm -> 1.5
        out[depth == 0] = np.nan
    else:
        np.copyto(out, depth)
        with np.errstate(invalid="ignore"):
            out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def _axis_index(src: int, dst: int, axis: str, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> slice | None:
    """A slice that takes every k-th sample (src = k * dst), or None when dst = k * src (repeat)."""
    if src % dst == 0:
        return slice(None, None, src // dst)
    if dst % src == 0:
        return None
    raise ValueError(
        f"depth size {src_hw[0]}x{src_hw[1]} (HxW) does not fit the labels' {dst_hw[0]}x{dst_hw[1]}: "
        f"its {axis} {src} is neither a multiple nor a divisor of {dst}, so depth pixels would fall "
        f"between label pixels; register the depth to the labels' size or to an integer multiple or "
        f"divisor of it on each axis (e.g. {dst_hw[0] * 2}x{dst_hw[1] * 2})"
    )


def resample_nearest(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h,w)`` depth -> ``(H,W)`` by nearest neighbour, for sizes that are integer multiples or divisors.

    On each axis, a depth k times larger keeps every k-th sample (the first of each block of k); a depth k
    times smaller repeats each sample k times. This is ``floor(i * h / H)``, the rule of OpenCV's and torch's
    ``nearest``. The depth is returned unchanged when the sizes match. Raises ``ValueError`` naming both
    sizes when an axis neither divides nor is divided by the other (see the module docstring).
    """
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H,W), got shape {depth.shape}")
    (h, w), (H, W) = depth.shape, (int(size[0]), int(size[1]))
    if min(h, w, H, W) <= 0:
        raise ValueError(f"sizes must be positive: depth {h}x{w}, labels {H}x{W}")
    if (h, w) == (H, W):
        return depth
    rows = _axis_index(h, H, "height", (h, w), (H, W))
    cols = _axis_index(w, W, "width", (h, w), (H, W))
    out = depth[rows or slice(None), cols or slice(None)]
    if rows is None:
        out = np.repeat(out, H // h, axis=0)
    if cols is None:
        out = np.repeat(out, W // w, axis=1)
    return np.ascontiguousarray(out)


def scale_intrinsics(
    K: np.ndarray, P: np.ndarray, roi: tuple[int, int, int, int], from_size: tuple[int, int], to_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """K ``(3,3)``, P ``(3,4)`` and ROI ``(x_offset, y_offset, height, width)`` from ``from_size`` to ``to_size``.

    ``K' = diag(sx, sy, 1) K`` and ``P' = diag(sx, sy, 1) P`` with ``sx = W'/W``, ``sy = H'/H``: every entry
    image_proc's resize scales (fx, cx, Tx by sx; fy, cy by sy) is scaled the same, and the skew and ``Ty``
    (zero on a monocular camera, where image_proc leaves them) scale with their row too. ROI offsets and sizes
    are scaled and truncated to ints, as image_proc does. Sizes are ``(height, width)``.
    """
    K = np.asarray(K, np.float64).reshape(3, 3)
    P = np.asarray(P, np.float64).reshape(3, 4)
    (h, w), (H, W) = from_size, to_size
    if min(h, w, H, W) <= 0:
        raise ValueError(
            f"sizes must be positive: from {h}x{w} to {H}x{W} (HxW); a camera_info with "
            f"width=0 or height=0 is not calibrated"
        )
    sx, sy = W / w, H / h
    scale = np.array([[sx], [sy], [1.0]])
    x_offset, y_offset, roi_h, roi_w = roi
    roi_scaled = (int(x_offset * sx), int(y_offset * sy), int(roi_h * sy), int(roi_w * sx))
    return K * scale, P * scale, roi_scaled


def organized_points(depth_m: np.ndarray, K: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``(H,W) float32`` metres -> ``(H,W,3) float32`` x, y, z in the optical frame (x right, y down, z ahead).

    ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``, with ``u, v`` the column and row of each pixel and K
    already scaled to this grid (:func:`scale_intrinsics`). NaN depth gives a NaN point. Pass K for an image
    that is not rectified (its distortion is then ignored) or ``P[:, :3]`` for a rectified one, as
    depth_image_proc does; the skew ``K[0,1]`` is taken as 0, as image_geometry's rays do. ``out``: an
    ``(H,W,3) float32`` array (it may be a strided view, e.g. into a PointCloud2 buffer).
    """
    if depth_m.ndim != 2 or depth_m.dtype != np.float32:
        raise ValueError(f"depth must be (H,W) float32 metres (depth_to_metres), got {depth_m.shape} {depth_m.dtype}")
    K = np.asarray(K, np.float64).reshape(3, 3)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
        raise ValueError(f"K has fx={fx} fy={fy}; both must be positive and finite (is the camera calibrated?)")
    H, W = depth_m.shape
    if out is None:
        out = np.empty((H, W, 3), np.float32)
    elif out.shape != (H, W, 3) or out.dtype != np.float32:
        raise ValueError(f"out must be ({H},{W},3) float32, got {out.shape} {out.dtype}")
    x_ray = ((np.arange(W) - cx) / fx).astype(np.float32)
    y_ray = ((np.arange(H) - cy) / fy).astype(np.float32)
    np.multiply(depth_m, x_ray[None, :], out=out[..., 0])
    np.multiply(depth_m, y_ray[:, None], out=out[..., 1])
    out[..., 2] = depth_m
    return out


def pack_rgb_float(colors: np.ndarray) -> np.ndarray:
    """``(H,W,3) uint8`` RGB -> ``(H,W) float32`` whose bits are ``0x00RRGGBB``: the ``rgb`` field of PCL/rviz2."""
    if colors.ndim != 3 or colors.shape[2] != 3 or colors.dtype != np.uint8:
        raise ValueError(f"colors must be (H,W,3) uint8 RGB, got {colors.shape} {colors.dtype}")
    packed = colors[..., 0].astype(np.uint32) << 16
    packed |= colors[..., 1].astype(np.uint32) << 8
    packed |= colors[..., 2]
    return packed.view(np.float32)


def unpack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pack_rgb_float`: ``(H,W) float32`` packed -> ``(H,W,3) uint8`` RGB."""
    bits = np.ascontiguousarray(rgb, np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def check_camera_info(K: np.ndarray, width: int, height: int, image_size: tuple[int, int]) -> None:
    """Raise ``ValueError`` with the cause unless K is a calibration and ``width x height`` is the image's.

    ``K``: the camera_info's 9 (or 3x3) values; ``width``, ``height``: its size; ``image_size``: the
    ``(height, width)`` of the image it is to go with (the depth or the camera image, before any resize).
    """
    K = np.asarray(K, np.float64).reshape(3, 3)
    if not K.any():
        raise ValueError(
            "camera_info K is all zeros: the camera is not calibrated; calibrate it "
            "(camera_calibration) or load a calibration file in the camera driver"
        )
    if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"camera_info K has fx={K[0, 0]} fy={K[1, 1]}; both must be positive and finite")
    if (int(height), int(width)) != tuple(image_size):
        raise ValueError(
            f"camera_info is for width={width} height={height} but the image is "
            f"width={image_size[1]} height={image_size[0]}: publish the camera_info of this "
            f"image's resolution (image_proc's resize scales both together); binned or "
            f"ROI-cropped camera_infos are not supported"
        )
