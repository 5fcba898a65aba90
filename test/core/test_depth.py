"""esnet_ros.core.depth: depth units, nearest resampling, intrinsics scaling, pinhole points, rgb packing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from esnet_ros.core.depth import (
    check_camera_info,
    depth_to_metres,
    organized_points,
    pack_rgb_float,
    resample_nearest,
    scale_intrinsics,
    unpack_rgb_float,
)

FX, FY, CX, CY = 500.0, 400.0, 3.5, 2.25
K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1]])


def test_16uc1_millimetres_with_zero_invalid():
    mm = np.array([[0, 1500], [65535, 1]], np.uint16)
    m = depth_to_metres(mm, "16UC1")
    assert m.dtype == np.float32 and m.shape == (2, 2)
    assert np.isnan(m[0, 0])
    assert m[0, 1] == np.float32(1.5) and m[1, 0] == np.float32(65.535) and m[1, 1] == np.float32(0.001)
    out = np.full((2, 2), 7, np.float32)
    assert depth_to_metres(mm, "16UC1", out=out) is out and np.array_equal(out, m, equal_nan=True)


def test_32fc1_metres_with_zero_nan_inf_and_negative_invalid():
    raw = np.array([[0.0, np.nan, np.inf], [-np.inf, -1.0, 2.5]], np.float32)
    m = depth_to_metres(raw, "32FC1")
    assert np.isnan(m).tolist() == [[True, True, True], [True, True, False]]
    assert m[1, 2] == np.float32(2.5)
    assert raw[1, 2] == np.float32(2.5) and raw[0, 0] == 0  # the input is not touched


def test_other_encodings_and_dtypes_are_refused():
    with pytest.raises(
        ValueError,
        match=r"depth encoding='mono16' is not supported; publish depth as 16UC1 "
        r"\(uint16 mm\) or 32FC1 \(float32 m\)",
    ):
        depth_to_metres(np.zeros((2, 2), np.uint16), "mono16")
    with pytest.raises(ValueError, match=r"depth array \(2, 2\) float32 does not match encoding=16UC1"):
        depth_to_metres(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ValueError, match=r"out must be \(2, 2\) float32"):
        depth_to_metres(np.zeros((2, 2), np.uint16), "16UC1", out=np.zeros((2, 3), np.float32))


def pinhole(u, v, z, fx=FX, fy=FY, cx=CX, cy=CY):
    return ((u - cx) * z / fx, (v - cy) * z / fy, z)


def test_a_fronto_parallel_plane_point_by_point():
    depth = np.full((6, 8), 2.0, np.float32)
    pts = organized_points(depth, K)
    assert pts.shape == (6, 8, 3) and pts.dtype == np.float32
    for v in range(6):
        for u in range(8):
            assert pts[v, u] == pytest.approx(pinhole(u, v, 2.0), rel=1e-6, abs=1e-7), (u, v)
    assert np.all(pts[..., 2] == 2.0)


def test_a_tilted_plane_point_by_point():
    """The plane n . X = d seen through each pixel's ray: every point lies on it and projects back onto its pixel."""
    n, d = np.array([0.3, -0.2, 1.0]), 3.0
    H, W = 6, 8
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    rays = np.stack([(u - CX) / FX, (v - CY) / FY, np.ones_like(u, float)], axis=-1)
    z = (d / (rays @ n)).astype(np.float32)
    pts = organized_points(z, K)
    for row in range(H):
        for col in range(W):
            x, y, zz = (float(c) for c in pts[row, col])
            assert (x, y, zz) == pytest.approx(pinhole(col, row, float(z[row, col])), rel=1e-6, abs=1e-7)
            assert n @ (x, y, zz) == pytest.approx(d, rel=1e-5)
            assert FX * x / zz + CX == pytest.approx(col, abs=1e-4) and FY * y / zz + CY == pytest.approx(row, abs=1e-4)
    assert len(np.unique(pts[..., 2])) > 10  # really tilted


def test_nan_depth_gives_nan_points_only_there():
    depth = np.full((3, 4), 1.0, np.float32)
    depth[1, 2] = np.nan
    pts = organized_points(depth, K)
    assert np.isnan(pts[1, 2]).all()
    assert np.isnan(pts).any(axis=-1).sum() == 1


def test_points_into_a_strided_out_and_bad_intrinsics():
    depth = np.full((3, 4), 1.5, np.float32)
    words = np.zeros((3, 4, 6), np.float32)
    out = words[..., :3]
    assert organized_points(depth, K, out=out) is out
    assert np.array_equal(words[..., :3], organized_points(depth, K)) and not words[..., 3:].any()
    with pytest.raises(ValueError, match=r"K has fx=0.0 fy=400.0; both must be positive"):
        organized_points(depth, np.diag([0.0, FY, 1.0]))
    with pytest.raises(ValueError, match=r"depth must be \(H,W\) float32 metres"):
        organized_points(depth.astype(np.float64), K)


