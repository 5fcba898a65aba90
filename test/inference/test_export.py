"""esnet export: ONNX that passes onnx.checker, equals PyTorch within 1e-4 in ONNX Runtime, and
carries the checkpoint's metadata; the engine runs the exported file."""

import json

import numpy as np
import onnx
import pytest
import torch

from esnet_ros.cli import main as esnet_main
from esnet_ros.core.checkpoint import load_checkpoint
from esnet_ros.inference.onnx_export import META_KEY, export_onnx, read_onnx_metadata, verify_onnx
from esnet_ros.inference.segmenter import Segmenter

ort = pytest.importorskip("onnxruntime")
W, H = 128, 64


@pytest.fixture(scope="module")
def reference(reference_checkpoint):
    return load_checkpoint(reference_checkpoint)


@pytest.fixture(scope="module")
def static_onnx(reference, tmp_path_factory):
    model, meta = reference
    return export_onnx(model, meta, tmp_path_factory.mktemp("onnx") / "esnet.onnx", input_size=(W, H))


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def test_static_export_checks_and_matches_torch(reference, static_onnx, reference_checkpoint):
    model, _meta = reference
    proto = onnx.load(str(static_onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, H, W]
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)  # folded
    blob = torch.load(reference_checkpoint, weights_only=True)
    got = ort_run(static_onnx, blob["input"])
    assert np.abs(got - blob["logits"].numpy()).max() < 1e-4
    assert verify_onnx(static_onnx, model, input_size=(W, H)) < 1e-4


def test_metadata_travels_in_metadata_props(reference, static_onnx):
    _, meta = reference
    proto = onnx.load(str(static_onnx))
    props = {p.key: p.value for p in proto.metadata_props}
    stored = json.loads(props[META_KEY])
    assert stored["class_names"] == meta.class_names and len(stored["class_names"]) == 19
    expected = meta.to_dict()
    assert {k: stored[k] for k in expected} == expected
    assert stored["normalization"] == meta.normalization.to_dict()
    assert stored["onnx_input_size"] == [W, H] and stored["onnx_bn_folded"] is True
    assert props["num_classes"] == "19" and props["class_names"].startswith("road,sidewalk")
    back = read_onnx_metadata(static_onnx)
    assert back.class_names == meta.class_names and back.onnx_input_size == (W, H) and back.onnx_precision == "fp32"
    assert back.replace(onnx_input_size=None, onnx_dynamic=None, onnx_bn_folded=None, onnx_precision=None) == meta


def test_dynamic_export_runs_other_sizes_and_batches(reference, tmp_path):
    model, meta = reference
    path = export_onnx(model, meta, tmp_path / "dyn.onnx", input_size=(W, H), dynamic=True)
    x = torch.rand(2, 3, 32, 48)
    with torch.inference_mode():
        ref = model(x).numpy()
    got = ort_run(path, x)
    assert got.shape == (2, 19, 32, 48)
    assert np.abs(got - ref).max() < 1e-4


def test_segmenter_runs_the_onnx_file_like_torch(reference_checkpoint, static_onnx):
    img = np.random.default_rng(0).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    torch_seg = Segmenter(reference_checkpoint, device="cpu", backend="torch", input_size=(W, H))
    onnx_seg = Segmenter(static_onnx, device="cpu", input_size=(W, H))
    assert onnx_seg.backend.name == "onnxruntime" and onnx_seg.num_classes == 19
    a = torch_seg(img, "bgr", outputs=("labels", "confidence"))
    b = onnx_seg(img, "bgr", outputs=("labels", "confidence"))
    assert a.labels.shape == b.labels.shape == (70, 130)
    assert (a.labels == b.labels).mean() > 0.999
    assert np.abs(a.confidence.astype(int) - b.confidence.astype(int)).max() <= 1
    with pytest.raises(ValueError, match=r"exported for 128x64 .* export with --dynamic"):
        Segmenter(static_onnx, device="cpu", input_size=(256, 128))


def test_cli_export(reference_checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    rc = esnet_main(
        ["export", "--weights", str(reference_checkpoint), "--output", str(out), "--width", "64", "--height", "32"]
    )
    assert rc == 0 and out.is_file()
    assert "wrote" in capsys.readouterr().out
    assert read_onnx_metadata(out).onnx_input_size == (64, 32)
    assert esnet_main(["export", "--weights", str(reference_checkpoint), "--output", str(tmp_path / "x.pt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert esnet_main(["export", "--weights", str(reference_checkpoint), "--output", str(out), "--width", "60"]) == 2
    assert "width=60 must be a positive multiple of 8" in capsys.readouterr().err


def test_onnx_without_our_metadata_is_refused(tmp_path):
    net = torch.nn.Conv2d(3, 2, 1)
    path = tmp_path / "plain.onnx"
    with pytest.warns(DeprecationWarning):
        torch.onnx.export(net, (torch.rand(1, 3, 8, 8),), str(path), dynamo=False)
    with pytest.raises(ValueError, match=r"no esnet_ros metadata .* `esnet export`"):
        read_onnx_metadata(path)
    with pytest.raises(FileNotFoundError, match="esnet export"):
        read_onnx_metadata(tmp_path / "missing.onnx")


def test_int8_export_calibrates_through_the_engine(reference_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime.quantization")
    from esnet_ros.data.synth import write_dataset
    from esnet_ros.training.evaluation import compare_predictions

    data = tmp_path / "data"
    write_dataset(data, train=3, val=2, seed=4, size=(128, 64), progress=False)
    out = tmp_path / "int8.onnx"
    assert (
        esnet_main(
            [
                "export",
                "--weights",
                str(reference_checkpoint),
                "--output",
                str(out),
                "--width",
                "64",
                "--height",
                "32",
                "--int8",
                "--calibration-dir",
                str(data / "leftImg8bit" / "train"),
            ]
        )
        == 0
    )
    assert "(int8)" in capsys.readouterr().out
    meta = read_onnx_metadata(out)
    assert meta.onnx_precision == "int8" and meta.int8_calibration["images"] == 3
    assert meta.int8_calibration["method"] == "minmax" and meta.num_classes == 19
    assert esnet_main(["export", "--weights", str(reference_checkpoint), "--output", str(out), "--int8"]) == 2
    assert "--int8 needs --calibration-dir" in capsys.readouterr().err
    images = sorted((data / "leftImg8bit" / "val").rglob("*.png"))
    result = compare_predictions(tmp_path / "int8_fp32.onnx", out, images)
    assert result["images"] == 2 and 0.5 < result["agreement"] <= 1.0 and 0.0 <= result["miou_vs_fp32"] <= 1.0
