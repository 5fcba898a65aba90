"""The OpenVINO backend: each precision against fp32 PyTorch on synthetic scenes (label agreement and
mIoU), the compiled-model cache (reused, corrupt entries rebuilt), backend/precision ``auto`` and the
error texts for bad input.  Runs on the CPU; bf16 needs AMX or AVX512-BF16, int8 needs NNCF."""

import importlib.util
import logging

import cv2
import numpy as np
import pytest
import torch

from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights
from esnet_ros.data.synth import label_ids_to_train_ids
from esnet_ros.data.synth.writer import scene_pairs
from esnet_ros.inference import devices
from esnet_ros.inference.backends import calibration_options, create_backend
from esnet_ros.inference.devices import resolve_backend, resolve_choice, resolve_precision
from esnet_ros.inference.segmenter import Segmenter
from esnet_ros.training.metrics import ConfusionMatrix

pytestmark = pytest.mark.skipif(
    devices.openvino_version() is None, reason="openvino not installed (pip install openvino)"
)

CPU = torch.device("cpu")
SIZE = (512, 256)  # the bundled model's network input
SCENES = 4
HAS_BF16 = devices.cpu_has_bf16()
HAS_NNCF = importlib.util.find_spec("nncf") is not None


@pytest.fixture(scope="module")
def demo():
    return load_checkpoint(resolve_weights("synthetic"), "cpu")


@pytest.fixture(scope="module")
def scenes():
    """(bgr image, train-id ground truth) at the network size."""
    out = []
    for image, label_ids in scene_pairs(SCENES, seed=3, size=SIZE):
        out.append((image, label_ids_to_train_ids(label_ids)))
    return out


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    for i, (image, _) in enumerate(scene_pairs(8, seed=11, size=SIZE, split="train")):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return folder


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESNET_ROS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def score(segmenter, reference, scenes):
    """Pixel agreement with the reference engine's labels, and both engines' mIoU on the ground truth."""
    agree = total = 0
    ours, theirs = ConfusionMatrix(19), ConfusionMatrix(19)
    for image, truth in scenes:
        a = reference(image, "bgr").labels
        b = segmenter(image, "bgr").labels
        agree += int((a == b).sum())
        total += a.size
        theirs.update(truth, a)
        ours.update(truth, b)
    return agree / total, 100 * theirs.compute()["miou"], 100 * ours.compute()["miou"]


@pytest.fixture(scope="module")
def fp32_torch(demo):
    return Segmenter(demo, device="cpu", backend="torch", precision="fp32", input_size=SIZE)


@pytest.mark.parametrize(
    "precision, min_agreement, max_drop",
    [
        ("fp32", 0.999, 0.01),
        pytest.param("bf16", 0.995, 0.1, marks=pytest.mark.skipif(not HAS_BF16, reason="CPU without AMX/AVX512-BF16")),
    ],
)
def test_precision_matches_fp32_torch(demo, scenes, fp32_torch, cache, precision, min_agreement, max_drop):
    seg = Segmenter(demo, device="cpu", backend="openvino", precision=precision, input_size=SIZE, num_threads=2)
    assert seg.backend.name == "openvino" and seg.precision == precision
    agreement, miou_fp32, miou = score(seg, fp32_torch, scenes)
    assert miou_fp32 > 80  # the bundled model on its own kind of scenes
    assert agreement > min_agreement, agreement
    assert miou_fp32 - miou < max_drop, (miou_fp32, miou)  # bf16: the 0.1-point budget


@pytest.mark.skipif(not HAS_NNCF, reason="nncf not installed (pip install nncf)")
def test_int8_calibrated_with_nncf_and_cached(demo, scenes, fp32_torch, cache, calibration):
    options = {"calibration_dir": str(calibration), "calibration_images": 8}
    seg = Segmenter(demo, device="cpu", backend="openvino", precision="int8", input_size=SIZE, backend_options=options)
    assert seg.precision == "int8" and not seg.backend.cache_hit
    blobs = sorted((cache / "openvino").glob("esnet-*-512x256-int8-cal*-CPU-ov*.blob"))
    assert [b.name.split("-")[-3] for b in blobs] == ["labels", "labelsconf"]  # the two heads built at the start
    assert all(b.with_suffix(".sha256").is_file() for b in blobs)
    agreement, miou_fp32, miou = score(seg, fp32_torch, scenes)
    assert agreement > 0.98, agreement
    assert miou_fp32 - miou < 0.5, (miou_fp32, miou)  # the int8 budget (measured: 0.02 on 12 scenes)
    # a restart neither quantizes nor compiles again
    again = create_backend("openvino", demo[0], demo[1], CPU, "int8", SIZE, options=options)
    assert again.cache_hit and again.blob == blobs[0] and again._model is None  # nothing read or quantized


