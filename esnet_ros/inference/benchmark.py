"""Model-only benchmarks: every backend x precision this machine can run, timed in one run.

Each entry builds its backend for a ``(1,3,H,W)`` input, runs warm-up calls, then times ``runs`` calls
(synchronized on CUDA): median, p90, min, FPS and the process CPU time per call.  Eager fp32 PyTorch is
always part of the run, so every ``speedup_vs_eager`` compares figures measured minutes apart on the same
machine state.  :func:`machine_info` records the CPU and its ISA flags (AMX, AVX512-BF16, VNNI), the
library versions and the load; :func:`background_load` keeps one core busy with a CPU hog process while
measuring, to show how each path behaves on a shared robot CPU.

The ``esnet bench`` command (:mod:`esnet_ros.cli.bench`) runs these and the node end to end
(:mod:`esnet_ros.tooling.node_bench`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from esnet_ros.core.metadata import ModelMeta
from esnet_ros.core.sizes import parse_size
from esnet_ros.core.summary import summarize
from esnet_ros.inference.backends import create_backend
from esnet_ros.inference.devices import cpu_has_bf16, cpu_isa, onnxruntime_providers, openvino_devices, openvino_version
from esnet_ros.inference.onnx_export import read_onnx_metadata

__all__ = [
    "Entry",
    "time_entries",
    "fixed_size",
    "parse_sizes",
    "machine_info",
    "model_entries",
    "time_call",
    "bench_input",
    "network_call",
    "time_model",
    "background_load",
    "loadavg",
    "sync",
]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One model-only configuration: how to build its backend, and the node's parameter for it."""

    backend: str  # create_backend name
    variant: str  # what was applied, e.g. "eager", "folded+channels_last"
    precision: str
    options: dict = dataclasses.field(default_factory=dict)
    node_backend: str | None = None  # the node's `backend` value that runs exactly this entry


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1024x512,512x256"`` -> ``[(1024, 512), (512, 256)]`` (multiples of 8)."""
    sizes = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if not part:
            continue
        sizes.append(parse_size(part, "--sizes entry"))
    if not sizes:
        raise ValueError("--sizes is empty; e.g. --sizes 1024x512,512x256")
    return sizes


def machine_info(device: torch.device) -> dict[str, Any]:
    """The CPU (model name, cores, ISA flags), GPU, library versions and the load average now."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime as ort

        ort_version = ort.__version__
    except ImportError:
        ort_version = None
    gpu = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "onnxruntime": ort_version,
        "onnxruntime_providers": list(onnxruntime_providers()),
        "openvino": openvino_version(),
        "openvino_devices": list(openvino_devices()),
        "isa": cpu_isa(),
        "python": platform.python_version(),
        "loadavg_start": loadavg(),
    }


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages (``None`` where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def model_entries(
    device: torch.device,
    *,
    compile: bool = False,
    int8_model: str | None = None,
    calibration_dir: str | None = None,
    num_threads: int = 0,
    int8_companion: str | None = None,
) -> list[Entry]:
    """Every backend/precision configuration this machine can run, plain eager first.

    ``int8_companion``: the weights' validated int8 file (``NAME_int8.onnx``), timed on OpenVINO: what
    ``precision=auto`` runs where it is picked."""
    providers = onnxruntime_providers()
    entries = [Entry("torch", "eager", "fp32", {"fold_bn": False, "channels_last": False, "cuda_graph": False})]
    if device.type == "cpu":
        entries += [
            Entry("torch", "folded", "fp32", {"channels_last": False}),
            Entry("torch", "folded+channels_last", "fp32", {}, node_backend="torch"),
        ]
        if compile:
            entries.append(Entry("torch", "folded+channels_last+compile", "fp32", {"compile": "default"}))
        if providers:
            entries.append(Entry("onnxruntime", "CPU", "fp32", {}, node_backend="onnxruntime"))
        if providers and int8_model:
            entries.append(Entry("onnxruntime", "CPU int8", "int8", {"onnx_path": int8_model}))
        if openvino_version():
            entries.append(Entry("openvino", "CPU", "fp32", {}, node_backend="openvino"))
            if cpu_has_bf16():
                entries.append(Entry("openvino", "CPU", "bf16", {}, node_backend="openvino"))
            if int8_companion:
                entries.append(
                    Entry(
                        "openvino", "CPU int8 companion", "int8", {"onnx_path": int8_companion}, node_backend="openvino"
                    )
                )
            if calibration_dir:
                entries.append(Entry("openvino", "CPU NNCF", "int8", {"calibration_dir": calibration_dir}))
        return entries
    entries += [
        Entry("torch", "folded+channels_last", "fp32", {"cuda_graph": False}),
        Entry("torch", "folded+channels_last", "fp16", {"cuda_graph": False}),
        Entry("torch", "folded+channels_last+cuda_graph", "fp16", {}, node_backend="torch"),
    ]
    if compile:
        entries.append(
            Entry("torch", "folded+channels_last+compile+cuda_graph", "fp16", {"compile": "max-autotune-no-cudagraphs"})
        )
    if "CUDAExecutionProvider" in providers:
        entries.append(Entry("onnxruntime", "CUDA", "fp16", {}, node_backend="onnxruntime"))
    if "TensorrtExecutionProvider" in providers:
        entries.append(Entry("tensorrt", "TensorRT", "fp16", {}, node_backend="tensorrt"))
    return entries


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """Wall-clock ms and process CPU ms (all threads) of ``runs`` calls of ``fn`` after ``warmup``
    untimed ones (synchronized).  CPU time is the contention-robust figure on a shared machine."""
    for _ in range(warmup):
        fn()
    sync(device)
    times, cpu = [], []
    for _ in range(runs):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return times, cpu


def network_call(backend: Any, x: torch.Tensor) -> Callable[[], Any]:
    """The network as the engine calls it for ``upsample="nearest"``: labels out of a fused head, else logits."""
    if backend.fused_head:
        return lambda: backend.labels(x)
    return lambda: backend(x)


def bench_input(backend: Any, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A fixed random input, in the backend's own input buffer when it has one (as the engine does)."""
    w, h = size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    buf = backend.input_buffer(tuple(x.shape))
    if buf is not None:  # what the engine does: preprocess straight into the backend's buffer
        with torch.inference_mode():  # the buffer is an inference tensor, written as the engine writes it
            buf.copy_(x)
        x = buf
    return x


