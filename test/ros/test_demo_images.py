"""``esnet demo --images``: real frames from a folder replayed as a camera through the node over DDS, scored
live against their labels, with the same outputs as the synthetic demo."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from camvid_fixture import ROAD, camvid_label, camvid_model, write_camvid

from esnet_ros.core.labels import CAMVID_VOID
from esnet_ros.tooling.replay import check_label_folder, load_frames

REPO = pathlib.Path(__file__).resolve().parents[2]


def _esnet(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "esnet_ros.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_frames_are_read_sorted_with_their_labels_and_resized(tmp_path):
    root = write_camvid(tmp_path / "CamVid", counts=(("test", 3),))
    frames = load_frames(root / "test", root / "testannot", size=(96, 64))
    assert len(frames) == 3
    for i, (image, label) in enumerate(frames):
        assert image.shape == (64, 96, 3) and label.shape == (64, 96)
        np.testing.assert_array_equal(label[::2, ::2], camvid_label(i))  # nearest: every label value kept


def test_a_label_folder_that_does_not_fit_is_refused_by_name(tmp_path):
    from esnet_ros.core.labels import camvid

    root = write_camvid(tmp_path / "CamVid", counts=(("test", 2),))
    (root / "testannot" / "0001TP_test_001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no 0001TP_test_001.png for the image"):
        check_label_folder(root / "test", root / "testannot", camvid())
    with pytest.raises(ValueError, match="goes with a folder of images, not with the video"):
        video = tmp_path / "clip.mp4"
        video.write_bytes(b"")
        load_frames(video, root / "testannot")


@pytest.mark.ros
def test_demo_replays_a_folder_through_the_node_and_scores_it(tmp_path):
    root = write_camvid(tmp_path / "CamVid", counts=(("test", 4),))
    weights = camvid_model(tmp_path / "road_everywhere.safetensors", constant=ROAD)
    out = tmp_path / "out"
    result = _esnet(
        "demo",
        "--images",
        str(root / "test"),
        "--labels",
        str(root / "testannot"),
        "--weights",
        str(weights),
        "--camera-size",
        "96x64",
        "--rate-hz",
        "10",
        "--seconds",
        "4",
        "--save-frames",
        "2",
        "--video-seconds",
        "2",
        "--output",
        str(out),
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    s = json.loads((out / "summary.json").read_text())
    assert s["mode"] == "images" and s["camera"]["images"] == str(root / "test")
    assert s["frames"] > 10 and s["label_shapes"] == [[64, 96]] and s["model"]["dataset"] == "camvid"
    # every label image has the same class areas, so a model that says "road" everywhere scores exactly:
    label = camvid_label(0)
    valid = label != CAMVID_VOID
    road_iou = (label[valid] == ROAD).sum() / valid.sum()
    present = len(set(np.unique(label[valid]).tolist()))
    assert s["miou"] == pytest.approx(road_iou / present, abs=1e-9)
    assert s["quality"]["frames_scored"] > 10 and "testannot" in s["quality"]["note"]
    assert (out / "side_by_side.png").is_file() and len(list(out.glob("overlay_*.png"))) == 2
    picture = cv2.imread(str(out / "side_by_side.png"))
    video = cv2.VideoCapture(str(out / s["files"]["video"]["file"]))
    frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    assert frames == s["files"]["video"]["frames"] and frames >= 10  # 2 s at 10 Hz, a few lost under load at most
    ok, first = video.read()
    h, w = picture.shape[:2]
    assert ok and first.shape == (h + h % 2, w + w % 2, 3)  # the same panel, padded to even sizes for the encoder
    assert np.abs(first[: h // 2].astype(int) - picture[: h // 2]).mean() < 12  # (lossy MPEG-4)
    assert s["exit_codes"] == {"camera": 0, "node": 0}
    assert "mIoU" in result.stdout and "against the labels in" in result.stdout
    assert (
        "replayed at 10 Hz (96x64) -> segmentation node (road_everywhere.safetensors, network input 48x32)"
        in result.stdout
    )
