"""esnet synth: deterministic scenes, the Cityscapes layout, the classes drawn, input checks."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label, name2label

from esnet_ros import cli
from esnet_ros.core.sizes import parse_size
from esnet_ros.data.synth import (
    CLASSES_DRAWN,
    TRAIN_CITIES,
    VAL_CITIES,
    label_ids_to_train_ids,
    render_scene,
    scene_rng,
    write_dataset,
)

SMALL_CLASSES = ("pole", "traffic light", "traffic sign", "person", "bicycle")


def test_same_seed_same_scene_and_different_seeds_differ():
    a_img, a_lab = render_scene(np.random.default_rng(7), 128, 64)
    b_img, b_lab = render_scene(np.random.default_rng(7), 128, 64)
    c_img, c_lab = render_scene(np.random.default_rng(8), 128, 64)
    assert a_img.shape == (64, 128, 3) and a_img.dtype == np.uint8
    assert a_lab.shape == (64, 128) and a_lab.dtype == np.uint8
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert (a_lab != c_lab).mean() > 0.05


def test_train_ids_label_ids_and_color_order_agree():
    img, train_ids = render_scene(scene_rng(3, "train", 0), 96, 48)
    bgr, label_ids = render_scene(scene_rng(3, "train", 0), 96, 48, label_ids=True, color_order="bgr")
    np.testing.assert_array_equal(bgr, img[..., ::-1])
    np.testing.assert_array_equal(label_ids_to_train_ids(label_ids), train_ids)
    # trainIds are Cityscapes train classes or 255; labelIds map to them through the official table
    assert set(np.unique(train_ids)) <= set(range(19)) | {255}
    for raw in np.unique(label_ids):
        assert id2label[int(raw)].trainId in (int(train_ids[label_ids == raw][0]), 255, -1)


def test_scenes_cover_at_least_12_classes_including_the_small_ones():
    seen: dict[int, int] = {}
    for i in range(24):
        _, labels = render_scene(scene_rng(11, "train", i), 256, 128)
        for value, count in zip(*np.unique(labels, return_counts=True), strict=True):
            seen[int(value)] = seen.get(int(value), 0) + int(count)
    names = {id2label[name2label[n].id].trainId: n for n in CLASSES_DRAWN}
    present = {names[t] for t in seen if t in names}
    assert len(present) >= 12, present
    assert set(SMALL_CLASSES) <= present
    # the small classes are more than a few stray pixels (learnable at 256x128)
    for name in SMALL_CLASSES:
        assert seen[name2label[name].trainId] > 24 * 20, name


def test_scenes_vary_in_lighting_and_layout():
    means, road_rows = [], []
    for i in range(12):
        img, labels = render_scene(scene_rng(5, "val", i), 128, 64)
        means.append(img.mean())
        road_rows.append(np.argmax((labels == 0).any(1)))  # first row with road: horizon varies
    assert np.ptp(means) > 15
    assert len(set(road_rows)) > 3


def test_render_speed_1024x512_well_under_a_second():
    rng = np.random.default_rng(0)
    render_scene(rng, 256, 128)
    start = time.process_time()  # CPU time: robust to other processes sharing the cores
    render_scene(rng, 1024, 512)
    assert time.process_time() - start < 1.0  # ~0.25 s on an idle core


def test_write_dataset_cityscapes_layout(tmp_path):
    counts = write_dataset(tmp_path, train=4, val=2, seed=1, size=(64, 32), progress=False)
    assert counts == {"train": 4, "val": 2}
    images = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("leftImg8bit/*/*/*.png"))
    assert len(images) == 6
    assert images[0] == f"leftImg8bit/train/{TRAIN_CITIES[0]}/{TRAIN_CITIES[0]}_000000_000019_leftImg8bit.png"
    assert f"leftImg8bit/val/{VAL_CITIES[0]}/{VAL_CITIES[0]}_000001_000019_leftImg8bit.png" in images
    for image_path in tmp_path.glob("leftImg8bit/*/*/*.png"):
        split, city = image_path.parts[-3], image_path.parts[-2]
        stem = image_path.name[: -len("_leftImg8bit.png")]
        gt = tmp_path / "gtFine" / split / city
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        ids = cv2.imread(str(gt / f"{stem}_gtFine_labelIds.png"), cv2.IMREAD_UNCHANGED)
        train = cv2.imread(str(gt / f"{stem}_gtFine_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
        inst = cv2.imread(str(gt / f"{stem}_gtFine_instanceIds.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (32, 64, 3) and ids.shape == train.shape == inst.shape == (32, 64)
        assert ids.dtype == np.uint8 and inst.dtype == np.uint16
        np.testing.assert_array_equal(label_ids_to_train_ids(ids), train)
        # instanceIds: id*1000+k on instance classes, the plain labelId elsewhere
        np.testing.assert_array_equal(np.where(inst >= 1000, inst // 1000, inst), ids)
    # the images on disk are the rendered scenes (same seed, same pictures)
    again, _ = render_scene(scene_rng(1, "val", 1), 64, 32)
    disk = cv2.imread(str(tmp_path / f"leftImg8bit/val/{VAL_CITIES[0]}/{VAL_CITIES[0]}_000001_000019_leftImg8bit.png"))
    np.testing.assert_array_equal(disk[..., ::-1], again)


def test_cli_writes_the_same_dataset_for_the_same_seed(tmp_path):
    for name in ("a", "b"):
        assert (
            cli.main(
                ["synth", "--out", str(tmp_path / name), "--train", "2", "--val", "1", "--seed", "4", "--size", "64x32"]
            )
            == 0
        )
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 12
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_bad_inputs_name_the_fix(capsys):
    with pytest.raises(TypeError, match=r"numpy.random.Generator"):
        render_scene(3, 64, 32)
    with pytest.raises(ValueError, match="at least 16x16"):
        render_scene(np.random.default_rng(0), 8, 8)
    with pytest.raises(ValueError, match="color_order"):
        render_scene(np.random.default_rng(0), 64, 32, color_order="rgba")
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("2048*1024")
    assert cli.main(["synth", "--out", "/tmp/x", "--size", "big"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_scene_pairs_are_the_dataset_scenes_in_bgr_with_label_ids(tmp_path):
    from esnet_ros.data.synth import scene_pairs, write_pairs

    pairs = list(scene_pairs(2, seed=5, size=(96, 48)))
    assert len(pairs) == 2
    for i, (bgr, label_ids) in enumerate(pairs):
        assert bgr.shape == (48, 96, 3) and bgr.dtype == np.uint8 and bgr.flags.c_contiguous
        assert label_ids.shape == (48, 96) and label_ids.dtype == np.uint8
        rgb, expected = render_scene(scene_rng(5, "val", i), 96, 48, label_ids=True)
        np.testing.assert_array_equal(bgr, rgb[..., ::-1])
        np.testing.assert_array_equal(label_ids, expected)
    written = write_pairs(tmp_path, 2, seed=5, size=(96, 48))
    assert [p["image"].name for p in written] == ["000000.png", "000001.png"]
    assert written[1]["image"] == tmp_path / "images" / "val" / "000001.png"
    np.testing.assert_array_equal(cv2.imread(str(written[1]["image"])), pairs[1][0])
    np.testing.assert_array_equal(cv2.imread(str(written[1]["labelIds"]), cv2.IMREAD_UNCHANGED), pairs[1][1])
    with pytest.raises(ValueError, match="count=-1: the number of scenes must be >= 0"):
        list(scene_pairs(-1))
    with pytest.raises(ValueError, match="split='dev' must be one of: train, val, test"):
        list(scene_pairs(1, split="dev"))
    with pytest.raises(ValueError, match="size 8x8 is too small; use at least 16x16"):
        list(scene_pairs(1, size=(8, 8)))
