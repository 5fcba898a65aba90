"""esnet_ros.ros.images: cv_bridge encodings, zero-copy views, and every rejection with its cause."""

from __future__ import annotations

import array
import types

import cv2
import numpy as np
import pytest

from esnet_ros.ros.images import (
    CAUSES,
    ImageConversionError,
    ImagePublisherBuffer,
    compressed_to_color_input,
    encoding_info,
    image_to_numpy,
    to_color_input,
)

RNG = np.random.default_rng(7)


def make_image(array_hwc: np.ndarray, encoding: str, *, pad: int = 0, bigendian: int = 0, **overrides):
    """A duck-typed sensor_msgs/Image (ros_image reads messages by attribute)."""
    a = np.asarray(array_hwc)
    h, w = a.shape[:2]
    if bigendian and a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">"))
    rows = a.reshape(h, -1).view(np.uint8)
    step = rows.shape[1] + pad
    padded = np.zeros((h, step), np.uint8)
    padded[:, : rows.shape[1]] = rows
    fields = dict(height=h, width=w, encoding=encoding, step=step, is_bigendian=bigendian,
                  data=array.array("B", padded.tobytes()))
    fields.update(overrides)
    return types.SimpleNamespace(**fields)


def compressed(data: bytes, fmt: str = "bgr8; jpeg compressed bgr8"):
    return types.SimpleNamespace(format=fmt, data=array.array("B", data))


def rejected(cause: str, fn, *args, **kwargs) -> str:
    with pytest.raises(ImageConversionError) as info:
        fn(*args, **kwargs)
    assert info.value.cause == cause, f"expected cause {cause}, got {info.value.cause}: {info.value}"
    assert info.value.cause in CAUSES
    return str(info.value)


# -- the five camera encodings -----------------------------------------------------------------------


@pytest.mark.parametrize("encoding, channels, order, overlay", [
    ("rgb8", 3, "rgb", "rgb8"), ("bgr8", 3, "bgr", "bgr8"), ("rgba8", 4, "rgb", "rgb8"),
    ("bgra8", 4, "bgr", "bgr8"), ("mono8", 1, "rgb", "rgb8"),
])
@pytest.mark.parametrize("pad", [0, 5])
def test_color_encodings_are_zero_copy_views(encoding, channels, order, overlay, pad):
    pixels = RNG.integers(0, 256, (7, 11, channels), dtype=np.uint8)
    msg = make_image(pixels if channels > 1 else pixels[:, :, 0], encoding, pad=pad)
    out = to_color_input(msg)
    assert out.color_order == order and out.overlay_encoding == overlay
    assert out.image.shape == (7, 11, 3) and out.image.dtype == np.uint8
    expected = np.repeat(pixels, 3, axis=2) if channels == 1 else pixels[:, :, :3]
    np.testing.assert_array_equal(out.image, expected)
    assert np.shares_memory(out.image, np.frombuffer(msg.data, np.uint8)), "conversion must not copy"


def test_generic_8uc_encodings_follow_cv_bridge():
    pixels = RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    out = to_color_input(make_image(pixels, "8UC3"))
    assert out.color_order == "bgr"
    np.testing.assert_array_equal(out.image, pixels)


def test_odd_sizes_keep_their_shape():
    for h, w in ((1, 1), (3, 1001), (1001, 3)):
        pixels = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        np.testing.assert_array_equal(to_color_input(make_image(pixels, "rgb8", pad=3)).image, pixels)


@pytest.mark.parametrize("bigendian", [0, 1])
def test_multibyte_encodings_honour_is_bigendian(bigendian):
    values = np.array([[1, 258, 65535], [4096, 0, 777]], np.uint16)
    msg = make_image(values, "16UC1", bigendian=bigendian)
    np.testing.assert_array_equal(image_to_numpy(msg), values)
    depth = np.array([[0.5, -2.25]], np.float32)
    np.testing.assert_array_equal(image_to_numpy(make_image(depth, "32FC1", bigendian=bigendian)), depth)
    # the same bytes read with the wrong flag give different values: the flag matters
    wrong = make_image(values, "16UC1", bigendian=bigendian)
    wrong.is_bigendian = 1 - bigendian
    assert not np.array_equal(image_to_numpy(wrong), values)


def test_bigendian_flag_is_irrelevant_for_8bit():
    pixels = RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    msg = make_image(pixels, "bgr8")
    msg.is_bigendian = 1
    np.testing.assert_array_equal(to_color_input(msg).image, pixels)


def test_encoding_info_names():
    assert encoding_info("mono16") == (1, np.dtype("u2"))
    assert encoding_info("bayer_rggb8") == (1, np.dtype("u1"))
    assert encoding_info("32FC3") == (3, np.dtype("f4"))
    assert encoding_info("yuv422") == (2, np.dtype("u1"))


# -- rejections --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_grbg16", "yuv422", "16UC1", "32FC1", "mono16", "rgb16"])
def test_unsupported_encodings(encoding):
    channels, dtype = encoding_info(encoding)
    msg = make_image(np.zeros((2, 2, channels), dtype), encoding)
    text = rejected("unsupported_encoding", to_color_input, msg)
    assert encoding in text and "rgb8, bgr8, rgba8, bgra8 or mono8" in text


@pytest.mark.parametrize("encoding", ["", "BGR8", "jpeg", "x" * 5000])
def test_unknown_encodings(encoding):
    msg = make_image(np.zeros((2, 2, 3), np.uint8), "bgr8")
    msg.encoding = encoding
    text = rejected("unknown_encoding", to_color_input, msg)
    assert len(text) < 400, "a huge encoding string must not blow up the log"
    assert ("empty encoding" in text) if encoding == "" else ("unknown encoding" in text)


