"""sensor_msgs Image / CompressedImage <-> NumPy, with cv_bridge's encoding names and semantics.

ROS 2's ``cv_bridge`` is not on PyPI, so this is our own implementation of the part we need:

- :func:`image_to_numpy` turns any Image with a cv_bridge encoding into an ``(H,W)`` or
  ``(H,W,C)`` array that is a **view** of the message's buffer (no copy, no Python loop): row
  padding (``step`` > width x pixel size) is skipped by strides. Multi-byte encodings
  (``mono16``, ``16UC1``, ``32FC1``, ...) are read in the order ``is_bigendian`` names and
  returned in the host's native order (one copy when they differ: torch takes only native).
- :func:`to_color_input` / :func:`compressed_to_color_input` give what the segmenter takes: an
  ``(H,W,3) uint8`` view plus the channel order, for the five camera encodings (``rgb8``,
  ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``; the generic ``8UC1/3/4`` are read as
  ``mono8/bgr8/bgra8`` as cv_bridge does).
- Compressed frames are decoded as cv_bridge and image_transport do (``IMREAD_UNCHANGED``):
  no EXIF rotation, alpha dropped after decoding, bytes after the end marker ignored.
- :func:`numpy_to_image` / :class:`ImagePublisherBuffer` build outgoing Images with one copy
  into a reused buffer.

Every refusal raises :class:`ImageConversionError` (a ``ValueError``) whose ``cause`` is a short
stable key (counted per cause in the node's diagnostics) and whose message names the fix.
This module imports no rclpy: messages are read by attribute, and ``sensor_msgs`` is imported
only when an outgoing message is built.
"""

from __future__ import annotations

import array
import re
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ImageConversionError",
    "CAUSES",
    "COLOR_ENCODINGS",
    "NAMED_ENCODINGS",
    "ColorInput",
    "encoding_info",
    "image_to_numpy",
    "to_color_input",
    "compressed_to_color_input",
    "numpy_to_image",
    "ImagePublisherBuffer",
]

#: every rejection cause this module can raise (stable keys: they name diagnostics counters)
CAUSES = (
    "unknown_encoding",
    "unsupported_encoding",
    "zero_size",
    "too_large",
    "bad_step",
    "data_size",
    "compressed_empty",
    "compressed_format",
    "compressed_truncated",
    "compressed_corrupt",
    "png_16bit",
)

#: the encodings the segmentation node accepts, with (color order, encoding of the overlay)
COLOR_ENCODINGS = {
    "rgb8": ("rgb", "rgb8"),
    "bgr8": ("bgr", "bgr8"),
    "rgba8": ("rgb", "rgb8"),
    "bgra8": ("bgr", "bgr8"),
    "mono8": ("rgb", "rgb8"),  # gray has no order: the overlay is rgb8 like /esnet/color
    "8UC1": ("rgb", "rgb8"),  # cv_bridge: generic 8-bit, 1 channel == mono8
    "8UC3": ("bgr", "bgr8"),  # cv_bridge: generic 3 channels are taken as OpenCV's BGR
    "8UC4": ("bgr", "bgr8"),
}

SUPPORTED_HELP = "publish rgb8, bgr8, rgba8, bgra8 or mono8"


