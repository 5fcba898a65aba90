"""Our conversion against ROS 2's own cv_bridge, for every encoding and compressed form we accept.

cv_bridge (ros-perception/vision_opencv) is not on PyPI: these tests run on a ROS 2 install
(``apt install ros-<distro>-cv-bridge``, then source it) and skip here with the reason.

What "the same" means, per path:
- raw: ``CvBridge().imgmsg_to_cv2(msg, overlay)`` where overlay is the rgb8/bgr8 the node reports
  (cv_bridge does mono8 -> rgb8, rgba8 -> rgb8, ...). The generic 8UC1/3/4 have no color in cv_bridge,
  so they are read ``passthrough`` and converted with cv_bridge's ``cvtColor2`` as the mono8/bgr8/bgra8
  the node takes them for.
- compressed: ``compressed_imgmsg_to_cv2(msg, "passthrough")`` (cv_bridge's decode), then cv_bridge's
  ``cvtColor2`` from what C++ ``toCvCopy(CompressedImage)`` names the decoded channels (1: mono8,
  3: bgr8, 4: bgra8) to the overlay encoding, as image_transport's compressed subscriber does.
"""

from __future__ import annotations

import numpy as np
import pytest
from image_samples import compressed_cases, smooth_image

from esnet_ros.ros.images import COLOR_ENCODINGS, compressed_to_color_input, encoding_info, to_color_input

pytestmark = [pytest.mark.cv_bridge, pytest.mark.ros]

# how the node reads cv_bridge's channel-only encodings (see COLOR_ENCODINGS)
GENERIC_AS = {"8UC1": "mono8", "8UC3": "bgr8", "8UC4": "bgra8"}
# what cv_bridge's toCvCopy(CompressedImage) calls a decoded image with this many channels
DECODED_AS = {1: "mono8", 3: "bgr8", 4: "bgra8"}


@pytest.fixture(scope="module")
def bridge():
    from cv_bridge import CvBridge

    return CvBridge()


def cv_bridge_convert(image: np.ndarray, source: str, target: str) -> np.ndarray:
    from cv_bridge.boost.cv_bridge_boost import cvtColor2

    return cvtColor2(image, source, target)


def ros_image(pixels: np.ndarray, encoding: str, pad_pixels: int):
    """A real sensor_msgs/Image, rows padded by whole pixels (cv_bridge's Python side needs that)."""
    from sensor_msgs.msg import Image

    h, w = pixels.shape[:2]
    channels, dtype = encoding_info(encoding)
    padded = np.zeros((h, w + pad_pixels, channels), dtype)
    padded[:, :w] = pixels.reshape(h, w, channels)
    step = (w + pad_pixels) * channels * dtype.itemsize
    return Image(height=h, width=w, encoding=encoding, step=step, is_bigendian=0, data=padded.tobytes())


@pytest.mark.parametrize("encoding", sorted(COLOR_ENCODINGS))
@pytest.mark.parametrize("pad_pixels", [0, 3])
def test_raw_images_equal_cv_bridge(bridge, encoding, pad_pixels):
    channels, _ = encoding_info(encoding)
    pixels = np.random.default_rng(3).integers(0, 256, (7, 11, channels), dtype=np.uint8)
    msg = ros_image(pixels, encoding, pad_pixels)
    ours = to_color_input(msg)
    if encoding in GENERIC_AS:
        theirs = cv_bridge_convert(
            bridge.imgmsg_to_cv2(msg, "passthrough"), GENERIC_AS[encoding], ours.overlay_encoding
        )
    else:
        theirs = bridge.imgmsg_to_cv2(msg, ours.overlay_encoding)
    assert theirs.shape == ours.image.shape == (7, 11, 3)
    np.testing.assert_array_equal(ours.image, theirs)


@pytest.mark.parametrize("name", sorted(compressed_cases()))
def test_compressed_images_equal_cv_bridge(bridge, name):
    from sensor_msgs.msg import CompressedImage

    data, fmt = compressed_cases()[name]
    msg = CompressedImage(format=fmt, data=data)
    ours = compressed_to_color_input(msg)
    decoded = bridge.compressed_imgmsg_to_cv2(msg, "passthrough")
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    theirs = cv_bridge_convert(decoded, DECODED_AS[channels], ours.overlay_encoding)
    assert theirs.shape == ours.image.shape == (24, 32, 3), name
    np.testing.assert_array_equal(ours.image, theirs)


def test_cv_bridge_keeps_the_camera_orientation(bridge):
    # the reference itself does not rotate: our EXIF test holds cv_bridge's behaviour, not a guess at it
    from sensor_msgs.msg import CompressedImage

    data, fmt = compressed_cases()["jpeg_exif_orientation_6"]
    decoded = bridge.compressed_imgmsg_to_cv2(CompressedImage(format=fmt, data=data), "passthrough")
    assert decoded.shape == (24, 32, 3)
    assert np.abs(decoded.astype(int) - smooth_image()).mean() < 4
