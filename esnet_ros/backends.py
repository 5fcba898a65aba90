"""Inference backends: run the network on a preprocessed batch.

A backend maps a ``(1,3,h,w)`` float tensor (already normalized, on the engine's device) to
``(1,C,h,w)`` logits on the same device.  Pre- and post-processing stay in the engine
(:mod:`esnet_ros.segmenter`), so every backend shares them.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch

__all__ = ["BACKENDS", "Backend", "TorchBackend", "create_backend", "resolve_device", "resolve_precision"]

log = logging.getLogger(__name__)

BACKENDS = ("torch",)
DEVICE_HELP = "one of: auto, cpu, cuda, cuda:N"


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
                f"CUDA build: {torch.version.cuda or 'none'}); use device:=cpu or device:=auto, "
                f"or install a CUDA build of PyTorch"
            )
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        dev = torch.device("cuda", index)
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is fp16 on CUDA and fp32 on the CPU; fp16 on the CPU is refused."""
    p = str(precision).strip().lower()
    if p == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if p not in ("fp32", "fp16"):
        raise ValueError(f"precision={precision!r} must be one of: auto, fp32, fp16")
    if p == "fp16" and device.type != "cuda":
        raise ValueError("precision=fp16 needs a CUDA device; use precision:=fp32 (or auto) on the CPU")
    return p


class Backend:
    """Interface: ``backend(x) -> logits``; ``name``, ``device``, ``precision`` describe it."""

    name = "base"

    def __init__(self, device: torch.device, precision: str) -> None:
        self.device = device
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def release(self) -> None:
        """Free device memory held by the backend."""


class TorchBackend(Backend):
    """Eager PyTorch in inference mode (fp16 weights on CUDA when asked)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str) -> None:
        super().__init__(device, precision)
        self.model = model.eval().to(device=device, dtype=self.dtype)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype))

    def release(self) -> None:
        self.model = self.model.cpu()


def create_backend(
    name: str,
    model: torch.nn.Module,
    meta: Mapping[str, Any],
    device: torch.device,
    precision: str,
    input_size: tuple[int, int],
) -> Backend:
    """Build the backend called ``name`` for ``model`` at a fixed ``input_size`` (W, H)."""
    key = str(name).strip().lower()
    if key == "torch":
        return TorchBackend(model, device, precision)
    raise ValueError(f"backend={name!r} is not available; use one of: {', '.join(BACKENDS)}")