class ImageConversionError(ValueError):
    """A message that cannot be converted; ``cause`` is one of :data:`CAUSES`."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


# -- encodings (names as in sensor_msgs/image_encodings.hpp) --------------------------------------

#: every named (non ``8UC3``-style) encoding of sensor_msgs/image_encodings.hpp: (channels, dtype);
#: nv12/nv21/nv24 have 2 channels there although their planes do not fit that (see to_color_input)
NAMED_ENCODINGS = {
    "mono8": (1, "u1"),
    "mono16": (1, "u2"),
    "rgb8": (3, "u1"),
    "bgr8": (3, "u1"),
    "rgba8": (4, "u1"),
    "bgra8": (4, "u1"),
    "rgb16": (3, "u2"),
    "bgr16": (3, "u2"),
    "rgba16": (4, "u2"),
    "bgra16": (4, "u2"),
    "yuv422": (2, "u1"),
    "uyvy": (2, "u1"),
    "yuv422_yuy2": (2, "u1"),
    "yuyv": (2, "u1"),
    "nv12": (2, "u1"),
    "nv21": (2, "u1"),
    "nv24": (2, "u1"),
    **{
        f"bayer_{p}{bits}": (1, "u1" if bits == 8 else "u2")
        for p in ("rggb", "bggr", "gbrg", "grbg")
        for bits in (8, 16)
    },
}
_GENERIC = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-9]\d*)$")
_GENERIC_DTYPES = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4", "64F": "f8"}
# YUV layouts the node refuses, with the reason given to the user
_YUV_HELP = {
    **dict.fromkeys(("yuv422", "uyvy", "yuyv", "yuv422_yuy2"), "a YUV 4:2:2 layout"),
    **dict.fromkeys(
        ("nv12", "nv21", "nv24"),
        "a semi-planar YUV layout that cv_bridge cannot read either "
        "(sensor_msgs gives it 2 channels, which its planes do not fit)",
    ),
}


def encoding_info(encoding: str) -> tuple[int, np.dtype]:
    """``(channels, dtype)`` of a cv_bridge encoding name (byte order: little endian)."""
    if encoding in NAMED_ENCODINGS:
        channels, code = NAMED_ENCODINGS[encoding]
        return channels, np.dtype(code)
    m = _GENERIC.match(encoding)
    if m:
        return int(m.group(2)), np.dtype(_GENERIC_DTYPES[m.group(1)])
    shown = repr(encoding[:64]) + ("..." if len(encoding) > 64 else "")
    what = "an empty encoding" if encoding == "" else f"unknown encoding {shown}"
    raise ImageConversionError("unknown_encoding", f"{what}: not a sensor_msgs/image_encodings name; {SUPPORTED_HELP}")


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageConversionError(
            "zero_size", f"image has zero size ({width}x{height}); the camera must send at least 1x1 pixels"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(
            "too_large",
            f"image {width}x{height} has {width * height} pixels, more than max_input_pixels={max_pixels}; "
            f"lower the camera resolution or raise max_input_pixels",
        )


def image_to_numpy(msg: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/Image as an ``(H,W)`` (1 channel) or ``(H,W,C)`` array viewing ``msg.data``.

    Multi-byte values come back in native byte order: a copy when ``is_bigendian`` differs from the host.

    Raises :class:`ImageConversionError` for an unknown encoding, a zero or too large size, a
    ``step`` smaller than a row, or ``data`` whose length is not ``step * height``.
    """
    encoding = str(msg.encoding)
    channels, dtype = encoding_info(encoding)
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_pixels)
    row = width * channels * dtype.itemsize
    if step < row:
        raise ImageConversionError(
            "bad_step",
            f"step={step} is smaller than one row of {width} px x {channels} ch x {dtype.itemsize} B = {row} B "
            f"for {encoding}; the publisher must set step >= width * bytes per pixel",
        )
    data = msg.data
    size = len(data)
    if size != step * height:
        which = "shorter" if size < step * height else "longer"
        raise ImageConversionError(
            "data_size",
            f"data has {size} B, {which} than step*height = {step}*{height} = {step * height} B; "
            f"the message is truncated or its step/height are wrong",
        )
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    buf = np.frombuffer(data, dtype=np.uint8)
    if dtype.itemsize > 1 and step % dtype.itemsize:
        # rows not aligned to the element size: the only case that needs a copy
        rows = np.ascontiguousarray(buf.reshape(height, step)[:, :row])
        image = rows.view(dtype).reshape(height, width, channels)
    else:
        image = np.lib.stride_tricks.as_strided(
            buf.view(dtype),
            shape=(height, width, channels),
            strides=(step, channels * dtype.itemsize, dtype.itemsize),
            writeable=buf.flags.writeable,
        )
    if not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder("="))  # torch.from_numpy refuses non-native arrays
    return image[:, :, 0] if channels == 1 else image


class ColorInput(NamedTuple):
    """What the segmenter takes, and how to publish the overlay."""

    image: np.ndarray  # (H,W,3) uint8, a view where possible
    color_order: str  # "rgb" or "bgr"
    overlay_encoding: str  # "rgb8" or "bgr8"


def _gray_to_3(gray: np.ndarray) -> np.ndarray:
    """(H,W) uint8 -> (H,W,3) zero-copy view repeating the gray value in all channels."""
    return np.lib.stride_tricks.as_strided(
        gray, shape=gray.shape + (3,), strides=gray.strides + (0,), writeable=gray.flags.writeable
    )


