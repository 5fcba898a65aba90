"""esnet_ros.ros.images: cv_bridge encodings, zero-copy views, and every rejection with its cause."""

from __future__ import annotations

import array
import os
import pathlib
import re
import sys
import types

import cv2
import numpy as np
import pytest
from image_samples import (
    compressed,
    compressed_cases,
    decode,
    encode,
    gray_alpha_png,
    make_image,
    palette_png,
    smooth_image,
    with_exif_orientation,
)

from esnet_ros.ros.images import (
    CAUSES,
    NAMED_ENCODINGS,
    ImageConversionError,
    ImagePublisherBuffer,
    compressed_to_color_input,
    encoding_info,
    image_to_numpy,
    to_color_input,
)

RNG = np.random.default_rng(7)


def rejected(cause: str, fn, *args, **kwargs) -> str:
    with pytest.raises(ImageConversionError) as info:
        fn(*args, **kwargs)
    assert info.value.cause == cause, f"expected cause {cause}, got {info.value.cause}: {info.value}"
    assert info.value.cause in CAUSES
    return str(info.value)


# -- the five camera encodings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, channels, order, overlay",
    [
        ("rgb8", 3, "rgb", "rgb8"),
        ("bgr8", 3, "bgr", "bgr8"),
        ("rgba8", 4, "rgb", "rgb8"),
        ("bgra8", 4, "bgr", "bgr8"),
        ("mono8", 1, "rgb", "rgb8"),
    ],
)
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
    torch = pytest.importorskip("torch")
    values = np.array([[1, 258, 65535], [4096, 0, 777]], np.uint16)
    msg = make_image(values, "16UC1", bigendian=bigendian)
    np.testing.assert_array_equal(image_to_numpy(msg), values)
    depth = np.array([[0.5, -2.25]], np.float32)
    np.testing.assert_array_equal(image_to_numpy(make_image(depth, "32FC1", bigendian=bigendian)), depth)
    # values right *and* native byte order, whatever the message's: torch refuses byte-swapped arrays
    for array_in, encoding in (
        (values, "16UC1"),
        (values, "mono16"),
        (depth, "32FC1"),
        (np.array([[-3, 70000]], np.int32), "32SC1"),
        (np.dstack([values, values]), "16UC2"),
    ):
        out = image_to_numpy(make_image(array_in, encoding, pad=2, bigendian=bigendian))
        assert out.dtype.isnative and out.dtype == array_in.dtype.newbyteorder("="), (encoding, out.dtype)
        np.testing.assert_array_equal(out, array_in)
        np.testing.assert_array_equal(torch.from_numpy(out).numpy(), array_in)
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
    for yuv in ("nv12", "nv21", "nv24"):  # 2 channels of 8 bits, as sensor_msgs says
        assert encoding_info(yuv) == (2, np.dtype("u1"))