@pytest.mark.skipif(not HAS_NNCF, reason="nncf not installed (pip install nncf)")
def test_int8_calibration_dir_reaches_nncf_from_the_engine_options(calibration, cache, tmp_path):
    """``--int8-calibration-dir`` (the node's ``int8_calibration_dir``): OpenVINO int8 without an exported model."""
    import argparse

    from esnet_ros.cli.engine_options import add_engine_arguments, build_segmenter

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    args = parser.parse_args(
        [
            "--device",
            "cpu",
            "--backend",
            "openvino",
            "--precision",
            "int8",
            "--int8-calibration-dir",
            str(calibration),
            "--input-size",
            "512x256",
        ]
    )
    seg = build_segmenter(args)
    assert (seg.backend.name, seg.precision) == ("openvino", "int8") and "-int8-cal" in seg.backend.blob.name
    with pytest.raises(
        ValueError,
        match=r"int8_calibration_dir is used by backend=openvino .* not backend=torch; "
        r"set backend=openvino, or clear it",
    ):
        calibration_options("torch", str(calibration))
    with pytest.raises(
        FileNotFoundError, match=r"int8_calibration_dir .*missing is not a folder; point it at camera-like"
    ):
        calibration_options("openvino", str(tmp_path / "missing"))
    assert calibration_options("openvino", "") == {} == calibration_options("torch", "")


def test_compiled_model_cache_is_reused_and_a_corrupt_entry_rebuilt(demo, cache, caplog):
    model, meta = demo
    first = create_backend("openvino", model, meta, CPU, "fp32", SIZE)
    assert not first.cache_hit
    blob = first.blob
    assert blob.parent == cache / "openvino" and blob.name.endswith(
        f"-512x256-fp32-labels-CPU-ov{devices.openvino_version()}.blob"
    )
    stamp = blob.stat().st_mtime_ns
    x = torch.rand(1, 3, SIZE[1], SIZE[0], generator=torch.Generator().manual_seed(0))
    ref = first.labels(x)[0].copy()
    second = create_backend("openvino", model, meta, CPU, "fp32", SIZE)
    assert second.cache_hit and blob.stat().st_mtime_ns == stamp  # imported, not compiled
    assert np.array_equal(second.labels(x)[0], ref)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    blob.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        third = create_backend("openvino", model, meta, CPU, "fp32", SIZE)
    assert not third.cache_hit
    assert "is corrupt (checksum mismatch); rebuilding it" in caplog.text
    assert np.array_equal(third.labels(x)[0], ref)
    fourth = create_backend("openvino", model, meta, CPU, "fp32", SIZE)
    assert fourth.cache_hit  # the rebuilt entry is trusted again


@pytest.mark.parametrize(
    "precision, min_agreement",
    [
        ("fp32", 1.0),
        pytest.param("bf16", 0.999, marks=pytest.mark.skipif(not HAS_BF16, reason="CPU without AMX/AVX512-BF16")),
    ],
)
def test_fused_head_equals_the_argmax_and_softmax_of_the_logits(demo, scenes, cache, precision, min_agreement):
    """The label heads (TopK and max softmax in OpenVINO's graph) against the logits head, on real scenes."""
    _model, _meta = demo
    seg = Segmenter(demo, device="cpu", backend="openvino", precision=precision, input_size=SIZE)
    be = seg.backend
    assert be.fused_head and set(be.blobs) == {"labels", "labels+confidence"}
    for image, _ in scenes:
        x = torch.from_numpy(seg.network_input(image, "bgr"))
        logits = be(x)[0].clone()
        assert set(be.blobs) == {"labels", "labels+confidence", "logits"}  # compiled when first asked for
        want_labels = logits.argmax(0).numpy()
        want_conf = (1.0 / torch.exp(logits - logits.amax(0, keepdim=True)).sum(0)).mul(255).round().numpy()
        labels, none = be.labels(x)
        assert none is None and labels.shape == (SIZE[1], SIZE[0]) and labels.dtype == np.uint8
        assert (labels == want_labels).mean() >= min_agreement
        labels2, conf = be.labels(x, confidence=True)
        assert np.array_equal(labels2, labels) and conf.dtype == np.uint8
        same = labels == want_labels
        assert np.abs(conf[same].astype(int) - want_conf[same]).max() <= (1 if precision == "fp32" else 3)
        # the engine: nearest upsampling runs the label heads, bilinear the logits
        got = seg(image, "bgr", outputs=("labels", "confidence"))
        assert np.array_equal(got.labels, labels) and np.array_equal(got.confidence, conf)


