"""``precision=auto`` on the CPU: int8 when a validated int8 model exists, then bf16, then fp32.

A bundled (or user) model ``NAME.safetensors`` may carry an int8 companion beside it,
``NAME_int8.onnx``: an NNCF-quantized QDQ copy written by ``esnet bundle --int8-calibration-dir``,
calibrated on the model's own training images, whose metadata records what int8 costs
(``int8_validation``: mIoU of the fp32 and the int8 model on the validation split, through the
engine, and the loss in points).  :func:`choose_cpu_precision` picks, in this order:

1. **int8** on OpenVINO when the companion's recorded loss is at most :data:`INT8_MAX_LOSS` mIoU
   points and the CPU has int8 dot products (:data:`INT8_INSTRUCTIONS`: AMX-INT8, AVX512-VNNI,
   AVX-VNNI, or AVX2's ``vpmaddubsw``: on a 2-core AMD EPYC (Zen 3) with AVX2 only, the CamVid
   model at 480x360 runs 57 ms in int8 against 102 ms in fp32 on OpenVINO, so int8 pays there too);
2. **bf16** on OpenVINO when the CPU has AMX-BF16 or AVX512-BF16;
3. **fp32** (ONNX Runtime, the fastest fp32 CPU path) elsewhere.

The choice and its reason are logged and published on ``/diagnostics`` (``precision_reason``).
An explicit ``precision`` or a ``backend`` other than ``auto``/``openvino`` is never overridden.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping

from esnet_ros.core.metadata import ModelMeta

__all__ = [
    "INT8_MAX_LOSS",
    "INT8_INSTRUCTIONS",
    "AutoChoice",
    "int8_companion",
    "int8_loss",
    "int8_instructions",
    "choose_cpu_precision",
]

#: the most mIoU (points, validation split) int8 may cost for ``precision=auto`` to pick it
INT8_MAX_LOSS = 0.5
#: /proc/cpuinfo flag -> the int8 dot-product instructions it names, best first
INT8_INSTRUCTIONS = (
    ("amx_int8", "AMX-INT8"),
    ("avx512_vnni", "AVX512-VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx2", "AVX2 (vpmaddubsw)"),
)


@dataclasses.dataclass(frozen=True)
class AutoChoice:
    """What ``precision=auto`` runs: ``precision``, ``backend`` (``auto`` = the usual rule), the int8
    ``weights`` to load instead of the fp32 ones (or ``None``) and the ``reason``, for the log."""

    precision: str
    backend: str
    reason: str
    weights: pathlib.Path | None = None


def int8_companion(weights: str | pathlib.Path | None) -> pathlib.Path | None:
    """``NAME_int8.onnx`` beside the checkpoint ``NAME.safetensors`` (or ``.pt``), when it exists."""
    if not weights:
        return None
    path = pathlib.Path(weights)
    if path.suffix == ".onnx":
        return None
    companion = path.with_name(f"{path.stem}_int8.onnx")
    return companion if companion.is_file() else None


def int8_loss(meta: ModelMeta | None) -> float | None:
    """The mIoU points int8 costs, as the int8 model's metadata records it (``None``: not validated)."""
    record: Mapping | None = meta.int8_validation if meta is not None else None
    if not record or record.get("miou_loss_points") is None:
        return None
    return float(record["miou_loss_points"])


def int8_instructions(isa: Mapping[str, bool]) -> str | None:
    """The best int8 dot-product instructions the CPU has (``None``: none of :data:`INT8_INSTRUCTIONS`)."""
    return next((name for flag, name in INT8_INSTRUCTIONS if isa.get(flag)), None)


def _bf16(isa: Mapping[str, bool]) -> str | None:
    return "AMX-BF16" if isa.get("amx_bf16") else ("AVX512-BF16" if isa.get("avx512_bf16") else None)


def choose_cpu_precision(
    isa: Mapping[str, bool],
    *,
    openvino: bool,
    backend: str = "auto",
    int8_meta: ModelMeta | None = None,
    int8_path: pathlib.Path | None = None,
) -> AutoChoice:
    """``precision=auto`` on the CPU for the CPU flags ``isa`` (see the module docstring).

    ``openvino``: OpenVINO is installed; ``backend``: the one asked for; ``int8_meta``/``int8_path``:
    the int8 companion's metadata and file, when there is one.
    """
    why_not = _why_not_int8(isa, openvino, backend, int8_meta, int8_path)
    if why_not is None:
        record = int8_meta.int8_validation
        reason = (
            f"int8: {int8_path.name} costs {int8_loss(int8_meta):.2f} mIoU points on "
            f"{record.get('dataset', 'its')} {record.get('split', 'validation')} split "
            f"(<= {INT8_MAX_LOSS}) and the CPU has {int8_instructions(isa)}"
        )
        return AutoChoice("int8", "openvino", reason, int8_path)
    bf16 = _bf16(isa)
    if bf16 and openvino and backend in ("auto", "openvino"):
        return AutoChoice("bf16", "openvino", f"bf16: the CPU has {bf16} ({why_not})")
    if bf16 and backend in ("auto", "openvino"):
        return AutoChoice("fp32", backend, f"fp32: the CPU has {bf16} but OpenVINO is not installed ({why_not})")
    return AutoChoice("fp32", backend, f"fp32: no bf16 in this CPU (AMX-BF16/AVX512-BF16) and {why_not}")


def _why_not_int8(
    isa: Mapping[str, bool], openvino: bool, backend: str, meta: ModelMeta | None, path: pathlib.Path | None
) -> str | None:
    """Why int8 is not picked, or ``None`` when it is."""
    if backend not in ("auto", "openvino"):
        return f"int8 is validated on OpenVINO, not backend={backend}"
    if path is None or meta is None:
        return "the model has no int8 companion (NAME_int8.onnx from esnet bundle --int8-calibration-dir)"
    loss = int8_loss(meta)
    if loss is None:
        return f"{path.name} records no validated mIoU loss (int8_validation)"
    if loss > INT8_MAX_LOSS:
        return f"{path.name} costs {loss:.2f} mIoU points (> {INT8_MAX_LOSS})"
    if not openvino:
        return "int8 runs on OpenVINO, which is not installed (pip install openvino)"
    if int8_instructions(isa) is None:
        return "the CPU has no int8 dot products (AMX-INT8, AVX512-VNNI, AVX-VNNI or AVX2)"
    return None
