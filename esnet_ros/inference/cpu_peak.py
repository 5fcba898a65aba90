"""The CPU's own limit: its identity, the peak MAC/s of a large GEMM per precision, the model's MACs.

``esnet bench`` reports every model entry's achieved MAC/s as a fraction of the peak for its precision,
measured in the same run on the same threads, so a figure reads against what this CPU can do at all.

- :func:`cpu_identity`: vendor, model name, family/model and the microarchitecture they name (the
  hypervisor often shows only "AMD EPYC"), and the flags that matter here (AMX, AVX512-BF16, VNNI).
- :func:`gemm_peaks`: the faster of a 1x1 convolution of ``(1, K, S, S)`` by ``(N, K, 1, 1)`` (a GEMM of
  ``S*S x K`` by ``K x N``, default 1024 x 1024 x 1024) and a 3x3 one (256 channels at 64x64),
  compiled by OpenVINO, the library that runs
  the model's int8 and bf16 paths, in fp32 (``INFERENCE_PRECISION_HINT=f32``), bf16 (only where the
  CPU has AMX-BF16 or AVX512-BF16: elsewhere OpenVINO would run it in fp32) and int8 (FakeQuantize on
  activations and weights: OpenVINO's low-precision int8 kernels, VNNI/AMX where present, AVX2
  ``vpmaddubsw`` otherwise); each with the kernel OpenVINO picked. Without OpenVINO only the fp32
  peak is measured, with ``torch.mm`` (MKL).
- :func:`model_macs`: multiply-accumulates of one forward pass at a size, counted from the
  convolutions' and transposed convolutions' shapes (hooks on a real forward pass).
"""

from __future__ import annotations

import pathlib
import platform
import time
from typing import Any

import numpy as np
import torch

from esnet_ros.inference.devices import cpu_isa, openvino_version, thread_count
from esnet_ros.inference.process_settings import torch_threads_during

__all__ = ["cpu_identity", "gemm_peaks", "model_macs", "MICROARCHITECTURES"]

#: (vendor, family, model range) -> microarchitecture, for the server CPUs robots and CI run on
MICROARCHITECTURES = (
    ("AuthenticAMD", 23, range(0x30, 0x40), "Zen 2 (EPYC 7002 Rome)"),
    ("AuthenticAMD", 25, range(0x00, 0x10), "Zen 3 (EPYC 7003 Milan)"),
    ("AuthenticAMD", 25, range(0x10, 0x20), "Zen 4 (EPYC 9004 Genoa)"),
    ("AuthenticAMD", 25, range(0xA0, 0xB0), "Zen 4c (EPYC 97x4 Bergamo)"),
    ("AuthenticAMD", 26, range(0x00, 0x100), "Zen 5 (EPYC 9005 Turin)"),
    ("GenuineIntel", 6, range(0x55, 0x56), "Skylake-SP / Cascade Lake"),
    ("GenuineIntel", 6, range(0x6A, 0x6B), "Ice Lake-SP"),
    ("GenuineIntel", 6, range(0x8F, 0x90), "Sapphire Rapids"),
    ("GenuineIntel", 6, range(0xCF, 0xD0), "Emerald Rapids"),
    ("GenuineIntel", 6, range(0xAD, 0xAE), "Granite Rapids"),
)
_REPORTED_FLAGS = ("amx_int8", "amx_bf16", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


def cpu_identity() -> dict[str, Any]:
    """``{"model_name", "vendor", "family", "model", "microarchitecture", "flags"}`` from /proc/cpuinfo."""
    fields: dict[str, str] = {}
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor is enough
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    vendor = fields.get("vendor_id", "")
    family = int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None
    model = int(fields["model"]) if fields.get("model", "").isdigit() else None
    arch = next(
        (name for v, f, models, name in MICROARCHITECTURES if v == vendor and f == family and model in models), None
    )
    isa = cpu_isa()
    return {
        "model_name": fields.get("model name") or platform.processor() or platform.machine(),
        "vendor": vendor or None,
        "family": family,
        "model": model,
        "microarchitecture": arch,
        "flags": {flag: bool(isa.get(flag)) for flag in _REPORTED_FLAGS},
    }


def _time(call, seconds: float) -> float:
    """The fastest of at least 5 runs of ``call`` in about ``seconds`` (after 2 warm-ups): a peak is the
    best the CPU does, and the minimum is the figure least disturbed by other processes."""
    call(), call()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < end:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(min(times))


def _openvino_gemm(
    precision: str, k: int, n: int, side: int, threads: int, seconds: float, kernel: int = 1
) -> dict[str, Any]:
    import openvino as ov
    from openvino import opset13 as ops

    def fq(node: Any, lo: float, hi: float, levels: int) -> Any:
        lo_c, hi_c = ops.constant(np.float32(lo)), ops.constant(np.float32(hi))
        return ops.fake_quantize(node, lo_c, hi_c, lo_c, hi_c, levels)

    rng = np.random.default_rng(0)
    x = ops.parameter([1, k, side, side], np.float32, name="x")
    w = ops.constant((rng.standard_normal((n, k, kernel, kernel)) * 0.05).astype(np.float32))
    xin, win = (fq(x, 0.0, 4.0, 256), fq(w, -0.2, 0.2, 255)) if precision == "int8" else (x, w)
    pad = [kernel // 2, kernel // 2]
    model = ov.Model([ops.result(ops.convolution(xin, win, [1, 1], pad, pad, [1, 1]))], [x])
    hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]
    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,
        },
    )
    request = compiled.create_infer_request()
    data = np.abs(rng.standard_normal((1, k, side, side))).astype(np.float32)
    request.set_input_tensor(ov.Tensor(data))
    best = _time(request.infer, seconds)
    kernels = sorted(
        {
            str(op.get_rt_info()["primitiveType"].astype(str))
            for op in compiled.get_runtime_model().get_ops()
            if "primitiveType" in op.get_rt_info() and str(op.get_rt_info()["layerType"].astype(str)) == "Convolution"
        }
    )
    macs = k * n * kernel * kernel * side * side
    return {
        "best_ms": round(best * 1e3, 3),
        "gmacs_per_s": round(macs / best / 1e9, 2),
        "library": f"openvino {openvino_version()}",
        "kernel": ",".join(kernels) or None,
        "shape": f"{kernel}x{kernel} conv {k}->{n} at {side}x{side}",
    }