def sensor_msgs_header() -> pathlib.Path | None:
    """sensor_msgs' own image_encodings.hpp: from the venv's wheels, or a sourced ROS 2 install."""
    roots = [pathlib.Path(sys.prefix) / "include"]
    roots += [pathlib.Path(p) / "include" for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for root in roots:
        for name in ("sensor_msgs/sensor_msgs/image_encodings.hpp", "sensor_msgs/image_encodings.hpp"):
            if (root / name).is_file():
                return root / name
    return None


def header_encodings(text: str) -> dict[str, tuple[int, int]]:
    """``{name: (channels, bit depth)}`` for every encoding constant, read from numChannels/bitDepth."""
    names = dict(re.findall(r'const char (\w+)\[\] = "([^"]+)";', text))
    generic = re.compile(re.search(r'cv_type_regex\("([^"]+)"\)', text).group(1))

    def returns(function: str) -> dict[str, int]:
        body = text[text.index(f"int {function}(") :]
        body = body[: body.index("\n}\n")]
        table: dict[str, int] = {}
        for condition, value in re.findall(r"if \(([^{}]*?)\)\s*\{\s*return (\d+);", body):
            for ident in re.findall(r"\b[A-Z][A-Z0-9_]*\b", condition):
                table.setdefault(names[ident], int(value))
        return table

    channels, depths = returns("numChannels"), returns("bitDepth")
    out = {}
    for name in names.values():
        m = generic.fullmatch(name)
        if m:  # the header's own rule: "8UC3" -> 3 channels, atoi("8UC3") = 8 bits
            out[name] = (int(m.group(3) or 1), int(m.group(1)))
        else:
            out[name] = (channels[name], depths[name])
    return out


def test_encodings_table_matches_sensor_msgs_header():
    path = sensor_msgs_header()
    if path is None:
        pytest.skip(
            "sensor_msgs/image_encodings.hpp not found under the venv or AMENT_PREFIX_PATH (make setup installs it)"
        )
    theirs = header_encodings(path.read_text())
    assert len(theirs) >= 50 and theirs["rgb8"] == (3, 8) and theirs["32FC4"] == (4, 32), "header parsed wrongly"
    assert {"nv12", "nv21", "nv24"} <= set(theirs)
    assert set(NAMED_ENCODINGS) == {n for n in theirs if not re.fullmatch(r"\d+[USF]C\d+", n)}
    for name, (channels, depth) in theirs.items():
        ours_channels, dtype = encoding_info(name)
        assert (ours_channels, dtype.itemsize * 8) == (channels, depth), name
        if re.fullmatch(r"\d+[USF]C\d+", name):
            assert dtype.kind == {"U": "u", "S": "i", "F": "f"}[re.search(r"[USF]", name).group()], name


# -- rejections --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_grbg16", "yuv422", "16UC1", "32FC1", "mono16", "rgb16"])
def test_unsupported_encodings(encoding):
    channels, dtype = encoding_info(encoding)
    msg = make_image(np.zeros((2, 2, channels), dtype), encoding)
    text = rejected("unsupported_encoding", to_color_input, msg)
    assert encoding in text and "rgb8, bgr8, rgba8, bgra8 or mono8" in text


@pytest.mark.parametrize("encoding", ["nv12", "nv21", "nv24", "uyvy", "yuyv"])
def test_yuv_encodings_are_refused_with_the_fix(encoding):
    # decided: refused, not converted. cv_bridge cannot read nv12/nv21/nv24 ("Unrecognized image encoding")
    # and their planes (Y then interleaved UV) do not fit the 2 channels sensor_msgs gives them.
    msg = make_image(np.zeros((4, 6, 2), np.uint8), encoding)
    text = rejected("unsupported_encoding", to_color_input, msg)
    assert f"encoding {encoding!r}" in text and "publish rgb8, bgr8" in text and "pixel format to RGB/BGR" in text
    if encoding.startswith("nv"):
        assert "cv_bridge cannot read" in text


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
    bad_zlib = png[:idat] + bytes(b ^ 0x5A for b in png[idat : idat + 40]) + png[idat + 40 :]
    assert "could not be decoded" in rejected("compressed_corrupt", compressed_to_color_input, compressed(bad_zlib))
    text = rejected("compressed_format", compressed_to_color_input, compressed(b"GIF89a" + bytes(50), "gif"))
    assert "neither JPEG nor PNG" in text
    png16 = encode(".png", smooth_image().astype(np.uint16) * 257)
    assert "16 bits" in rejected("png_16bit", compressed_to_color_input, compressed(png16))
    # PNG with alpha is no longer refused (issue 14): see test_png_with_alpha_as_compressed_image_transport_writes_it


# -- compressed exactly as cv_bridge / image_transport decode it (issue 14) -------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_not_applied(orientation):
    bgr = smooth_image(24, 32)  # not square: a 90-degree turn would change the shape
    plain = encode(".jpg", bgr)
    tagged = with_exif_orientation(plain, orientation)
    unrotated = decode(plain)
    # the segment is real: OpenCV's default decode turns the image (this is what the node used to get)
    applied = decode(tagged)
    if orientation >= 5:
        assert applied.shape == (32, 24, 3)
    elif orientation > 1:
        assert applied.shape == (24, 32, 3) and not np.array_equal(applied, unrotated)
    out = compressed_to_color_input(compressed(tagged))
    assert out.image.shape == (24, 32, 3) and out.color_order == "bgr"
    np.testing.assert_array_equal(out.image, unrotated)
    assert np.abs(out.image.astype(int) - bgr).mean() < 4, "pixels where the camera put them"
    rgb = compressed_to_color_input(compressed(tagged, "rgb8; jpeg compressed bgr8"))
    np.testing.assert_array_equal(rgb.image, unrotated[:, :, ::-1])


@pytest.mark.parametrize(
    "tail", [b"\x00", b"\x00" * 64, b"trailing bytes \xff\xd8\xff\xe0 and more", bytes(range(256))]
)
def test_bytes_after_the_end_marker_are_ignored(tail):
    bgr = smooth_image()
    jpg, png = encode(".jpg", bgr), encode(".png", bgr)
    np.testing.assert_array_equal(compressed_to_color_input(compressed(jpg + tail)).image, decode(jpg))
    np.testing.assert_array_equal(
        compressed_to_color_input(compressed(png + tail, "bgr8; png compressed bgr8")).image, bgr
    )
    # really truncated files are still refused, with their cause, trailing bytes or not
    noisy = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # a scan much longer than the headers
    jpg, png = encode(".jpg", noisy), encode(".png", noisy)
    text = rejected("compressed_truncated", compressed_to_color_input, compressed(jpg[: len(jpg) // 2] + tail))
    assert "no EOI marker" in text
    text = rejected("compressed_truncated", compressed_to_color_input, compressed(png[: len(png) // 2] + tail))
    assert "IEND" in text


def test_jpeg_refusals_name_their_cause():
    jpg = encode(".jpg", smooth_image())
    sos = jpg.index(b"\xff\xda")
    text = rejected("compressed_truncated", compressed_to_color_input, compressed(jpg[: sos + 20]))
    assert "no EOI marker after its scan" in text
    sof = jpg.index(b"\xff\xc0")
    assert "frame header" in rejected("compressed_truncated", compressed_to_color_input, compressed(jpg[: sof + 3]))
    no_sof = jpg[:sof] + b"\xff\xfe" + jpg[sof + 2 :]  # the frame header turned into a comment
    assert "no frame header (SOF)" in rejected("compressed_corrupt", compressed_to_color_input, compressed(no_sof))


@pytest.mark.parametrize("fmt, order", [("bgra8; png compressed bgra8", "bgr"), ("rgba8; png compressed bgra8", "rgb")])
def test_png_with_alpha_as_compressed_image_transport_writes_it(fmt, order):
    # compressed_image_transport turns an rgba8 image to bgra8 before PNG-encoding it (OpenCV's order)
    bgr = smooth_image()
    bgra = np.dstack([bgr, np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)])
    out = compressed_to_color_input(compressed(encode(".png", bgra), fmt))
    assert out.color_order == order and out.overlay_encoding == order + "8"
    assert out.image.shape == (24, 32, 3) and out.image.dtype == np.uint8
    np.testing.assert_array_equal(out.image, bgr if order == "bgr" else bgr[:, :, ::-1])


def test_png_gray_alpha_and_palette_transparency_are_accepted():
    data, gray = gray_alpha_png()
    out = compressed_to_color_input(compressed(data, "mono8; png compressed mono8"))
    np.testing.assert_array_equal(out.image, np.repeat(gray[:, :, None], 3, axis=2))
    data, bgr = palette_png()
    out = compressed_to_color_input(compressed(data, "bgr8; png compressed bgr8"))
    np.testing.assert_array_equal(out.image, bgr)


def test_gray_jpeg_is_accepted():
    gray = smooth_image()[:, :, 1]
    jpg = encode(".jpg", gray)
    out = compressed_to_color_input(compressed(jpg, "mono8; jpeg compressed mono8"))
    assert out.color_order == "rgb" and out.overlay_encoding == "rgb8" and out.image.shape == (24, 32, 3)
    np.testing.assert_array_equal(out.image, np.repeat(decode(jpg, cv2.IMREAD_GRAYSCALE)[:, :, None], 3, axis=2))
    assert np.abs(out.image[:, :, 0].astype(int) - gray).mean() < 4


def test_every_compressed_case_is_accepted():
    # the same cases test_cv_bridge_parity.py compares with cv_bridge where it is installed
    for name, (data, fmt) in compressed_cases().items():
        out = compressed_to_color_input(compressed(data, fmt))
        assert out.image.shape == (24, 32, 3) and out.image.dtype == np.uint8, name
        assert out.color_order == ("rgb" if fmt.split(";")[0] in ("rgb8", "rgba8", "mono8") else "bgr"), name


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
    back = to_color_input(
        types.SimpleNamespace(
            **{k: getattr(again, k) for k in ("height", "width", "encoding", "step", "is_bigendian", "data")}
        )
    )
    np.testing.assert_array_equal(back.image, color)