def test_step_smaller_than_a_row():
    msg = make_image(np.zeros((4, 5, 3), np.uint8), "rgb8", step=14, data=array.array("B", bytes(14 * 4)))
    text = rejected("bad_step", to_color_input, msg)
    assert "step=14" in text and "15 B" in text


@pytest.mark.parametrize("delta, word", [(-1, "shorter"), (+7, "longer"), (-60, "shorter")])
def test_data_not_step_times_height(delta, word):
    msg = make_image(np.zeros((4, 5, 3), np.uint8), "rgb8")
    msg.data = array.array("B", bytes(60 + delta))
    text = rejected("data_size", to_color_input, msg)
    assert word in text and "15*4 = 60" in text


@pytest.mark.parametrize("w, h", [(0, 4), (4, 0), (0, 0)])
def test_zero_size(w, h):
    msg = types.SimpleNamespace(width=w, height=h, encoding="bgr8", step=w * 3, is_bigendian=0, data=array.array("B"))
    assert f"{w}x{h}" in rejected("zero_size", to_color_input, msg)


def test_too_many_pixels():
    msg = make_image(np.zeros((10, 10, 3), np.uint8), "bgr8")
    assert "max_input_pixels=99" in rejected("too_large", to_color_input, msg, max_pixels=99)
    assert to_color_input(msg, max_pixels=100).image.shape == (10, 10, 3)


# -- compressed --------------------------------------------------------------------------------------


def smooth_image(h=24, w=32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], -1).astype(np.uint8)


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def test_png_decodes_exactly_in_bgr_order():
    bgr = smooth_image()
    out = compressed_to_color_input(compressed(encode(".png", bgr), "bgr8; png compressed bgr8"))
    assert out.color_order == "bgr" and out.overlay_encoding == "bgr8"
    np.testing.assert_array_equal(out.image, bgr)


def test_jpeg_from_an_rgb8_camera_comes_back_rgb():
    bgr = smooth_image()
    out = compressed_to_color_input(compressed(encode(".jpg", bgr), "rgb8; jpeg compressed bgr8"))
    assert out.color_order == "rgb" and out.overlay_encoding == "rgb8"
    assert np.abs(out.image.astype(int) - bgr[:, :, ::-1]).mean() < 4


def test_gray_png_is_accepted():
    gray = smooth_image()[:, :, 0]
    out = compressed_to_color_input(compressed(encode(".png", gray), "mono8; png compressed mono8"))
    np.testing.assert_array_equal(out.image[:, :, 1], gray)


def test_compressed_rejections():
    jpg, png = encode(".jpg", smooth_image()), encode(".png", smooth_image())
    rejected("compressed_empty", compressed_to_color_input, compressed(b""))
    assert "JPEG" in rejected("compressed_truncated", compressed_to_color_input, compressed(jpg[: len(jpg) // 2]))
    rejected("compressed_truncated", compressed_to_color_input, compressed(jpg[:40]))
    assert "IEND" in rejected("compressed_truncated", compressed_to_color_input, compressed(png[:-20]))
    bad_marker = jpg[:4] + b"\x00\x05" + jpg[6:]  # APP0 length now points into its payload
    assert "no marker" in rejected("compressed_corrupt", compressed_to_color_input, compressed(bad_marker))
    idat = png.index(b"IDAT") + 8
    bad_zlib = png[:idat] + bytes(b ^ 0x5A for b in png[idat: idat + 40]) + png[idat + 40:]
    assert "could not be decoded" in rejected("compressed_corrupt", compressed_to_color_input, compressed(bad_zlib))
    text = rejected("compressed_format", compressed_to_color_input, compressed(b"GIF89a" + bytes(50), "gif"))
    assert "neither JPEG nor PNG" in text
    png16 = encode(".png", smooth_image().astype(np.uint16) * 257)
    assert "16 bits" in rejected("png_16bit", compressed_to_color_input, compressed(png16))
    rgba = np.dstack([smooth_image(), np.full((24, 32), 200, np.uint8)])
    assert "alpha" in rejected("png_alpha", compressed_to_color_input, compressed(encode(".png", rgba)))


def test_compressed_size_checked_before_decoding():
    big = encode(".jpg", np.zeros((400, 500, 3), np.uint8))
    assert "500x400" in rejected("too_large", compressed_to_color_input, compressed(big), max_pixels=1000)


# -- outgoing ----------------------------------------------------------------------------------------


@pytest.mark.ros
def test_publisher_buffer_builds_images_and_reuses_its_buffer():
    from std_msgs.msg import Header

    buf = ImagePublisherBuffer()
    header = Header(frame_id="cam")
    header.stamp.sec = 12
    labels = RNG.integers(0, 19, (5, 7), dtype=np.uint8)
    msg = buf.fill(labels, "mono8", header)
    assert (msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian) == (5, 7, 7, "mono8", 0)
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 12
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(5, 7), labels)
    first = msg.data
    color = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = buf.fill(color, "rgb8", header)
    assert msg.step == 21
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(5, 7, 3), color)
    again = buf.fill(color, "rgb8", header)
    assert again.data is msg.data, "same size: the buffer is reused, not reallocated"
    assert first is not msg.data
    with pytest.raises(ValueError, match="does not match encoding"):
        buf.fill(color, "mono8", header)
    # round trip through the reader
    back = to_color_input(types.SimpleNamespace(**{k: getattr(again, k) for k in
                                                   ("height", "width", "encoding", "step", "is_bigendian", "data")}))
    np.testing.assert_array_equal(back.image, color)