def test_logits_layout_nhwc_gives_the_same_logits(demo, cache):
    model, meta = demo
    x = torch.rand(1, 3, SIZE[1], SIZE[0], generator=torch.Generator().manual_seed(1))
    nchw = create_backend("openvino", model, meta, CPU, "fp32", SIZE)(x).clone()
    be = create_backend("openvino", model, meta, CPU, "fp32", SIZE, options={"logits_layout": "nhwc"})
    out = be(x)
    assert out.shape == nchw.shape == (1, 19, SIZE[1], SIZE[0])
    assert out.is_contiguous(memory_format=torch.channels_last) and (out - nchw).abs().max().item() < 1e-4
    with torch.inference_mode():
        assert (nchw - model.eval()(x)).abs().max().item() < 1e-3


def test_auto_picks_openvino_bf16_where_the_cpu_has_it(monkeypatch, caplog):
    monkeypatch.setattr(devices, "cpu_isa", lambda: dict.fromkeys(devices.ISA_FLAGS, False) | {"amx_bf16": True})
    with caplog.at_level(logging.INFO):
        assert resolve_choice("auto", "auto", CPU) == ("openvino", "bf16")
    assert "backend=auto -> openvino: the CPU computes in bf16 (AMX or AVX512-BF16)" in caplog.text
    assert "precision=auto -> bf16 on backend openvino" in caplog.text
    assert resolve_choice("auto", "fp32", CPU) == ("onnxruntime", "fp32")  # an explicit fp32 keeps today's path
    assert resolve_choice("torch", "auto", CPU) == ("torch", "fp32")
    assert resolve_choice("auto", "int8", CPU) == ("onnxruntime", "int8")  # an explicit int8 .onnx: ONNX Runtime
    # a CPU without bf16: today's choices, and bf16 is refused with the fix
    monkeypatch.setattr(devices, "cpu_isa", lambda: dict.fromkeys(devices.ISA_FLAGS, False))
    assert resolve_choice("auto", "auto", CPU) == ("onnxruntime", "fp32")
    assert resolve_choice("openvino", "auto", CPU) == ("openvino", "fp32")
    with pytest.raises(
        ValueError, match=r"precision=bf16 needs a CPU with AMX-BF16 or AVX512-BF16 .*use precision=fp32"
    ):
        resolve_precision("bf16", CPU)
    # no OpenVINO: auto falls back to today's choice, an explicit request names the fix
    monkeypatch.setattr(devices, "openvino_version", lambda: None)
    monkeypatch.setattr(devices, "cpu_isa", lambda: dict.fromkeys(devices.ISA_FLAGS, True))
    assert resolve_choice("auto", "auto", CPU) == ("onnxruntime", "fp32")
    with pytest.raises(ValueError, match="backend=openvino needs OpenVINO: pip install openvino"):
        resolve_backend("openvino", CPU)


def test_bad_input_names_the_fix(demo, cache):
    model, meta = demo
    with pytest.raises(
        ValueError, match=r"ov_device='TPU' is not available to OpenVINO here \(it sees: CPU.*use ov_device=CPU"
    ):
        create_backend("openvino", model, meta, CPU, "fp32", SIZE, options={"ov_device": "tpu"})
    if "GPU" not in devices.openvino_devices():
        with pytest.raises(ValueError, match=r"ov_device='GPU' is not available.*intel-opencl-icd"):
            create_backend("openvino", model, meta, CPU, "fp32", SIZE, options={"ov_device": "GPU"})
    with pytest.raises(
        ValueError,
        match="precision=int8 on backend=openvino needs calibration images: pass the backend option calibration_dir",
    ):
        create_backend("openvino", model, meta, CPU, "int8", SIZE)
    with pytest.raises(ValueError, match="precision=bf16 runs on backend=openvino only"):
        resolve_backend("torch", CPU, "bf16")
    with pytest.raises(ValueError, match="logits_layout='nc' must be one of: nchw, nhwc"):
        create_backend("openvino", model, meta, CPU, "fp32", SIZE, options={"logits_layout": "nc"})
    with pytest.raises(ValueError, match="num_threads=-1 must be >= 0"):
        devices.thread_count(-1)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend=openvino runs with device=cpu"):
            resolve_backend("openvino", torch.device("cuda", 0))
