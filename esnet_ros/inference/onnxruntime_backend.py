"""ONNX Runtime backend: an ONNX model on the CPU, CUDA or TensorRT execution provider.

:func:`esnet_ros.inference.backends.create_backend` builds it for ``backend=onnxruntime`` and
``backend=tensorrt``; TensorRT engines are cached on disk in a folder keyed by :func:`trt_engine_key`.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
from typing import Any

import numpy as np
import torch

from esnet_ros.inference.backend_base import Backend, cache_dir
from esnet_ros.inference.devices import thread_count

__all__ = ["OnnxRuntimeBackend", "tensorrt_version", "trt_engine_key"]

log = logging.getLogger(__name__)


class OnnxRuntimeBackend(Backend):
    """An ONNX model in ONNX Runtime, on the CPU, CUDA or TensorRT execution provider.

    Inputs and outputs go through IO binding into buffers allocated once (pinned to the GPU
    on CUDA), so a call allocates nothing.  On the CPU the session uses ORT's full graph
    optimizations (conv+ReLU/add fusion, NCHWc layouts).
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        device: torch.device,
        precision: str,
        *,
        provider: str = "auto",
        threads: int | None = None,
        trt_cache: str | os.PathLike | None = None,
        spin: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(device, precision)
        import onnxruntime as ort

        self.path = pathlib.Path(onnx_path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if device.type == "cpu":
            opts.intra_op_num_threads = thread_count(threads) if threads else torch.get_num_threads()
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            # denormal floats to zero (FTZ/DAZ) in ORT's threads: the demo model at 1024x512 ran
            # 254 -> 194 ms; values below 1.2e-38 do not move float32 logits
            opts.add_session_config_entry("session.set_denormal_as_zero", "1")
            # idle ORT threads sleep instead of spinning between calls (a spinning pool steals a shared
            # robot CPU from the camera driver: 195 -> 556 ms under one busy core, see docs/speed.md)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        index = device.index or 0
        if provider == "tensorrt":
            self.name = "tensorrt"
            providers, self.engine_cache = _tensorrt_providers(device, index, precision, input_size, trt_cache)
        elif device.type == "cuda":
            providers = [("CUDAExecutionProvider", {"device_id": index, "cudnn_conv_algo_search": "EXHAUSTIVE"})]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        self.providers = tuple(self.session.get_providers())
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.io_dtype = torch.float16 if inp.type == "tensor(float16)" else torch.float32
        self._binding = self.session.io_binding()
        self._in: torch.Tensor | None = None
        self._out: torch.Tensor | None = None
        self._num_classes = int(out.shape[1]) if isinstance(out.shape[1], int) else None
        self.variant = f"{self.providers[0].replace('ExecutionProvider', '')}"
        log.info("onnxruntime session for %s on %s", self.path.name, ", ".join(self.providers))

    def _bind(self, x: torch.Tensor) -> None:
        n, _, h, w = x.shape
        c = self._num_classes or int(self.session.run(None, {self.input_name: x.cpu().numpy()})[0].shape[1])
        self._num_classes = c
        self._in = torch.empty((n, 3, h, w), dtype=self.io_dtype, device=self.device)
        self._out = torch.empty((n, c, h, w), dtype=self.io_dtype, device=self.device)
        kind, index = ("cuda", self.device.index or 0) if self.device.type == "cuda" else ("cpu", 0)
        np_type = np.float16 if self.io_dtype == torch.float16 else np.float32
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        b.bind_input(self.input_name, kind, index, np_type, tuple(self._in.shape), self._in.data_ptr())
        b.bind_output(self.output_name, kind, index, np_type, tuple(self._out.shape), self._out.data_ptr())

    def input_buffer(self, shape: tuple[int, ...]) -> torch.Tensor | None:
        if self.device.type != "cpu" or self.io_dtype != torch.float32:
            return None
        if self._in is None or tuple(self._in.shape) != tuple(shape):
            self._bind(torch.zeros(shape))
        return self._in

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._in is None or self._in.shape != x.shape:
            self._bind(x)
        if x.data_ptr() != self._in.data_ptr():
            self._in.copy_(x)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # the copy must land before ORT reads
        self.session.run_with_iobinding(self._binding)
        return self._out

    def release(self) -> None:
        self._in = self._out = None
        self._binding = None
        self.session = None


def _tensorrt_providers(
    device: torch.device,
    index: int,
    precision: str,
    input_size: tuple[int, int] | None,
    trt_cache: str | os.PathLike | None,
) -> tuple[list[Any], pathlib.Path]:
    """ONNX Runtime's TensorRT provider (then CUDA's) with its engine cache folder (:func:`trt_engine_key`)."""
    engines = (
        cache_dir(trt_cache)
        / "trt"
        / trt_engine_key(
            torch.cuda.get_device_name(device),
            torch.cuda.get_device_capability(device),
            tensorrt_version(),
            precision,
            input_size,
        )
    )
    engines.mkdir(parents=True, exist_ok=True)
    trt_opts = {
        "device_id": index,
        "trt_fp16_enable": precision == "fp16",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(engines),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(engines),
    }
    return [("TensorrtExecutionProvider", trt_opts), ("CUDAExecutionProvider", {"device_id": index})], engines


def tensorrt_version() -> str:
    """The TensorRT Python package's version (``unknown`` without it: ONNX Runtime may carry its own libraries)."""
    try:
        import tensorrt
    except ImportError:
        return "unknown"
    return str(tensorrt.__version__)


def trt_engine_key(
    gpu: str, capability: tuple[int, int], trt: str, precision: str, input_size: tuple[int, int] | None
) -> str:
    """The TensorRT engine cache folder's name: an engine is only reused on the same GPU model and compute
    capability, TensorRT version, precision and input shape (e.g. ``nvidia-h200-sm90-trt10.9-fp16-1024x512``)."""
    slug = re.sub(r"[^a-z0-9.]+", "-", gpu.lower()).strip("-")
    shape = f"{input_size[0]}x{input_size[1]}" if input_size else "dynamic"
    return f"{slug}-sm{capability[0]}{capability[1]}-trt{trt}-{precision}-{shape}"
