"""Datasets: the Cityscapes layout (labelIds -> trainIds), custom YAML datasets, transforms, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from esnet_ros.core.labels import cityscapes, load_labels_yaml
from esnet_ros.data.datasets import SegmentationDataset, class_pixel_counts, enet_class_weights, find_samples
from esnet_ros.data.synth import write_dataset
from esnet_ros.data.transforms import RandomHorizontalFlip, RandomTranslate, Resize, eval_transforms, train_transforms

YAML = """name: tiny
classes:
  - {name: floor, color: [128, 64, 128], id: 10}
  - {name: wall, color: [70, 70, 70], id: 20}
  - {name: box, color: [220, 20, 60], id: 30}
"""


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, train=3, val=2, seed=0, size=(64, 32), progress=False)
    return root


def _write_custom(root, labels_by_name, split="train"):
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels.yaml").write_text(YAML)
    for name, label in labels_by_name.items():
        image = np.full(label.shape + (3,), 100, np.uint8)
        cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), image)
        cv2.imwrite(str(root / "labels" / split / f"{name}.png"), label)
    return load_labels_yaml(root / "labels.yaml")


def test_cityscapes_label_ids_map_to_the_train_ids_files(synth_root):
    labels = cityscapes()
    by_ids = SegmentationDataset(synth_root, "train", labels)
    by_train = SegmentationDataset(synth_root, "train", labels, label_kind="labelTrainIds")
    assert len(by_ids) == len(by_train) == 3
    for i in range(3):
        image, label = by_ids.load(i)
        assert image.shape == (32, 64, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(label, by_train.load(i)[1])
        raw = cv2.imread(str(by_ids.samples[i].label), cv2.IMREAD_UNCHANGED)
        assert (label[raw == 7] == 0).all()  # road: labelId 7 -> trainId 0
        assert (label[raw == 1] == 255).all()  # ego vehicle -> ignored
    assert by_ids.samples[0].image.name.endswith("_leftImg8bit.png")


def test_training_and_eval_samples(synth_root):
    labels = cityscapes()
    train = SegmentationDataset(synth_root, "train", labels, train_transforms((32, 16)))
    image, target = train[0]
    assert image.shape == (3, 16, 32) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0  # pixel/255
    assert target.shape == (16, 32) and target.dtype == torch.int64
    assert set(target.unique().tolist()) <= set(range(19)) | {255}
    val = SegmentationDataset(synth_root, "val", labels, eval_transforms((32, 16)))
    image, target = val[0]
    assert image.shape == (3, 16, 32) and target.shape == (32, 64)  # labels at full resolution


def test_resize_flip_translate():
    image = np.arange(4 * 8 * 3, dtype=np.uint8).reshape(4, 8, 3)
    label = np.repeat(np.arange(8, dtype=np.uint8)[None], 4, 0)
    img2, lab2 = Resize((4, 2))(image, label)
    assert img2.shape == (2, 4, 3) and lab2.shape == (2, 4)
    assert set(lab2.ravel().tolist()) <= set(range(8))  # nearest: no blended label values
    torch.manual_seed(0)
    flipped = [RandomHorizontalFlip(1.0)(image, label)]
    np.testing.assert_array_equal(flipped[0][1][0], np.arange(8)[::-1])
    np.testing.assert_array_equal(flipped[0][0], image[:, ::-1])
    shifted_img, shifted_lab = RandomTranslate(2, ignore_index=255)(image, label)
    moved = [
        (dx, dy) for dx in range(-2, 3) for dy in range(-2, 3) if np.array_equal(shifted_lab, _shift_ref(label, dx, dy))
    ]
    assert len(moved) == 1
    dx, dy = moved[0]
    np.testing.assert_array_equal(shifted_img, _shift_ref(image, dx, dy, 0))


def _shift_ref(a, dx, dy, fill=255):
    out = np.full_like(a, fill)
    h, w = a.shape[:2]
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[y, x] = a[y - dy, x - dx]
    return out


def test_custom_yaml_dataset(tmp_path):
    label = np.full((8, 16), 10, np.uint8)
    label[:, 8:] = 30
    label[0] = 255
    labels = _write_custom(tmp_path, {"a": label})
    ds = SegmentationDataset(tmp_path, "train", labels)
    _, train_ids = ds.load(0)
    assert train_ids[1, 0] == 0 and train_ids[1, 15] == 2 and (train_ids[0] == 255).all()
    counts = class_pixel_counts(ds)
    np.testing.assert_array_equal(counts, [56, 0, 56])


def test_enet_class_weights_formula():
    w = enet_class_weights(np.array([75, 25, 0]), c=1.10)
    np.testing.assert_allclose(w, [1 / np.log(1.85), 1 / np.log(1.35), 1 / np.log(1.10)])
    with pytest.raises(ValueError, match="no labeled pixel"):
        enet_class_weights(np.zeros(3))


def test_label_ids_outside_the_class_list_are_refused(tmp_path):
    label = np.full((8, 16), 10, np.uint8)
    label[2, 3] = 7
    label[4, 4] = 99
    labels = _write_custom(tmp_path, {"bad": label})
    ds = SegmentationDataset(tmp_path, "train", labels)
    with pytest.raises(ValueError, match=r"contains ids \[7, 99\] outside the class list of 'tiny'") as info:
        ds.load(0)
    assert "10, 20, 30" in str(info.value) and "255 = ignore" in str(info.value)


def test_color_label_pngs_are_refused(tmp_path):
    labels = _write_custom(tmp_path, {"a": np.full((8, 16), 10, np.uint8)})
    cv2.imwrite(str(tmp_path / "labels" / "train" / "a.png"), np.zeros((8, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="single-channel 8-bit PNG"):
        SegmentationDataset(tmp_path, "train", labels).load(0)


def test_missing_folder_and_wrong_layout_name_the_expected_files(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"does not exist; expected either the Cityscapes layout .*leftImg8bit/val/<city>/\*_leftImg8bit.png",
    ):
        find_samples(tmp_path / "nope", "val")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(
        FileNotFoundError,
        match=r"has neither leftImg8bit/, images/ nor CamVid.s train/ \+ trainannot/.*gtFine_labelIds.png",
    ):
        find_samples(tmp_path / "stuff", "train")


def test_missing_split_and_missing_labels(synth_root, tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"split folder .*leftImg8bit/test does not exist \(splits found: \['train', 'val'\]\)"
    ):
        find_samples(synth_root, "test")
    root = tmp_path / "cs"
    write_dataset(root, train=1, val=0, seed=0, size=(32, 16), progress=False)
    next(root.glob("gtFine/train/*/*_gtFine_labelIds.png")).unlink()
    with pytest.raises(
        FileNotFoundError, match=r"_gtFine_labelIds.png for image .* does not exist.*--label-kind labelTrainIds"
    ):
        find_samples(root, "train")


def test_empty_split(tmp_path):
    (tmp_path / "leftImg8bit" / "train" / "city").mkdir(parents=True)
    with pytest.raises(
        ValueError, match=r"split 'train' of .* is empty: no .*leftImg8bit/train/<city>/\*_leftImg8bit.png"
    ):
        find_samples(tmp_path, "train")
    (tmp_path / "custom" / "images" / "val").mkdir(parents=True)
    (tmp_path / "custom" / "labels" / "val").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"split 'val' of .* is empty: no images"):
        find_samples(tmp_path / "custom", "val")
