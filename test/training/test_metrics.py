"""ConfusionMatrix: hand-computed IoUs, the Cityscapes conventions, category mIoU, the PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official
from cityscapesscripts.helpers.labels import labels as cs_labels

from esnet_ros.core.labels import cityscapes
from esnet_ros.training.metrics import ConfusionMatrix, save_confusion_png


def test_hand_computed_ious_ignore_and_absent_classes():
    # 4 classes; class 3 never appears in ground truth nor prediction -> NaN, excluded
    target = torch.tensor([[0, 0, 0, 1], [1, 1, 2, 255]])
    pred = torch.tensor([[0, 0, 1, 1], [1, 2, 2, 3]])  # the last pixel is ignored (gt 255)
    cm = ConfusionMatrix(4, ["a", "b", "c", "d"])
    cm.update(target, pred)
    r = cm.compute()
    # a: tp 2, fn 1 (->b)        IoU 2/3
    # b: tp 2, fp 1 (a), fn 1 (->c)  IoU 2/4
    # c: tp 1, fp 1 (b)          IoU 1/2
    assert r["per_class_iou"]["a"] == pytest.approx(2 / 3)
    assert r["per_class_iou"]["b"] == pytest.approx(2 / 4)
    assert r["per_class_iou"]["c"] == pytest.approx(1 / 2)
    assert math.isnan(r["per_class_iou"]["d"])
    assert r["miou"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3)
    assert r["pixel_accuracy"] == pytest.approx(5 / 7)
    assert r["pixels"] == 7
    assert math.isnan(r["category_miou"])  # no categories given


def test_predicted_but_absent_class_counts_as_zero():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 2]))
    r = cm.compute()
    assert r["per_class_iou"]["0"] == pytest.approx(3 / 4)
    assert r["per_class_iou"]["2"] == 0.0  # false positives only: IoU 0, included
    assert math.isnan(r["per_class_iou"]["1"])
    assert r["miou"] == pytest.approx(3 / 8)


def test_accumulates_over_updates_and_resets():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    cm.update(torch.tensor([1, 1]), torch.tensor([0, 1]))
    assert cm.mat.tolist() == [[1, 0], [1, 2]]
    cm.all_reduce()  # no process group: unchanged
    assert cm.mat.tolist() == [[1, 0], [1, 2]]
    cm.reset()
    assert int(cm.mat.sum()) == 0


def test_category_miou_hand_computed():
    # road(flat), sidewalk(flat), car(vehicle): road<->sidewalk confusions are right at category level
    cm = ConfusionMatrix(3, ["road", "sidewalk", "car"], ["flat", "flat", "vehicle"])
    cm.update(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1, 0, 0, 1, 2, 0]))
    r = cm.compute()
    assert r["per_category_iou"]["flat"] == pytest.approx(4 / 5)  # tp 4, fn 0, fp 1 (car->road)
    assert r["per_category_iou"]["vehicle"] == pytest.approx(1 / 2)
    assert r["category_miou"] == pytest.approx((4 / 5 + 1 / 2) / 2)


def test_matches_the_official_cityscapes_formulas():
    """Random train-id confusions, scored by cityscapesscripts' own functions in labelId space."""
    rng = np.random.default_rng(0)
    labels = cityscapes()
    cm = ConfusionMatrix.for_labels(labels)
    target = torch.from_numpy(rng.integers(0, 19, 5000))
    target[target == 16] = 255  # "train" absent from ground truth ...
    pred = torch.from_numpy(rng.integers(0, 19, 5000))
    pred[pred == 9] = 5  # ... "terrain" never predicted
    target[:300] = 255
    cm.update(target, pred)
    ours = cm.compute()

    official.args.evalLabels = [lab.id for lab in cs_labels if lab.id >= 0]
    big = np.zeros((34, 34), np.ulonglong)
    ids = np.array(labels.label_ids)
    big[np.ix_(ids, ids)] = cm.mat.numpy()
    big[0, ids] = rng.integers(0, 50, 19)  # unlabeled ground truth: never counted
    for name, value in ours["per_class_iou"].items():
        expected = official.getIouScoreForLabel(dict(zip(labels.names, ids, strict=True))[name], big, official.args)
        assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected), name
    scores = {c: official.getIouScoreForCategory(c, big, official.args) for c in ours["per_category_iou"]}
    for category, value in ours["per_category_iou"].items():
        assert value == pytest.approx(scores[category]), category
    assert ours["category_miou"] == pytest.approx(official.getScoreAverage(scores, official.args))


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="upsample predictions to the label size"):
        cm.update(torch.zeros(2, 2), torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"target holds ids \[7\] outside 0..2"):
        cm.update(torch.tensor([0, 7]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="one name per class"):
        ConfusionMatrix(3, ["a"])


def test_confusion_png(tmp_path):
    cm = ConfusionMatrix.for_labels(cityscapes())
    cm.update(torch.tensor([0, 1, 2, 13]), torch.tensor([0, 1, 1, 13]))
    path = save_confusion_png(cm, tmp_path / "cm.png", title="test")
    import cv2

    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 300


def test_demo_scores_equal_the_shared_confusion_matrix():
    """The demo's monitor scores uint8 label images (its fast histogram path) with the one ConfusionMatrix."""
    from esnet_ros.core.labels import cityscapes

    rng = np.random.default_rng(0)
    scores, cm = ConfusionMatrix.for_labels(cityscapes()), ConfusionMatrix.for_labels(cityscapes())
    for _ in range(3):
        gt = rng.integers(0, 19, (72, 128)).astype(np.uint8)
        gt[:10] = 255
        pred = rng.integers(0, 19, (72, 128)).astype(np.uint8)
        pred[gt == 0] = 0  # road right, the rest mostly wrong
        scores.update(gt, pred)
        cm.update(torch.from_numpy(gt), torch.from_numpy(pred))
    ours, shared = scores.compute(), cm.compute()
    assert torch.equal(scores.mat, cm.mat)
    assert ours["miou"] == pytest.approx(shared["miou"])
    assert (
        ours["per_class_iou"]["road"] == pytest.approx(shared["per_class_iou"]["road"])
        and ours["per_class_iou"]["road"] > 0.5
    )
    assert ours["pixel_accuracy"] == pytest.approx(shared["pixel_accuracy"])
    gt[0, 0] = 30
    with pytest.raises(ValueError, match=r"target holds ids \[30\] outside 0..18 and not ignore_index 255"):
        scores.update(gt, pred)
    pred[20, 5] = 19  # a row with ground truth (rows 0..9 are ignore_index)
    gt[0, 0] = 0
    with pytest.raises(ValueError, match=r"prediction holds ids outside 0..18"):
        scores.update(gt, pred)
