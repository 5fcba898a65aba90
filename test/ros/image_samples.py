"""Image messages and compressed payloads shared by test_images.py and test_cv_bridge_parity.py.

JPEGs with EXIF and PNGs of the color types OpenCV cannot write are built by hand here, so the
tests need nothing beyond OpenCV and NumPy.
"""

from __future__ import annotations

import array
import struct
import types
import zlib

import cv2
import numpy as np


def make_image(array_hwc: np.ndarray, encoding: str, *, pad: int = 0, bigendian: int = 0, **overrides):
    """A duck-typed sensor_msgs/Image (ros_image reads messages by attribute); ``pad`` bytes per row."""
    a = np.asarray(array_hwc)
    h, w = a.shape[:2]
    if bigendian and a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">"))
    rows = a.reshape(h, -1).view(np.uint8)
    step = rows.shape[1] + pad
    padded = np.zeros((h, step), np.uint8)
    padded[:, : rows.shape[1]] = rows
    fields = {
        "height": h,
        "width": w,
        "encoding": encoding,
        "step": step,
        "is_bigendian": bigendian,
        "data": array.array("B", padded.tobytes()),
    }
    fields.update(overrides)
    return types.SimpleNamespace(**fields)


def compressed(data: bytes, fmt: str = "bgr8; jpeg compressed bgr8"):
    """A duck-typed sensor_msgs/CompressedImage."""
    return types.SimpleNamespace(format=fmt, data=array.array("B", data))


def smooth_image(h: int = 24, w: int = 32) -> np.ndarray:
    """(H,W,3) uint8 gradients: JPEG keeps them within a few levels."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], -1).astype(np.uint8)


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def decode(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an Exif APP1 segment right after SOI: big-endian TIFF, IFD0 holding only Orientation."""
    ifd = struct.pack(
        ">HHHIHHI", 1, 0x0112, 3, 1, orientation, 0, 0
    )  # 1 entry: tag, SHORT, count 1, value; no next IFD
    payload = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def png_bytes(pixels: np.ndarray, color_type: int, *chunks: tuple[bytes, bytes]) -> bytes:
    """A PNG written by hand (8 bits, no filter) for color types OpenCV's encoder cannot write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[i].tobytes() for i in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + b"".join(chunk(k, d) for k, d in chunks)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def gray_alpha_png() -> tuple[bytes, np.ndarray]:
    """A gray+alpha PNG and its gray plane."""
    gray = smooth_image()[:, :, 0]
    return png_bytes(np.dstack([gray, np.full_like(gray, 7)]), 4), gray


def palette_png() -> tuple[bytes, np.ndarray]:
    """A palette PNG with transparency (tRNS) and its pixels in BGR order."""
    palette = np.array([[10 * i, 255 - 10 * i, 3 * i] for i in range(16)], np.uint8)  # RGB entries
    index = (np.arange(24 * 32).reshape(24, 32) % 16).astype(np.uint8)
    data = png_bytes(index, 3, (b"PLTE", palette.tobytes()), (b"tRNS", bytes(range(0, 256, 16))))
    return data, palette[index][:, :, ::-1]


def compressed_cases() -> dict[str, tuple[bytes, str]]:
    """Every kind of CompressedImage the node accepts: ``{name: (payload, format string)}``."""
    bgr = smooth_image()
    gray = bgr[:, :, 1]
    bgra = np.dstack([bgr, np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)])
    jpg = encode(".jpg", bgr)
    return {
        "jpeg_bgr8": (jpg, "bgr8; jpeg compressed bgr8"),
        "jpeg_rgb8": (jpg, "rgb8; jpeg compressed bgr8"),
        "jpeg_rgba8": (jpg, "rgba8; jpeg compressed bgr8"),
        "jpeg_exif_orientation_6": (with_exif_orientation(jpg, 6), "bgr8; jpeg compressed bgr8"),
        "jpeg_exif_orientation_3_rgb8": (with_exif_orientation(jpg, 3), "rgb8; jpeg compressed bgr8"),
        "jpeg_trailing_bytes": (jpg + b"\x00" * 16 + b"tail", "bgr8; jpeg compressed bgr8"),
        "jpeg_mono8": (encode(".jpg", gray), "mono8; jpeg compressed mono8"),
        "png_bgr8": (encode(".png", bgr), "bgr8; png compressed bgr8"),
        "png_rgb8": (encode(".png", bgr), "rgb8; png compressed bgr8"),
        "png_trailing_bytes": (encode(".png", bgr) + b"tail", "bgr8; png compressed bgr8"),
        "png_mono8": (encode(".png", gray), "mono8; png compressed mono8"),
        "png_bgra8": (encode(".png", bgra), "bgra8; png compressed bgra8"),
        "png_rgba8": (encode(".png", bgra), "rgba8; png compressed bgra8"),
        "png_gray_alpha": (gray_alpha_png()[0], "mono8; png compressed mono8"),
        "png_palette_trns": (palette_png()[0], "bgr8; png compressed bgr8"),
    }
