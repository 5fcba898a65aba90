"""Image files: one list of suffixes, one BGR reader, one calibration-image picker (datasets, predict,
evaluation and int8 calibration share them)."""

import cv2
import numpy as np
import pytest

from esnet_ros.core.image_files import IMAGE_EXTENSIONS, calibration_images, read_bgr
from esnet_ros.data import datasets
from esnet_ros.inference import quantize


def test_one_definition_is_shared():
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg")
    assert datasets.IMAGE_EXTENSIONS is IMAGE_EXTENSIONS and quantize.calibration_images is calibration_images


def test_read_bgr_and_calibration_images(tmp_path):
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0] = 200  # blue in OpenCV's order
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
    (tmp_path / "gtFine").mkdir()
    cv2.imwrite(str(tmp_path / "gtFine" / "label.png"), img[..., 0])  # labels are never calibration images
    (tmp_path / "notes.txt").write_text("x")
    got = read_bgr(tmp_path / "0.png")
    assert got.shape == (4, 6, 3) and got.dtype == np.uint8 and (got[..., 0] == 200).all()
    assert np.array_equal(datasets.read_image(tmp_path / "0.png"), got[..., ::-1])  # the dataset reads RGB
    assert [p.name for p in calibration_images(tmp_path, 3)] == ["0.png", "2.png", "4.png"]
    assert len(calibration_images(tmp_path, 50)) == 5
    with pytest.raises(FileNotFoundError, match=r"cannot read image .*notes.txt; is it a PNG/JPEG file"):
        read_bgr(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match=r"calibration directory .* does not exist"):
        calibration_images(tmp_path / "nope", 3)
    with pytest.raises(ValueError, match="calibration image count 0 must be >= 1"):
        calibration_images(tmp_path, 0)