def to_color_input(msg: Any, *, max_pixels: int | None = None) -> ColorInput:
    """A camera Image as an ``(H,W,3) uint8`` view for the segmenter (see :data:`COLOR_ENCODINGS`)."""
    encoding = str(msg.encoding)
    if encoding not in COLOR_ENCODINGS:
        encoding_info(encoding)  # raises "unknown_encoding" for names that are no encoding at all
        if encoding in _YUV_HELP:
            how = f"{encoding} is {_YUV_HELP[encoding]}; set the camera's pixel format to RGB/BGR or convert first"
        else:
            how = "debayer / convert first, e.g. with image_proc"
        raise ImageConversionError(
            "unsupported_encoding",
            f"encoding {encoding!r} is not supported by the segmentation node; {SUPPORTED_HELP} ({how})",
        )
    image = image_to_numpy(msg, max_pixels=max_pixels)
    order, overlay = COLOR_ENCODINGS[encoding]
    if image.ndim == 2:
        image = _gray_to_3(image)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return ColorInput(image, order, overlay)


# -- compressed ------------------------------------------------------------------------------------

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
# SOF markers carry the frame size (C4 DHT, C8 JPG and CC DAC are not frames)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_COLOR_TYPES = (0, 2, 3, 4, 6)  # gray, RGB, palette, gray+alpha, RGBA
_FORMAT_ORDER = re.compile(r"^\s*(\w+)\s*;")


def _png_header(data: bytes) -> tuple[int, int]:
    """Walk a PNG's chunks up to IEND and return ``(width, height)``; refuse 16-bit.

    Bytes after the IEND chunk are ignored (libpng, and so cv_bridge, ignore them too).
    """
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageConversionError(
            "compressed_truncated", f"PNG of {len(data)} B ends before its IHDR header; the message is truncated"
        )
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    depth, color_type = data[24], data[25]
    if color_type not in _PNG_COLOR_TYPES:
        raise ImageConversionError(
            "compressed_corrupt", f"PNG has an invalid color type {color_type}; the data is corrupt"
        )
    if depth == 16:
        raise ImageConversionError(
            "png_16bit", "PNG has 16 bits per channel; the node takes 8-bit images: compress from rgb8/bgr8/mono8"
        )
    pos, end = 8, len(data)
    while pos + 12 <= end:  # chunk: length (4), type (4), data, CRC (4)
        if data[pos + 4 : pos + 8] == b"IEND":
            return width, height
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    raise ImageConversionError(
        "compressed_truncated", f"PNG of {len(data)} B ends before its IEND chunk; the message is truncated"
    )


def _jpeg_header(data: bytes) -> tuple[int, int]:
    """Walk the JPEG markers to the first scan and return ``(width, height)`` from the frame header.

    An EOI marker must follow the scan; bytes after it are ignored (libjpeg, and so cv_bridge,
    ignore them too). Entropy-coded data never holds ``FF D9`` (0xFF is stuffed there).
    """
    end = len(data)
    pos = 2
    size = None
    for _ in range(1024):  # marker segments before the scan: a handful in practice
        while pos + 1 < end and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > end:
            break
        if data[pos] != 0xFF:
            raise ImageConversionError("compressed_corrupt", f"JPEG has no marker at byte {pos}; the data is corrupt")
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF and pos + 9 <= end:
            size = int.from_bytes(data[pos + 7 : pos + 9], "big"), int.from_bytes(data[pos + 5 : pos + 7], "big")
        elif marker == 0xDA and size is not None:
            if data.rfind(b"\xff\xd9", pos + 2 + length) < 0:  # from the end: EOI is last or nearly
                raise ImageConversionError(
                    "compressed_truncated",
                    f"JPEG of {len(data)} B has no EOI marker after its scan; the message is truncated",
                )
            return size
        if marker == 0xDA or length < 2:
            raise ImageConversionError(
                "compressed_corrupt", "JPEG has no frame header (SOF) before its scan; the data is corrupt"
            )
        pos += 2 + length
    where = "its first scan" if size else "its frame header"
    raise ImageConversionError(
        "compressed_truncated", f"JPEG of {len(data)} B ends before {where}; the message is truncated"
    )


def _compressed_size(msg: Any) -> tuple[bytes, int, int]:
    """The payload of a CompressedImage as bytes, with the ``(width, height)`` in its JPEG/PNG header."""
    data = msg.data
    if len(data) == 0:
        raise ImageConversionError("compressed_empty", "CompressedImage has no data; the camera sent an empty frame")
    raw = bytes(data if isinstance(data, (bytes, bytearray)) else memoryview(data).cast("B"))
    if raw.startswith(_PNG_MAGIC):
        return (raw, *_png_header(raw))
    if raw.startswith(_JPEG_SOI):
        return (raw, *_jpeg_header(raw))
    fmt = str(msg.format)[:64]
    raise ImageConversionError(
        "compressed_format",
        f"CompressedImage (format {fmt!r}) is neither JPEG nor PNG (first bytes {raw[:8].hex()}); "
        f"use the compressed (jpeg/png) transport",
    )


