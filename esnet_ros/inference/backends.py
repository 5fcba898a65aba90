"""Inference backends: run the network on a preprocessed batch.

A backend maps a ``(1,3,h,w)`` float tensor (already normalized, on the engine's device) to
``(1,C,h,w)`` logits on the same device.  Pre- and post-processing stay in the engine
(:mod:`esnet_ros.inference.segmenter`), so every backend shares them.  The logits a backend returns may
live in a buffer it reuses on the next call: consume them before calling it again.

Backends (``backend=``):

- ``torch``: PyTorch in inference mode with BatchNorm folded into the convs
  (:mod:`esnet_ros.inference.fold`) and channels_last memory; on CUDA fp16 and a CUDA graph replayed
  for the fixed input size.  Options: ``fold_bn``, ``channels_last``, ``compile`` (a
  ``torch.compile`` mode, e.g. ``"max-autotune-no-cudagraphs"``), ``cuda_graph``.
- ``onnxruntime``: ONNX Runtime with the execution provider chosen by ``device`` (CPU, or CUDA
  with IO binding on the GPU).  Given a PyTorch model it exports (BN folded) into a cache
  directory keyed by the weights' hash and the input size; an ``.onnx`` file is used as is.
- ``openvino``: OpenVINO on the CPU in fp32, bf16 (AMX/AVX512-BF16) or int8 (NNCF post-training
  quantization), or on OpenVINO's ``GPU`` device; see :mod:`esnet_ros.inference.openvino_backend`.
- ``tensorrt``: ONNX Runtime's TensorRT execution provider (CUDA only), engines cached on disk.
- ``auto``: ``torch`` on CUDA; on the CPU ``openvino`` in bf16 when OpenVINO is installed, the CPU
  computes in bf16 (AMX or AVX512-BF16) and the precision is ``auto`` or ``bf16``; else
  ``onnxruntime`` when it is installed (the fastest fp32 CPU path, see docs/speed.md), else ``torch``.
  The choice and its reason are logged.

Threads: ``num_threads`` (0 = every core) sets the CPU threads of each backend; idle pools sleep
instead of spinning (ONNX Runtime's ``allow_spinning=0``; OpenVINO's threads are not pinned).
"""

from __future__ import annotations

import copy
import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import torch

from esnet_ros.inference import openvino_backend
from esnet_ros.inference.backend_base import Backend, cache_dir, weights_digest
from esnet_ros.inference.devices import resolve_choice, thread_count
from esnet_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
from esnet_ros.inference.process_settings import inductor_freezing, torch_threads

__all__ = [
    "Backend",
    "TorchBackend",
    "OnnxRuntimeBackend",
    "create_backend",
    "calibration_options",
    "cache_dir",
    "cached_onnx",
]

log = logging.getLogger(__name__)

EXPORT_REVISION = 2  # bump when export_onnx's graph rewrites change: cached exports are then redone


# -- PyTorch ------------------------------------------------------------------------------------