def gemm_peaks(num_threads: int = 0, *, size: int = 1024, seconds: float = 1.5) -> dict[str, Any]:
    """The peak MAC/s of a ``size``-cubed GEMM per precision on ``num_threads`` threads (0 = every core)."""
    threads = thread_count(num_threads)
    side = int(round(size**0.5))
    out: dict[str, Any] = {"threads": threads, "gemm": f"{side * side}x{size} by {size}x{size} (1x1 convolution)"}
    isa = cpu_isa()
    if not openvino_version():
        a, b = torch.randn(size, size), torch.randn(size, size)
        with torch_threads_during(threads):
            best = _time(lambda: torch.mm(a, b), seconds)
        out["fp32"] = {
            "best_ms": round(best * 1e3, 3),
            "gmacs_per_s": round(size**3 / best / 1e9, 2),
            "library": f"torch {torch.__version__} (torch.mm)",
            "kernel": None,
        }
        out["bf16"] = out["int8"] = {"skipped": "needs OpenVINO (pip install openvino)"}
        return out
    for precision in ("fp32", "bf16", "int8"):
        if precision == "bf16" and not (isa.get("amx_bf16") or isa.get("avx512_bf16")):
            out["bf16"] = {"skipped": "the CPU has no AMX-BF16/AVX512-BF16: OpenVINO would compute in fp32"}
            continue
        # a 1x1 convolution is the plain GEMM; a 3x3 one (256 channels, 64x64) is the im2col GEMM that the
        # model's factorized convs resemble: the peak is the faster of the two
        shapes = [
            _openvino_gemm(precision, size, size, side, threads, seconds / 2),
            _openvino_gemm(precision, size // 4, size // 4, 2 * side, threads, seconds / 2, kernel=3),
        ]
        out[precision] = {**max(shapes, key=lambda r: r["gmacs_per_s"]), "shapes": shapes}
    return out


def model_macs(model: torch.nn.Module, size: tuple[int, int]) -> int:
    """Multiply-accumulates of one ``(1,3,H,W)`` forward pass of ``model`` at ``size`` ``(W, H)``."""
    total = 0

    def count(module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.ConvTranspose2d):  # every input pixel meets the whole kernel
            n_in = _inputs[0].numel() // _inputs[0].shape[1]
            total += n_in * module.in_channels * module.out_channels // module.groups * int(np.prod(module.kernel_size))
        else:
            total += output.numel() * module.in_channels // module.groups * int(np.prod(module.kernel_size))

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, size[1], size[0]))
    finally:
        for hook in hooks:
            hook.remove()
    return int(total)
