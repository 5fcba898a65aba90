"""precision=auto on the CPU: the int8 companion when validated, then bf16, then fp32 (auto_precision.py)."""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest

from esnet_ros.core.checkpoint import resolve_weights
from esnet_ros.inference import devices
from esnet_ros.inference.auto_precision import INT8_MAX_LOSS, choose_cpu_precision, int8_companion
from esnet_ros.inference.onnx_export import read_onnx_metadata, write_onnx_metadata

NONE = dict.fromkeys(devices.ISA_FLAGS, False)
ZEN3 = {**NONE, "avx2": True}  # AMD EPYC 7003: AVX2 only
ZEN4 = {**ZEN3, "avx512f": True, "avx512_vnni": True, "avx512_bf16": True}
SAPPHIRE_RAPIDS = {**ZEN4, "amx_tile": True, "amx_int8": True, "amx_bf16": True}
OLD = NONE  # no AVX2

CAMVID = resolve_weights("camvid")
COMPANION = CAMVID.with_name("esnet_camvid_int8.onnx")


@pytest.fixture(scope="module")
def validated():
    return read_onnx_metadata(COMPANION)


def with_loss(meta, loss):
    return meta.replace(int8_validation={**meta.int8_validation, "miou_loss_points": loss})


@pytest.mark.parametrize(
    "isa, instructions", [(SAPPHIRE_RAPIDS, "AMX-INT8"), (ZEN4, "AVX512-VNNI"), (ZEN3, "AVX2 (vpmaddubsw)")]
)
def test_validated_int8_is_picked_with_the_reason(validated, isa, instructions):
    choice = choose_cpu_precision(isa, openvino=True, int8_meta=validated, int8_path=COMPANION)
    loss = validated.int8_validation["miou_loss_points"]
    assert (choice.precision, choice.backend, choice.weights) == ("int8", "openvino", COMPANION)
    assert choice.reason == (
        f"int8: esnet_camvid_int8.onnx costs {loss:.2f} mIoU points on camvid val split "
        f"(<= 0.5) and the CPU has {instructions}"
    )


def test_too_costly_int8_falls_back_to_bf16_then_fp32(validated):
    costly = with_loss(validated, INT8_MAX_LOSS + 0.01)
    bf16 = choose_cpu_precision(ZEN4, openvino=True, int8_meta=costly, int8_path=COMPANION)
    assert (bf16.precision, bf16.backend, bf16.weights) == ("bf16", "openvino", None)
    assert bf16.reason == "bf16: the CPU has AVX512-BF16 (esnet_camvid_int8.onnx costs 0.51 mIoU points (> 0.5))"
    fp32 = choose_cpu_precision(ZEN3, openvino=True, int8_meta=costly, int8_path=COMPANION)
    assert (fp32.precision, fp32.backend) == ("fp32", "auto")
    assert fp32.reason.startswith("fp32: no bf16 in this CPU") and "costs 0.51 mIoU points" in fp32.reason
    at_limit = choose_cpu_precision(
        ZEN3, openvino=True, int8_meta=with_loss(validated, INT8_MAX_LOSS), int8_path=COMPANION
    )
    assert at_limit.precision == "int8"


@pytest.mark.parametrize(
    "kwargs, why",
    [
        ({"isa": OLD}, "the CPU has no int8 dot products (AMX-INT8, AVX512-VNNI, AVX-VNNI or AVX2)"),
        ({"openvino": False}, "int8 runs on OpenVINO, which is not installed (pip install openvino)"),
        ({"backend": "onnxruntime"}, "int8 is validated on OpenVINO, not backend=onnxruntime"),
        ({"unvalidated": True}, "esnet_camvid_int8.onnx records no validated mIoU loss (int8_validation)"),
        ({"no_companion": True}, "the model has no int8 companion"),
    ],
)
def test_why_int8_is_not_picked(validated, kwargs, why):
    meta = (
        None
        if kwargs.get("no_companion")
        else (validated.replace(int8_validation=None) if kwargs.get("unvalidated") else validated)
    )
    choice = choose_cpu_precision(
        kwargs.get("isa", ZEN3),
        openvino=kwargs.get("openvino", True),
        backend=kwargs.get("backend", "auto"),
        int8_meta=meta,
        int8_path=None if meta is None else COMPANION,
    )
    assert choice.precision == "fp32" and choice.weights is None
    assert why in choice.reason


