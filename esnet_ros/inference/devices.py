"""Devices, precisions and what the CPU can do.

- :func:`resolve_device`: ``auto``/``cpu``/``cuda``/``cuda:N`` -> a checked ``torch.device``.
- :func:`resolve_precision`: ``auto``/``fp32``/``fp16``/``bf16``/``int8`` checked against the device
  (and, for ``bf16``, against the CPU's instruction set).  ``auto`` depends on the backend: bf16 for
  OpenVINO on a CPU with AMX or AVX512-BF16, fp32 for the other CPU backends, fp16 on CUDA.
- :func:`cpu_isa`: the CPU's matrix/vector extensions that decide the fast paths (AMX, AVX512-BF16,
  VNNI), read from ``/proc/cpuinfo`` (else from torch's reported CPU capability).
- :func:`thread_count`: the ``num_threads`` option (0 = every core this process may use).
- :func:`resolve_backend` / :func:`resolve_choice`: the backend name checked against what is installed
  (ONNX Runtime's providers, OpenVINO), ``auto`` resolved with the reason logged.
"""

from __future__ import annotations

import functools
import logging
import os
import pathlib

import torch

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "DEVICE_HELP",
    "ISA_FLAGS",
    "resolve_device",
    "resolve_precision",
    "cpu_isa",
    "cpu_has_bf16",
    "thread_count",
    "onnxruntime_providers",
    "openvino_version",
    "openvino_devices",
    "resolve_backend",
    "resolve_choice",
]

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt", "auto")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
DEVICE_HELP = "one of: auto, cpu, cuda, cuda:N"
#: /proc/cpuinfo flags reported by the benchmark and used by precision=auto
ISA_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when available (else the CPU, logged once); explicit CUDA must exist."""
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        log.info("device=auto: no CUDA device available, running on the CPU")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device={device!r} is not valid; {DEVICE_HELP}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; {DEVICE_HELP}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but this machine has no usable CUDA (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'none'}); use device=cpu or device=auto, "
                f"or install a CUDA build of PyTorch"
            )
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        dev = torch.device("cuda", index)
    return dev


@functools.lru_cache(maxsize=1)
def cpu_isa() -> dict[str, bool]:
    """``{flag: present}`` for :data:`ISA_FLAGS`, from ``/proc/cpuinfo`` (Linux).

    Elsewhere torch's CPU capability stands in: ``AVX512`` sets avx512f and avx2, ``AVX2`` avx2; the
    bf16/AMX/VNNI flags then read as absent (the safe side: fp32 is picked).
    """
    flags: set[str] = set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if not flags:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
        flags = {"avx512f", "avx2"} if "AVX512" in capability else ({"avx2"} if "AVX2" in capability else set())
    return {flag: flag in flags for flag in ISA_FLAGS}


def cpu_has_bf16() -> bool:
    """True when the CPU computes in bfloat16 natively (AMX-BF16 or AVX512-BF16)."""
    isa = cpu_isa()
    return isa["amx_bf16"] or isa["avx512_bf16"]


def resolve_precision(precision: str, device: torch.device, backend: str | None = None) -> str:
    """Check ``precision`` for ``device`` (and ``backend`` when known); resolve ``auto``.

    ``auto``: fp16 on CUDA; on the CPU bf16 for ``backend="openvino"`` when the CPU has AMX or
    AVX512-BF16, else fp32 (the :class:`~esnet_ros.inference.segmenter.Segmenter` first offers a validated
    int8 companion, :mod:`esnet_ros.inference.auto_precision`).  ``bf16`` needs such a CPU; ``fp16`` needs
    CUDA; ``int8`` (an int8-quantized model, see :mod:`esnet_ros.inference.quantize`) runs on the CPU only.
    """
    p = str(precision).strip().lower()
    if p not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of: {', '.join(PRECISIONS)}")
    if p == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if backend == "openvino" and cpu_has_bf16() else "fp32"
    if p == "fp16" and device.type != "cuda":
        raise ValueError("precision=fp16 needs a CUDA device; use precision=fp32 (or auto) on the CPU")
    if p == "int8" and device.type != "cpu":
        raise ValueError("precision=int8 runs on the CPU only; use precision=fp16 on CUDA, or device=cpu")
    if p == "bf16":
        if device.type != "cpu":
            raise ValueError("precision=bf16 runs on the CPU (backend=openvino); use precision=fp16 on CUDA")
        if not cpu_has_bf16():
            raise ValueError(
                "precision=bf16 needs a CPU with AMX-BF16 or AVX512-BF16 (this one has neither, see "
                "/proc/cpuinfo flags); use precision=fp32, or precision=int8 with an int8 model"
            )
    return p


def thread_count(num_threads: int | None) -> int:
    """The ``num_threads`` option: ``0``/``None`` = every core this process may run on."""
    if num_threads is None or int(num_threads) == 0:
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    n = int(num_threads)
    if n < 0:
        raise ValueError(f"num_threads={num_threads} must be >= 0 (0 = all cores)")
    return n


def openvino_version() -> str | None:
    """The installed OpenVINO's version, or ``None`` when the ``openvino`` package is missing."""
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__).split("-")[0]


