"""Backend selection and its errors, the ONNX Runtime backend (export cache, IO binding) and the
CUDA paths (fp16, CUDA graphs, ORT CUDA) where a GPU exists."""

import numpy as np
import pytest
import torch

from esnet_ros.core.checkpoint import load_checkpoint
from esnet_ros.inference import backends as backends
from esnet_ros.inference import devices as devices
from esnet_ros.inference.backends import TorchBackend, create_backend
from esnet_ros.inference.devices import BACKENDS, resolve_backend, resolve_precision
from esnet_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
from esnet_ros.inference.segmenter import Segmenter

CPU = torch.device("cpu")
W, H = 128, 64


@pytest.fixture(scope="module")
def reference(reference_checkpoint):
    return load_checkpoint(reference_checkpoint)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESNET_ROS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_backend_names():
    assert BACKENDS == ("torch", "onnxruntime", "openvino", "tensorrt", "auto")


def test_unknown_backend_names_the_choices(reference):
    model, meta = reference
    with pytest.raises(
        ValueError, match="backend='tflite' is not available; use one of: torch, onnxruntime, openvino, tensorrt, auto"
    ):
        create_backend("tflite", model, meta, CPU, "fp32", (W, H))
    with pytest.raises(ValueError, match="backend='tflite' is not available"):
        Segmenter(reference[0:2], device="cpu", backend="tflite", input_size=(W, H))


def test_tensorrt_on_the_cpu_names_the_fix():
    with pytest.raises(
        ValueError, match="backend=tensorrt needs a CUDA device; use device=cuda, or backend=onnxruntime"
    ):
        resolve_backend("tensorrt", CPU)


def test_tensorrt_without_tensorrt_names_the_fix(monkeypatch):
    # a CUDA machine whose onnxruntime-gpu lacks the TensorRT provider
    monkeypatch.setattr(devices, "onnxruntime_providers", lambda: ("CUDAExecutionProvider", "CPUExecutionProvider"))
    with pytest.raises(ValueError, match=r"lacks .*pip install onnxruntime-gpu tensorrt.*or use backend=onnxruntime"):
        resolve_backend("tensorrt", torch.device("cuda", 0), "fp16")
    assert resolve_backend("onnxruntime", torch.device("cuda", 0), "fp16") == "onnxruntime"


def test_onnxruntime_cuda_without_onnxruntime_gpu_and_without_onnxruntime(monkeypatch):
    monkeypatch.setattr(devices, "onnxruntime_providers", lambda: ("CPUExecutionProvider",))
    with pytest.raises(ValueError, match=r"needs onnxruntime-gpu .*pip install onnxruntime-gpu"):
        resolve_backend("onnxruntime", torch.device("cuda", 0), "fp16")
    monkeypatch.setattr(devices, "onnxruntime_providers", lambda: ())
    with pytest.raises(ValueError, match="needs ONNX Runtime: pip install onnxruntime"):
        resolve_backend("onnxruntime", CPU)
    assert resolve_backend("auto", CPU) == "torch"  # no ORT: auto falls back to torch


def test_auto_and_precision_rules(monkeypatch):
    monkeypatch.setattr(devices, "onnxruntime_providers", lambda: ("CPUExecutionProvider",))
    assert resolve_backend("auto", CPU) == "onnxruntime"
    assert resolve_backend("AUTO", torch.device("cuda", 0), "fp16") == "torch"
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("int8", CPU) == "int8"
    with pytest.raises(ValueError, match="precision=int8 runs on the CPU only"):
        resolve_precision("int8", torch.device("cuda", 0))
    with pytest.raises(ValueError, match="precision='bf8' must be one of: auto, fp32, fp16, bf16, int8"):
        resolve_precision("bf8", CPU)
    with pytest.raises(ValueError, match="precision=int8 runs on backend=onnxruntime"):
        resolve_backend("torch", CPU, "int8")


def test_int8_without_an_int8_model_names_the_fix(reference, cache):
    model, meta = reference
    with pytest.raises(ValueError, match=r"esnet export .*--int8 --calibration-dir"):
        create_backend("onnxruntime", model, meta, CPU, "int8", (W, H))


