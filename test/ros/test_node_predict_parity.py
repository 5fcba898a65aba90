"""One engine: what the node publishes on /esnet/labels equals what `esnet predict` writes, pixel for pixel.

The same image file goes to `esnet predict` (a subprocess, the CLI users run) and, as a bgr8 Image, to
the node; for each upsample mode the node's labels must equal predict's trainIds PNG exactly.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from node_harness import NET_H, NET_W, REFERENCE, REPO, image_array, make_image, scene

pytestmark = pytest.mark.ros

MODES = ("nearest", "bilinear")


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A street scene at a size the network input does not divide, so both upsample modes really work."""
    path = tmp_path_factory.mktemp("parity") / "frame.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(scene(150, 230, seed=11), cv2.COLOR_RGB2BGR))
    return path


def predict(picture, out, mode: str) -> np.ndarray:
    argv = [
        sys.executable,
        "-m",
        "esnet_ros.cli",
        "predict",
        "--weights",
        str(REFERENCE),
        "--input",
        str(picture),
        "--output",
        str(out),
        "--format",
        "trainIds",
        "--input-size",
        f"{NET_W}x{NET_H}",
        "--device",
        "cpu",
        "--upsample",
        mode,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cv2.imread(str(out / "frame_trainIds.png"), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("mode", MODES)
def test_node_labels_equal_esnet_predict(client, camera, picture, tmp_path, mode):
    from sensor_msgs.msg import Image

    expected = predict(picture, tmp_path, mode)
    assert expected.shape == (150, 230) and len(np.unique(expected)) > 2
    assert all(r.successful for r in client.set_parameters(upsample=mode))
    labels, subscription = client.collect(Image, "/esnet/labels")
    try:
        got = camera.roundtrip(make_image(cv2.imread(str(picture)), "bgr8"), {"labels": labels})["labels"]
    finally:
        client.node.destroy_subscription(subscription)
    assert (got.width, got.height, got.encoding) == (230, 150, "mono8")
    np.testing.assert_array_equal(image_array(got), expected)


def test_the_two_modes_differ_on_this_picture(picture, tmp_path):
    """Otherwise the test above could not tell the modes apart."""
    nearest = predict(picture, tmp_path / "n", "nearest")
    bilinear = predict(picture, tmp_path / "b", "bilinear")
    assert (nearest != bilinear).mean() > 0.001