def openvino_devices() -> tuple[str, ...]:
    """OpenVINO's available devices (``CPU``, ``GPU``, ``GPU.1``, ``NPU``...; empty without OpenVINO)."""
    try:
        import openvino
    except ImportError:
        return ()
    return tuple(openvino.Core().available_devices)


def onnxruntime_providers() -> tuple[str, ...]:
    """ONNX Runtime's available execution providers (empty when onnxruntime is missing)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())


def _auto_backend(device: torch.device, precision: str) -> tuple[str, str]:
    """``backend=auto``: the backend and the reason for it (logged by :func:`resolve_backend`)."""
    if device.type != "cpu":
        return "torch", "CUDA device: PyTorch with fp16 and CUDA graphs"
    if precision in ("auto", "bf16") and cpu_has_bf16() and openvino_version():
        return "openvino", (
            f"the CPU computes in bf16 (AMX or AVX512-BF16) and OpenVINO {openvino_version()} is installed"
        )
    if precision == "bf16":
        return "openvino", "precision=bf16 runs on OpenVINO only"
    if precision == "int8":
        return "onnxruntime", "an int8 .onnx (esnet export --int8) runs on ONNX Runtime"
    if onnxruntime_providers():
        if precision == "fp32":
            return "onnxruntime", "precision=fp32: ONNX Runtime is the fastest fp32 CPU path"
        return "onnxruntime", (
            "no bf16 here (it needs OpenVINO and a CPU with AMX or AVX512-BF16); "
            "ONNX Runtime is the fastest fp32 CPU path"
        )
    return "torch", "ONNX Runtime is not installed (pip install onnxruntime for a faster CPU path)"


def resolve_backend(name: str, device: torch.device, precision: str = "fp32") -> str:
    """Check ``name`` against :data:`BACKENDS` and this machine; resolve ``auto`` (logged with its reason)."""
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise ValueError(f"backend={name!r} is not available; use one of: {', '.join(BACKENDS)}")
    precision = str(precision).strip().lower()
    if key == "auto":
        key, reason = _auto_backend(device, precision)
        log.info("backend=auto -> %s: %s", key, reason)
    _check_backend(key, device)
    if precision == "int8" and key not in ("onnxruntime", "openvino"):
        raise ValueError(
            "precision=int8 runs on backend=onnxruntime (an int8 .onnx from esnet export --int8) "
            "or backend=openvino (NNCF-quantized, calibrated on images)"
        )
    if precision == "bf16" and key != "openvino":
        raise ValueError(
            f"precision=bf16 runs on backend=openvino only (got backend={key}); "
            f"use backend=openvino (pip install openvino) or precision=fp32"
        )
    return key


def _check_backend(key: str, device: torch.device) -> None:
    """Refuse a backend this machine cannot run, naming the fix."""
    if key == "openvino":
        if not openvino_version():
            raise ValueError(
                "backend=openvino needs OpenVINO: pip install openvino (and nncf for precision=int8); "
                "or use backend=onnxruntime or backend=torch"
            )
        if device.type != "cpu":
            raise ValueError(
                "backend=openvino runs with device=cpu (pre- and post-processing on the CPU); OpenVINO's own "
                "GPU (Intel graphics) is chosen with the backend option ov_device=GPU"
            )
    if key in ("onnxruntime", "tensorrt") and not onnxruntime_providers():
        raise ValueError(
            f"backend={key} needs ONNX Runtime: pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA, "
            f"TensorRT); or use backend=torch"
        )
    if key == "tensorrt":
        if device.type != "cuda":
            raise ValueError("backend=tensorrt needs a CUDA device; use device=cuda, or backend=onnxruntime on the CPU")
        if "TensorrtExecutionProvider" not in onnxruntime_providers():
            raise ValueError(
                "backend=tensorrt needs ONNX Runtime's TensorRT execution provider, which this install lacks "
                f"(available: {', '.join(onnxruntime_providers())}); install onnxruntime-gpu and TensorRT "
                "(pip install onnxruntime-gpu tensorrt, libnvinfer on LD_LIBRARY_PATH), "
                "or use backend=onnxruntime (CUDA EP) or backend=torch"
            )
    if key == "onnxruntime" and device.type == "cuda" and "CUDAExecutionProvider" not in onnxruntime_providers():
        raise ValueError(
            "backend=onnxruntime on CUDA needs onnxruntime-gpu (this install has only "
            f"{', '.join(onnxruntime_providers())}); pip uninstall onnxruntime && pip install onnxruntime-gpu, "
            "or use backend=torch, or device=cpu"
        )


def resolve_choice(name: str, precision: str, device: torch.device) -> tuple[str, str]:
    """``(backend, precision)`` for the requested pair, ``auto`` resolved in either (logged with the reason)."""
    requested = str(precision).strip().lower()
    key = resolve_backend(name, device, requested)
    resolved = resolve_precision(requested, device, key)
    if requested == "auto" and device.type == "cpu":
        why = (
            "the CPU computes in bf16 (AMX or AVX512-BF16)"
            if resolved == "bf16"
            else "bf16 needs backend=openvino and a CPU with AMX or AVX512-BF16"
        )
        log.info("precision=auto -> %s on backend %s: %s", resolved, key, why)
    return key, resolved