@pytest.mark.skipif(not devices.onnxruntime_providers(), reason="onnxruntime not installed")
def test_onnxruntime_backend_exports_once_and_matches_torch(reference, cache, reference_checkpoint):
    model, meta = reference
    be = create_backend("onnxruntime", model, meta, CPU, "fp32", (W, H))
    assert isinstance(be, OnnxRuntimeBackend) and be.providers[0] == "CPUExecutionProvider"
    files = list((cache / "onnx").glob("esnet-*-128x64-r*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    create_backend("onnxruntime", model, meta, CPU, "fp32", (W, H))  # cache hit: no new export
    assert files[0].stat().st_mtime_ns == stamp and len(list((cache / "onnx").iterdir())) == 1
    blob = torch.load(reference_checkpoint, weights_only=True)
    x = blob["input"]
    out = be(x)
    assert (out - blob["logits"]).abs().max().item() < 1e-4
    # IO binding: the engine writes into the bound input, the output buffer is reused
    buf = be.input_buffer(tuple(x.shape))
    buf.copy_(torch.zeros_like(x))
    out2 = be(buf)
    assert out2.data_ptr() == out.data_ptr()
    with torch.inference_mode():
        assert (out2 - model(torch.zeros_like(x))).abs().max().item() < 1e-4


@pytest.mark.skipif(not devices.onnxruntime_providers(), reason="onnxruntime not installed")
def test_segmenter_with_onnxruntime_equals_torch(reference, cache):
    img = np.random.default_rng(2).integers(0, 256, (72, 136, 3), dtype=np.uint8)
    outs = ("labels", "confidence", "color", "overlay")
    a = Segmenter(reference, device="cpu", backend="torch", input_size=(W, H))(img, "bgr", outputs=outs)
    seg = Segmenter(reference, device="cpu", backend="onnxruntime", input_size=(W, H))
    b = seg(img, "bgr", outputs=outs)
    assert seg.backend.name == "onnxruntime"
    assert (a.labels == b.labels).mean() > 0.999
    assert np.abs(a.confidence.astype(int) - b.confidence.astype(int)).max() <= 1
    assert (a.overlay == b.overlay).all(axis=-1).mean() > 0.999


# -- CUDA ------------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_graph_fp16_and_fp32_match_eager(reference, reference_checkpoint):
    model, _meta = reference
    dev = torch.device("cuda", 0)
    blob = torch.load(reference_checkpoint, weights_only=True)
    x = blob["input"].to(dev)
    ref = blob["logits"].to(dev)
    fp32 = TorchBackend(model, dev, "fp32")
    assert "cuda_graph" in fp32.variant
    a = fp32(x).clone()
    b = fp32(x * 1.0)  # a replay with new data in the static input
    assert (a - ref).abs().max().item() < 1e-3 and (b - ref).abs().max().item() < 1e-3
    half = TorchBackend(model, dev, "fp16")
    assert (half(x).float() - ref).abs().max().item() < 5e-2
    assert (half(x).float().argmax(1) == ref.argmax(1)).float().mean().item() > 0.98


@pytest.mark.cuda
def test_onnxruntime_cuda_io_binding(reference, cache):
    if "CUDAExecutionProvider" not in devices.onnxruntime_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    model, meta = reference
    dev = torch.device("cuda", 0)
    be = create_backend("onnxruntime", model, meta, dev, "fp32", (W, H))
    x = torch.rand(1, 3, H, W, device=dev)
    out = be(x)
    assert out.device.type == "cuda"
    with torch.inference_mode():
        assert (out.float() - model.to(dev)(x)).abs().max().item() < 1e-3


def test_tensorrt_engine_cache_is_keyed_by_gpu_version_precision_and_shape():
    from esnet_ros.inference.onnxruntime_backend import trt_engine_key

    key = trt_engine_key("NVIDIA H200", (9, 0), "10.9.0", "fp16", (1024, 512))
    assert key == "nvidia-h200-sm90-trt10.9.0-fp16-1024x512"
    others = {
        trt_engine_key("NVIDIA GeForce RTX 4090", (8, 9), "10.9.0", "fp16", (1024, 512)),
        trt_engine_key("NVIDIA H200", (9, 0), "10.8.0", "fp16", (1024, 512)),
        trt_engine_key("NVIDIA H200", (9, 0), "10.9.0", "fp32", (1024, 512)),
        trt_engine_key("NVIDIA H200", (9, 0), "10.9.0", "fp16", (512, 256)),
    }
    assert len(others) == 4 and key not in others
    assert trt_engine_key("Orin (nvgpu)", (8, 7), "unknown", "fp16", None) == "orin-nvgpu-sm87-trtunknown-fp16-dynamic"