def time_model(
    entry: Entry,
    model: torch.nn.Module,
    meta: ModelMeta,
    device: torch.device,
    size: tuple[int, int],
    *,
    runs: int,
    warmup: int,
    num_threads: int = 0,
) -> dict[str, Any]:
    """Model-only timing of one entry at ``size`` (W, H): the network as the engine calls it.

    For a backend with a fused head (OpenVINO) that is the network plus its argmax (``output``:
    labels), a strictly larger job than the logits the other entries return; ``logits_median_ms``
    times the same network ending in logits, for reference."""
    w, h = size
    t0 = time.perf_counter()
    backend = create_backend(
        entry.backend, model, meta, device, entry.precision, size, options=entry.options, num_threads=num_threads
    )
    setup_s = time.perf_counter() - t0
    x = bench_input(backend, size, device)
    extra: dict[str, Any] = {}
    with torch.inference_mode():
        times, cpu = time_call(network_call(backend, x), device, runs, warmup)
        if backend.fused_head:  # the same network ending in logits, for reference
            extra["logits_median_ms"] = summarize(time_call(lambda: backend(x), device, runs, warmup)[0])["median_ms"]
    backend.release()
    return {
        "kind": "model",
        "backend": entry.backend,
        "variant": entry.variant,
        "precision": entry.precision,
        "device": str(device),
        "size": f"{w}x{h}",
        "output": "labels (argmax in the graph)" if backend.fused_head else "logits",
        **summarize(times),
        **extra,
        "cpu_median_ms": round(float(np.median(cpu)), 3),
        "runs": runs,
        "warmup": warmup,
        "setup_s": round(setup_s, 2),
        "node_backend": entry.node_backend,
    }


def fixed_size(entry: Entry) -> tuple[int, int] | None:
    """The input size an entry's given ``.onnx`` was exported for (``None``: any size)."""
    path = entry.options.get("onnx_path")
    if not path:
        return None
    size = read_onnx_metadata(path).onnx_input_size
    return (int(size[0]), int(size[1])) if size else None


@contextlib.contextmanager
def background_load(cores: int = 1) -> Iterator[list[int]]:
    """Keep ``cores`` cores busy with CPU hog processes (a pure-Python spin loop each) while inside.

    Yields the hogs' process ids; they are ended on exit.  Stands in for what shares a robot's CPU
    (camera driver, planner): shows whether a backend's thread pool degrades gracefully.
    """
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, cores))]
    try:
        time.sleep(0.2)  # let them reach the loop
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def time_entries(
    entries: list[Entry],
    model: torch.nn.Module,
    meta: ModelMeta,
    device: torch.device,
    sizes: list[tuple[int, int]],
    *,
    runs: int,
    warmup: int,
    num_threads: int = 0,
    report: Callable[[dict[str, Any]], None] = lambda r: None,
) -> list[dict[str, Any]]:
    """:func:`time_model` for every entry and size, with ``speedup_vs_eager`` against the eager fp32 entry."""
    results = []
    for size in sizes:
        eager = eager_cpu = None
        for entry in entries:
            fixed = fixed_size(entry)
            if fixed and fixed != size:
                continue  # an exported model runs at its own size only
            r = time_model(entry, model, meta, device, size, runs=runs, warmup=warmup, num_threads=num_threads)
            if entry.variant == "eager" and entry.precision == "fp32":
                eager, eager_cpu = r["median_ms"], r["cpu_median_ms"]
            if eager:
                r["speedup_vs_eager"] = round(eager / r["median_ms"], 2)
            if eager_cpu:
                r["cpu_speedup_vs_eager"] = round(eager_cpu / r["cpu_median_ms"], 2)
            results.append(r)
            report(r)
    return results
