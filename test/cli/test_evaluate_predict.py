"""esnet evaluate against hand-computed IoUs, esnet predict's formats, and the official Cityscapes
evaluation of predict's labelIds PNGs agreeing with esnet evaluate."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from esnet_ros import cli
from esnet_ros.core.checkpoint import make_metadata, save_checkpoint
from esnet_ros.core.labels import cityscapes
from esnet_ros.core.model import ESNet
from esnet_ros.data.synth import write_dataset

ROAD, CAR = 0, 13  # train ids

# cityscapesscripts 2.2's instance-level part calls np.in1d, which NumPy 2.4 removed; the shim
# restores its exact behaviour (a flat boolean array) and nothing else is changed.
OFFICIAL_EVAL = """
import runpy
import numpy as np
if not hasattr(np, "in1d"):
    np.in1d = lambda a, b, invert=False: np.isin(np.ravel(a), b, invert=invert)
runpy.run_module("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling", run_name="__main__")
"""


def _constant_model(path: pathlib.Path, train_id: int, input_size=(32, 16)) -> pathlib.Path:
    """An ESNet whose output is ``train_id`` everywhere (zero output weights, one-hot bias)."""
    model = ESNet(19)
    with torch.no_grad():
        model.decoder.output_conv.weight.zero_()
        model.decoder.output_conv.bias.zero_()
        model.decoder.output_conv.bias[train_id] = 5.0
    meta = make_metadata(cityscapes(), input_size=input_size, dataset="test", recipe={"command": "test"})
    return save_checkpoint(path, model, meta)


def _random_model(path: pathlib.Path, input_size=(32, 16)) -> pathlib.Path:
    torch.manual_seed(3)
    model = ESNet(19)
    with torch.no_grad():  # spread the logits so that many classes get predicted
        model.decoder.output_conv.weight.mul_(40.0)
    meta = make_metadata(cityscapes(), input_size=input_size, dataset="test", recipe={"command": "test"})
    return save_checkpoint(path, model, meta)


def _hand_dataset(root: pathlib.Path) -> None:
    """Two 64x32 ground truths in the Cityscapes layout, with hand-countable regions."""
    city = "handtown"
    img_dir, gt_dir = root / "leftImg8bit" / "val" / city, root / "gtFine" / "val" / city
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    a = np.full((32, 64), 7, np.uint8)  # road (labelId 7) ...
    a[:, 48:] = 26  # ... car (labelId 26) in the right quarter: 32*16 = 512 px
    a[:4] = 0  # 4 unlabeled rows (ignored): 256 px, of which 64 car
    b = np.full((32, 64), 23, np.uint8)  # sky everywhere ...
    b[16:] = 7  # ... road in the bottom half: 1024 px
    for i, gt in enumerate((a, b)):
        stem = f"{city}_{i:06d}_000019"
        cv2.imwrite(str(img_dir / f"{stem}_leftImg8bit.png"), np.full((32, 64, 3), 90 + 40 * i, np.uint8))
        cv2.imwrite(str(gt_dir / f"{stem}_gtFine_labelIds.png"), gt)


def _evaluate(tmp_path, weights, data, *extra):
    out = tmp_path / "eval.json"
    assert (
        cli.main(
            [
                "evaluate",
                "--weights",
                str(weights),
                "--data",
                str(data),
                "--split",
                "val",
                "--device",
                "cpu",
                "--json",
                str(out),
                *extra,
            ]
        )
        == 0
    )
    return json.loads(out.read_text())


def test_evaluate_hand_computed_ious(tmp_path):
    _hand_dataset(tmp_path / "data")
    road = _evaluate(
        tmp_path,
        _constant_model(tmp_path / "road.safetensors", ROAD),
        tmp_path / "data",
        "--confusion-png",
        str(tmp_path / "cm.png"),
    )
    # labeled pixels: image a 1792 (1344 road + 448 car), image b 2048 (1024 road + 1024 sky)
    # always "road": road IoU = 2368 / 3840; car and sky present but never predicted: 0
    assert road["per_class_iou"]["road"] == pytest.approx(2368 / 3840)
    assert road["per_class_iou"]["car"] == 0.0
    assert road["per_class_iou"]["sky"] == 0.0
    assert road["per_class_iou"]["person"] is None  # neither ground truth nor predictions
    assert road["miou"] == pytest.approx(2368 / 3840 / 3)
    assert road["pixel_accuracy"] == pytest.approx(2368 / 3840)
    # categories: flat IoU 2368/3840, vehicle 0, sky 0
    assert road["category_miou"] == pytest.approx(2368 / 3840 / 3)
    assert road["num_images"] == 2 and road["pixels"] == 3840
    assert (tmp_path / "cm.png").is_file()
    car = _evaluate(tmp_path, _constant_model(tmp_path / "car.safetensors", CAR), tmp_path / "data")
    assert car["per_class_iou"]["car"] == pytest.approx(448 / 3840)
    assert car["miou"] == pytest.approx(448 / 3840 / 3)


def _predict(weights, images, out, *options: str) -> int:
    """``esnet predict`` on the CPU: ``images`` in, PNGs under ``out``."""
    return cli.main(["predict", "--weights", str(weights), "--input", str(images), "--output", str(out), *options])


def test_predict_formats(tmp_path):
    _hand_dataset(tmp_path / "data")
    weights = _constant_model(tmp_path / "car.safetensors", CAR)
    images = tmp_path / "data" / "leftImg8bit" / "val"
    outputs = {}
    for fmt in ("labelIds", "trainIds", "color", "overlay"):
        out = tmp_path / fmt
        assert _predict(weights, images, out, "--format", fmt, "--device", "cpu", "--alpha", "0.25") == 0
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
        assert files == [f"handtown/handtown_00000{i}_000019_{fmt}.png" for i in range(2)]
        outputs[fmt] = cv2.imread(str(out / files[1]), cv2.IMREAD_UNCHANGED)
    assert outputs["labelIds"].shape == (32, 64) and (outputs["labelIds"] == 26).all()  # car's labelId
    assert outputs["trainIds"].shape == (32, 64) and (outputs["trainIds"] == CAR).all()
    car_rgb = np.array(cityscapes().colors[CAR])
    assert outputs["color"].shape == (32, 64, 3)
    assert (outputs["color"][..., ::-1] == car_rgb).all()
    expected = np.round(130 * 0.75 + car_rgb * 0.25)  # image b is gray 130
    np.testing.assert_array_equal(outputs["overlay"][..., ::-1], np.broadcast_to(expected, (32, 64, 3)))


def test_predict_and_evaluate_bad_inputs(tmp_path, capsys):
    weights = _constant_model(tmp_path / "w.safetensors", ROAD)
    assert (
        cli.main(
            ["predict", "--weights", str(weights), "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]
        )
        == 2
    )
    assert "does not exist; pass a folder of .png/.jpg images" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert (
        cli.main(
            ["predict", "--weights", str(weights), "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]
        )
        == 2
    )
    assert "holds no .png/.jpg/.jpeg images" in capsys.readouterr().err
    assert cli.main(["evaluate", "--weights", str(tmp_path / "missing.safetensors"), "--data", str(tmp_path)]) == 2
    assert "missing.safetensors does not exist" in capsys.readouterr().err
    assert cli.main(["evaluate", "--weights", str(weights), "--data", str(tmp_path / "empty")]) == 2
    assert "has neither leftImg8bit/, images/ nor CamVid" in capsys.readouterr().err


def test_official_cityscapes_evaluation_agrees(tmp_path):
    """predict --format labelIds, scored by cityscapesscripts, equals esnet evaluate."""
    data = tmp_path / "data"
    write_dataset(data, train=0, val=3, seed=9, size=(64, 32), progress=False)
    weights = _random_model(tmp_path / "random.safetensors")
    ours = _evaluate(tmp_path, weights, data)
    preds = tmp_path / "results"
    assert (
        cli.main(
            [
                "predict",
                "--weights",
                str(weights),
                "--input",
                str(data / "leftImg8bit" / "val"),
                "--output",
                str(preds),
                "--format",
                "labelIds",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    predicted = {int(v) for p in preds.rglob("*.png") for v in np.unique(cv2.imread(str(p), cv2.IMREAD_UNCHANGED))}
    assert len(predicted) >= 3  # a non-trivial prediction
    # The official script reads $CITYSCAPES_DATASET/gtFine/val/*/*_gtFine_labelIds.png (and instanceIds),
    # finds predictions under $CITYSCAPES_RESULTS, and writes its JSON to $CITYSCAPES_EXPORT_DIR
    # (by default it would write into the dataset folder, so point it elsewhere).
    export = tmp_path / "export"
    export.mkdir()
    env = {
        **os.environ,
        "CITYSCAPES_DATASET": str(data),
        "CITYSCAPES_RESULTS": str(preds),
        "CITYSCAPES_EXPORT_DIR": str(export),
    }
    proc = subprocess.run(
        [sys.executable, "-c", OFFICIAL_EVAL], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    official = json.loads((export / "resultPixelLevelSemanticLabeling.json").read_text())
    assert ours["miou"] == pytest.approx(official["averageScoreClasses"], abs=1e-9)
    assert ours["category_miou"] == pytest.approx(official["averageScoreCategories"], abs=1e-9)
    for name, iou in ours["per_class_iou"].items():
        theirs = official["classScores"][name]
        if iou is None:
            assert math.isnan(theirs), name
        else:
            assert iou == pytest.approx(theirs, abs=1e-9), name
    assert not (data / "evaluationResults").exists()  # the dataset folder was left alone


def test_predict_and_evaluate_run_the_node_engine_with_either_upsample_mode(tmp_path):
    """predict writes exactly the Segmenter's labels (what /esnet/labels carries) for each --upsample;
    evaluate scores those labels and records the mode."""
    from esnet_ros.data.datasets import read_image
    from esnet_ros.inference.segmenter import Segmenter

    data = tmp_path / "data"
    write_dataset(data, train=0, val=2, seed=5, size=(64, 32), progress=False)
    weights = _random_model(tmp_path / "random.safetensors", input_size=(32, 16))  # labels need upsampling
    images = data / "leftImg8bit" / "val"
    segmenter = Segmenter(weights, device="cpu", backend="auto", precision="auto")  # the node's and the CLIs' defaults
    written = {}
    for mode in ("nearest", "bilinear"):
        out = tmp_path / mode
        assert _predict(weights, images, out, "--format", "trainIds", "--device", "cpu", "--upsample", mode) == 0
        for image_path in sorted(images.rglob("*.png")):
            got = cv2.imread(
                str(out / image_path.parent.name / image_path.name.replace("leftImg8bit", "trainIds")),
                cv2.IMREAD_UNCHANGED,
            )
            expected = segmenter(read_image(image_path), "rgb", upsample=mode).labels
            assert got.shape == (32, 64)
            np.testing.assert_array_equal(got, expected)
            written[mode, image_path.name] = got
        report = _evaluate(tmp_path, weights, data, "--upsample", mode)
        assert report["upsample"] == mode and report["input_size"] == [32, 16]
        assert 0.0 <= report["miou"] <= 1.0
    assert any((written["nearest", n] != written["bilinear", n]).any() for _, n in written)
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses other modes
        cli.main(
            [
                "predict",
                "--weights",
                str(weights),
                "--input",
                str(images),
                "--output",
                str(tmp_path / "x"),
                "--upsample",
                "cubic",
            ]
        )
    assert exit_info.value.code == 2