def compressed_to_color_input(msg: Any, *, max_pixels: int | None = None) -> ColorInput:
    """A sensor_msgs/CompressedImage (JPEG or PNG, found by its magic bytes) decoded for the segmenter.

    Decoded as cv_bridge's ``toCvCopy``/``compressed_imgmsg_to_cv2`` do (``IMREAD_UNCHANGED``): the
    EXIF orientation is not applied, gray stays gray (viewed as 3 channels), alpha is dropped.
    ``format`` is read the way image_transport writes it (``"rgba8; png compressed bgra8"``): an
    original ``rgb8``/``rgba8``/``mono8`` image gives an rgb8 overlay, anything else bgr8 (OpenCV's
    order). The size in the header is checked against ``max_pixels`` before anything is decoded.
    """
    import cv2

    raw, width, height = _compressed_size(msg)
    _check_size(width, height, max_pixels)
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.shape[:2] != (height, width) or image.dtype != np.uint8:
        raise ImageConversionError(
            "compressed_corrupt",
            f"CompressedImage ({len(raw)} B, {width}x{height} in its header) could not be decoded; the data is corrupt",
        )
    m = _FORMAT_ORDER.match(str(msg.format))
    rgb = (m.group(1).lower() if m else "") in ("rgb8", "rgba8", "mono8", "8uc1")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        image = _gray_to_3(image)
    elif rgb and channels == 3:
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    elif rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif channels == 4:
        image = image[:, :, :3]
    return ColorInput(image, "rgb", "rgb8") if rgb else ColorInput(image, "bgr", "bgr8")


# -- outgoing images -------------------------------------------------------------------------------


def numpy_to_image(image: np.ndarray, encoding: str, header: Any = None, msg: Any = None) -> Any:
    """An ``(H,W)``/``(H,W,C)`` array as a sensor_msgs/Image (one copy of the pixels).

    ``msg``: a message to fill instead of a new one (see :class:`ImagePublisherBuffer` to also
    reuse the pixel buffer).
    """
    return ImagePublisherBuffer().fill(image, encoding, header, msg)


class ImagePublisherBuffer:
    """Builds outgoing Images into a reused ``array('B')`` buffer: at most one copy per frame, no allocation
    (none when the image was computed into :meth:`array`).

    The message is created with ``check_fields=True`` so that assigning the buffer is O(1)
    (without it, rclpy copies ``data`` on assignment). The buffer is overwritten by the next
    :meth:`fill`: publish the message before filling again (rclpy serializes on ``publish``).
    """

    def __init__(self) -> None:
        self._buffer: array.array | None = None
        self._view: np.ndarray | None = None
        self._msg: Any = None

    def array(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A writable ``shape`` view of the buffer: compute into it and :meth:`fill` copies nothing."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if self._buffer is None or len(self._buffer) != nbytes:
            self._buffer = array.array("B", bytes(nbytes))
            self._view = np.frombuffer(self._buffer, np.uint8)
        return self._view.view(dtype).reshape(shape)

    def fill(self, image: np.ndarray, encoding: str, header: Any = None, msg: Any = None) -> Any:
        from sensor_msgs.msg import Image

        channels, dtype = encoding_info(encoding)
        if image.dtype != dtype or image.ndim not in (2, 3) or (image.shape[2] if image.ndim == 3 else 1) != channels:
            raise ValueError(
                f"array {image.shape} {image.dtype} does not match encoding {encoding} ({channels} ch of {dtype})"
            )
        height, width = image.shape[:2]
        target = self.array(image.shape, dtype)
        if not (image.flags.c_contiguous and image.ctypes.data == target.ctypes.data):  # else: computed in place
            np.copyto(target, image)
        if msg is None:
            if self._msg is None:
                self._msg = Image(check_fields=True)
            msg = self._msg
        if header is not None:
            msg.header = header
        msg.height = height
        msg.width = width
        msg.encoding = encoding
        msg.is_bigendian = 0
        msg.step = width * channels * dtype.itemsize
        msg.data = self._buffer
        return msg