class TorchBackend(Backend):
    """PyTorch in inference mode.

    Args:
        model: any ``nn.Module`` mapping ``(N,3,H,W) -> (N,C,H,W)``; an ESNet gets its BN folded.
        fold_bn: fold BatchNorm into the convs (ESNet only; logits equal within 1e-4).
        channels_last: NHWC memory (``None``: on for ESNet; oneDNN and cuDNN are faster with it).
        compile: a ``torch.compile`` mode (``"default"``, ``"max-autotune-no-cudagraphs"``, ...) or
            ``None``.  On the CPU it compiles with inductor's freezing (conv+ReLU/add fusion,
            weight prepacking), which needs a C compiler and a minute of start-up.
        cuda_graph: capture one CUDA graph for the fixed input size and replay it (``None``: on
            for CUDA).  The returned logits then live in the graph's static output buffer.
        num_threads: CPU threads for PyTorch's intra-op pool (``torch.set_num_threads``, process-wide);
            0 leaves PyTorch's default (every physical core).
    """

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        precision: str,
        *,
        fold_bn: bool = True,
        channels_last: bool | None = None,
        compile: str | None = None,
        cuda_graph: bool | None = None,
        num_threads: int = 0,
    ) -> None:
        super().__init__(device, precision)
        if precision in ("int8", "bf16"):
            raise ValueError(
                f"precision={precision} runs on backend=onnxruntime or backend=openvino; "
                f"use precision=fp32 with backend=torch"
            )
        if num_threads:
            torch_threads(thread_count(num_threads))
        from esnet_ros.core.model import ESNet
        from esnet_ros.inference.fold import fold_batchnorm

        is_esnet = isinstance(model, ESNet)
        steps = []
        if fold_bn and is_esnet:
            model = fold_batchnorm(model)
            steps.append("folded")
        elif is_esnet:
            model = copy.deepcopy(model)  # .to(device, dtype) below must not change the caller's model
        self.channels_last = is_esnet if channels_last is None else bool(channels_last)
        model = model.eval().requires_grad_(False).to(device=device, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
            steps.append("channels_last")
        self.model = model
        self._run = model
        if compile:
            self._run = self._compile(model, compile)
            steps.append(f"compile:{compile}")
        self.use_cuda_graph = device.type == "cuda" if cuda_graph is None else bool(cuda_graph)
        if self.use_cuda_graph and device.type != "cuda":
            raise ValueError("cuda_graph=True needs a CUDA device; leave it unset on the CPU")
        if self.use_cuda_graph:
            steps.append("cuda_graph")
        self._graph: Any = None
        self._static_in: torch.Tensor | None = None
        self._static_out: torch.Tensor | None = None
        self.variant = "+".join(steps)

    def _compile(self, model: torch.nn.Module, mode: str) -> Any:
        if self.device.type == "cpu":
            inductor_freezing()
        return torch.compile(model, mode=None if mode == "default" else mode, dynamic=False)

    def input_buffer(self, shape: tuple[int, ...]) -> torch.Tensor | None:
        if self.device.type != "cpu" or self.dtype != torch.float32:
            return None
        buf = getattr(self, "_in_buf", None)
        if buf is None or tuple(buf.shape) != tuple(shape):
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            buf = self._in_buf = torch.empty(shape, dtype=torch.float32).contiguous(memory_format=fmt)
        return buf

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_cuda_graph:
            return self._run(self._prepare(x))
        if self._graph is None or self._static_in is None or self._static_in.shape != x.shape:
            self._capture(x)
        self._static_in.copy_(x)
        self._graph.replay()
        return self._static_out

    def _capture(self, x: torch.Tensor) -> None:
        """Warm up on a side stream, then capture one forward pass for ``x``'s shape."""
        self._graph = None
        static_in = torch.empty_like(self._prepare(x))
        static_in.copy_(x)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._run(static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._run(static_in)
        self._graph, self._static_in, self._static_out = graph, static_in, static_out
        log.info("captured a CUDA graph for input %s", tuple(x.shape))

    def release(self) -> None:
        self._graph = self._static_in = self._static_out = None
        self.model = self.model.cpu()
        self._run = self.model


# -- ONNX Runtime -------------------------------------------------------------------------------


def cached_onnx(
    model: torch.nn.Module,
    meta: Mapping[str, Any],
    input_size: tuple[int, int],
    *,
    fp16: bool = False,
    directory: str | os.PathLike | None = None,
) -> pathlib.Path:
    """Export ``model`` (BN folded) to ``<cache>/onnx/esnet-<hash>-<W>x<H>[-fp16]-r<revision>.onnx`` once."""
    from esnet_ros.inference.onnx_export import export_onnx

    w, h = input_size
    name = f"esnet-{weights_digest(model)}-{w}x{h}{'-fp16' if fp16 else ''}-r{EXPORT_REVISION}.onnx"
    path = cache_dir(directory) / "onnx" / name
    if not path.is_file():
        log.info("exporting the model to %s (once; later starts reuse it)", path)
        export_onnx(model, meta, path, input_size=input_size, fp16=fp16, verify=False)
    return path


def _onnx_source(
    model: torch.nn.Module | None,
    meta: Mapping[str, Any],
    input_size: tuple[int, int],
    options: Mapping[str, Any],
    cuda_fp16: bool = False,
) -> pathlib.Path:
    """The ONNX file to run: ``options["onnx_path"]``, the weights' own .onnx, or a cached export."""
    onnx_path = options.get("onnx_path") or meta.onnx_path
    if onnx_path:
        return pathlib.Path(onnx_path)
    from esnet_ros.core.model import ESNet

    if not isinstance(model, ESNet):
        raise ValueError(
            f"backend=onnxruntime/openvino exports ESNet models on the fly, got a {type(model).__name__}; "
            f"pass an .onnx file as weights or use backend=torch"
        )
    return cached_onnx(model, meta, input_size, fp16=cuda_fp16, directory=options.get("cache_dir"))


def calibration_options(backend: str, calibration_dir: str | None) -> dict[str, Any]:
    """Backend options for int8 calibration images (the node's ``int8_calibration_dir``, ``--int8-calibration-dir``).

    OpenVINO quantizes with NNCF on them (once: the result is cached); no other backend calibrates at
    run time, so naming images for one is refused with the fix.
    """
    if not calibration_dir:
        return {}
    if str(backend).strip().lower() != "openvino":
        raise ValueError(
            f"int8_calibration_dir is used by backend=openvino (NNCF quantization) only, not backend={backend}; "
            f"set backend=openvino, or clear it and pass an int8 .onnx from `esnet export --int8` as weights"
        )
    folder = pathlib.Path(calibration_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"int8_calibration_dir {folder} is not a folder; point it at camera-like PNG/JPEG "
            f"images (e.g. `esnet synth` output)"
        )
    return {"calibration_dir": str(folder)}


def create_backend(
    name: str,
    model: torch.nn.Module | None,
    meta: Mapping[str, Any],
    device: torch.device,
    precision: str,
    input_size: tuple[int, int],
    *,
    options: Mapping[str, Any] | None = None,
    num_threads: int = 0,
) -> Backend:
    """Build the backend called ``name`` for ``model`` at a fixed ``input_size`` (W, H).

    ``precision`` may be ``auto`` (resolved with the backend, see :func:`resolve_choice`); the
    backend's ``precision`` says what runs.  ``num_threads``: CPU threads (0 = every core).
    ``options``: for ``torch`` the keyword arguments of :class:`TorchBackend`; for
    ``onnxruntime``/``tensorrt`` ``onnx_path`` (use this file instead of exporting), ``cache_dir``
    and ``spin`` (let idle ORT threads spin; off by default); for ``openvino`` ``onnx_path``,
    ``cache_dir``, ``ov_device`` (``CPU``, ``GPU``, ``GPU.1``, ...), ``logits_layout`` and, for int8,
    ``calibration_dir`` and ``calibration_images`` (see :class:`~esnet_ros.inference.openvino_backend.OpenVinoBackend`).
    ``meta.onnx_path`` (set when the weights are an .onnx file) also selects the file.
    """
    options = dict(options or {})
    key, precision = resolve_choice(name, precision, device)
    if key == "torch":
        if model is None:
            raise ValueError(
                "backend=torch needs PyTorch weights (.safetensors/.pt); for an .onnx file use backend=onnxruntime"
            )
        return TorchBackend(model, device, precision, num_threads=num_threads, **options)
    if key == "openvino":
        return _openvino(model, meta, device, precision, input_size, options, num_threads)
    if precision == "int8" and not (options.get("onnx_path") or meta.onnx_path):
        raise ValueError(
            "precision=int8 needs an int8 ONNX model: make one with `esnet export --weights W --output m.onnx "
            "--int8 --calibration-dir IMAGES` and pass it as weights (or use backend=openvino with the "
            "backend option calibration_dir=IMAGES)"
        )
    cuda_fp16 = key == "onnxruntime" and device.type == "cuda" and precision == "fp16"
    path = _onnx_source(model, meta, input_size, options, cuda_fp16)
    return OnnxRuntimeBackend(
        path,
        device,
        precision,
        provider="tensorrt" if key == "tensorrt" else "auto",
        threads=options.get("threads", num_threads),
        trt_cache=options.get("cache_dir"),
        spin=bool(options.get("spin", False)),
        input_size=input_size,
    )


def _openvino(model, meta, device, precision, input_size, options, num_threads) -> Backend:
    """``create_backend``'s OpenVINO branch (its options are listed there)."""
    return openvino_backend.OpenVinoBackend(
        _onnx_source(model, meta, input_size, options),
        device,
        precision,
        input_size,
        meta=meta,
        ov_device=options.get("ov_device", "CPU"),
        num_threads=num_threads,
        cache=options.get("cache_dir"),
        calibration_dir=options.get("calibration_dir"),
        calibration_images=int(options.get("calibration_images", openvino_backend.CALIBRATION_IMAGES)),
        logits_layout=options.get("logits_layout", "nchw"),
    )