def test_bundled_companion_records_its_calibration_and_validation(validated):
    """The bundled int8 file: NNCF on CamVid train images, validated on val, loss = fp32 - int8 in points."""
    assert int8_companion(CAMVID) == COMPANION
    assert validated.onnx_precision == "int8" and validated.onnx_dynamic
    assert validated.class_names == read_onnx_metadata(COMPANION).class_names and validated.num_classes == 11
    cal = validated.int8_calibration
    assert (cal["quantizer"], cal["directory"], cal["images"], cal["size"]) == ("nncf", "train", 128, [480, 360])
    v = validated.int8_validation
    assert (v["dataset"], v["split"], v["images"], v["input_size"]) == ("camvid", "val", 101, [480, 360])
    assert v["miou_loss_points"] == pytest.approx(100 * (v["miou_fp32"] - v["miou_int8"]), abs=1e-3)
    assert 0 <= v["miou_loss_points"] <= INT8_MAX_LOSS
    # the fp32 score it was validated against is the checkpoint's own validation mIoU (70.57%)
    assert v["miou_fp32"] == pytest.approx(0.7057, abs=5e-4)


@pytest.mark.skipif(not devices.openvino_version(), reason="OpenVINO is not installed")
def test_segmenter_auto_runs_the_companion_and_a_costly_one_is_refused(tmp_path, caplog):
    from esnet_ros.inference.segmenter import Segmenter

    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), np.uint8)
    caplog.set_level("INFO", logger="esnet_ros.inference.loading")
    seg = Segmenter("camvid", device="cpu", input_size=(96, 72))
    if devices.cpu_isa()["avx2"]:
        assert (seg.backend.name, seg.precision) == ("openvino", "int8")
        assert seg.meta.onnx_path == str(COMPANION) and seg.meta.source == str(CAMVID)
        assert seg.precision_reason.startswith("int8: esnet_camvid_int8.onnx costs")
        assert f"precision=auto -> {seg.precision_reason}" in caplog.text
    assert seg(image, "bgr").labels.shape == (90, 120)
    # a copy whose companion records a loss above the limit: auto keeps the fp32 (or bf16) weights
    weights = pathlib.Path(shutil.copy(CAMVID, tmp_path / "mine.safetensors"))
    costly = tmp_path / "mine_int8.onnx"
    shutil.copy(COMPANION, costly)
    write_onnx_metadata(costly, with_loss(read_onnx_metadata(COMPANION), 1.25))
    seg = Segmenter(weights, device="cpu", input_size=(96, 72))
    assert seg.precision in ("fp32", "bf16") and seg.meta.onnx_path != str(costly)
    assert "mine_int8.onnx costs 1.25 mIoU points (> 0.5)" in seg.precision_reason
    # an explicit precision is never overridden
    assert (
        Segmenter("camvid", device="cpu", precision="fp32", input_size=(96, 72)).precision_reason
        == "precision=fp32 as asked"
    )


@pytest.mark.skipif(not devices.openvino_version(), reason="OpenVINO is not installed")
def test_explicit_int8_runs_the_companion_unless_calibration_is_given():
    from esnet_ros.inference.loading import load_for_engine

    cpu = devices.resolve_device("cpu")
    loaded = load_for_engine("camvid", "auto", "int8", cpu)
    assert (loaded.model, loaded.backend, loaded.precision) == (None, "openvino", "int8")
    assert loaded.meta.onnx_path == str(COMPANION)
    assert loaded.reason == "precision=int8 as asked: the weights' int8 companion esnet_camvid_int8.onnx"
    own = load_for_engine("camvid", "openvino", "int8", cpu, options={"calibration_dir": "/images"})
    assert own.model is not None and own.meta.onnx_path is None and own.reason == "precision=int8 as asked"


def test_the_demo_model_has_a_validated_companion_too():
    synthetic = resolve_weights("synthetic")
    companion = int8_companion(synthetic)
    assert companion == synthetic.with_name("esnet_demo_synth_int8.onnx")
    meta = read_onnx_metadata(companion)
    v = meta.int8_validation
    assert meta.int8_calibration["quantizer"] == "nncf" and meta.int8_calibration["directory"] == "train"
    assert v["split"] == "val" and 0 <= v["miou_loss_points"] <= INT8_MAX_LOSS
    assert v["miou_loss_points"] == pytest.approx(100 * (v["miou_fp32"] - v["miou_int8"]), abs=1e-3)