def test_resample_up_down_and_mixed_like_opencv_nearest():
    depth = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert resample_nearest(depth, (4, 6)) is depth
    down = resample_nearest(depth, (2, 3))
    assert np.array_equal(down, depth[::2, ::2]) and down.flags.c_contiguous
    up = resample_nearest(depth, (8, 18))
    assert np.array_equal(up, np.repeat(np.repeat(depth, 2, axis=0), 3, axis=1))
    mixed = resample_nearest(depth, (8, 3))  # rows up, columns down
    assert np.array_equal(mixed, np.repeat(depth[:, ::2], 2, axis=0))
    for size in ((2, 3), (8, 18), (8, 3), (1, 1), (4, 2)):
        want = cv2.resize(depth, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(resample_nearest(depth, size), want), size


def test_resample_keeps_nan_and_never_blends_an_edge():
    depth = np.array([[1.0, 1.0, 9.0, 9.0], [1.0, np.nan, 9.0, 9.0]], np.float32)
    up = resample_nearest(depth, (4, 8))
    assert set(np.unique(up[~np.isnan(up)])) == {1.0, 9.0} and np.isnan(up).sum() == 4


def test_sizes_that_do_not_divide_are_refused():
    with pytest.raises(ValueError) as info:
        resample_nearest(np.zeros((480, 640), np.float32), (256, 512))
    assert str(info.value) == (
        "depth size 480x640 (HxW) does not fit the labels' 256x512: its height 480 is neither a multiple nor a "
        "divisor of 256, so depth pixels would fall between label pixels; register the depth to the labels' size "
        "or to an integer multiple or divisor of it on each axis (e.g. 512x1024)"
    )
    with pytest.raises(ValueError, match="its width 640 is neither a multiple nor a divisor of 600"):
        resample_nearest(np.zeros((480, 640), np.float32), (240, 600))


def test_scale_intrinsics_values_as_image_proc_resize():
    k = np.array([[525.0, 0.5, 319.5], [0, 520.0, 239.5], [0, 0, 1]])
    p = np.array([[525.0, 0.5, 319.5, -39.0], [0, 520.0, 239.5, 3.0], [0, 0, 1, 0]])
    k2, p2, roi2 = scale_intrinsics(k, p, (101, 51, 201, 301), (480, 640), (240, 512))
    sx, sy = 512 / 640, 0.5
    assert np.allclose(k2, [[525 * sx, 0.5 * sx, 319.5 * sx], [0, 520 * sy, 239.5 * sy], [0, 0, 1]])
    want_p = [[525 * sx, 0.5 * sx, 319.5 * sx, -39 * sx], [0, 520 * sy, 239.5 * sy, 3 * sy], [0, 0, 1, 0]]
    assert np.allclose(p2, want_p)
    assert roi2 == (80, 25, 100, 240)  # int(101*0.8), int(51*0.5), int(201*0.5), int(301*0.8): truncated
    k_same, p_same, roi_same = scale_intrinsics(k, p, (0, 0, 0, 0), (480, 640), (480, 640))
    assert np.array_equal(k_same, k) and np.array_equal(p_same, p) and roi_same == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="sizes must be positive: from 0x0 to 240x320"):
        scale_intrinsics(k, p, (0, 0, 0, 0), (0, 0), (240, 320))


@pytest.mark.parametrize("to_size", [(240, 320), (120, 512), (960, 1280)])
def test_a_3d_point_projects_consistently_at_both_resolutions(to_size):
    k = np.array([[525.0, 0, 319.5], [0, 520.0, 239.5], [0, 0, 1]])
    k2, _, _ = scale_intrinsics(k, np.hstack([k, np.zeros((3, 1))]), (0, 0, 0, 0), (480, 640), to_size)
    sy, sx = to_size[0] / 480, to_size[1] / 640
    for point in ([0.4, -0.3, 2.5], [-1.2, 0.8, 4.0], [0.0, 0.0, 1.0]):
        uvw, uvw2 = k @ point, k2 @ point
        u, v = uvw[:2] / uvw[2]
        u2, v2 = uvw2[:2] / uvw2[2]
        assert (u2, v2) == pytest.approx((u * sx, v * sy), abs=1e-9)


def test_points_at_a_divided_size_are_the_cameras_points_subsampled():
    """Resampled depth with scaled K gives, at label pixel u', the camera's point at pixel k u' (same ray)."""
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.5, 6.0, (48, 64)).astype(np.float32)
    k = np.array([[90.0, 0, 31.5], [0, 80.0, 23.5], [0, 0, 1]])
    k2, _, _ = scale_intrinsics(k, np.zeros((3, 4)), (0, 0, 0, 0), (48, 64), (12, 32))
    small = organized_points(resample_nearest(depth, (12, 32)), k2)
    assert np.allclose(small, organized_points(depth, k)[::4, ::2], rtol=1e-6, atol=1e-6)


def test_rgb_packing_bits_and_round_trip():
    colors = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [1, 2, 3]]], np.uint8)
    packed = pack_rgb_float(colors)
    assert packed.dtype == np.float32 and packed.shape == (2, 2)
    assert packed.view(np.uint32).tolist() == [[0xFF0000, 0x00FF00], [0x0000FF, 0x010203]]
    rng = np.random.default_rng(0)
    many = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert np.array_equal(unpack_rgb_float(pack_rgb_float(many)), many)
    with pytest.raises(ValueError, match=r"colors must be \(H,W,3\) uint8 RGB"):
        pack_rgb_float(many[..., :2])


def test_check_camera_info():
    check_camera_info(K.reshape(9), 8, 6, (6, 8))  # fine: returns nothing
    with pytest.raises(ValueError, match="camera_info K is all zeros: the camera is not calibrated; calibrate it"):
        check_camera_info(np.zeros(9), 8, 6, (6, 8))
    with pytest.raises(ValueError, match=r"camera_info K has fx=-1.0 fy=400.0; both must be positive and finite"):
        check_camera_info(np.diag([-1.0, FY, 1.0]), 8, 6, (6, 8))
    with pytest.raises(ValueError) as info:
        check_camera_info(K, 640, 480, (720, 1280))
    assert str(info.value).startswith(
        "camera_info is for width=640 height=480 but the image is width=1280 height=720: "
        "publish the camera_info of this image's resolution"
    )
