"""What every inference backend shares: the :class:`Backend` interface, the on-disk cache folder and
the digests that key cached exports and compiled models.

Kept apart from :mod:`esnet_ros.inference.backends` so that the OpenVINO backend
(:mod:`esnet_ros.inference.openvino_backend`) can build on it while ``backends.create_backend``
dispatches to it, without an import cycle.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

import numpy as np
import torch

__all__ = ["Backend", "CACHE_ENV", "cache_dir", "weights_digest", "file_digest"]

CACHE_ENV = "ESNET_ROS_CACHE"


class Backend:
    """Interface: ``backend(x) -> logits``; ``name``, ``device``, ``precision`` describe it,
    ``variant`` says what was applied (e.g. ``folded+channels_last+cuda_graph``).

    A backend with ``fused_head`` also offers :meth:`labels`: the argmax (and confidence) computed
    inside its own graph, so the logits never leave it (the engine uses it for ``upsample="nearest"``).
    """

    name = "base"
    fused_head = False

    def __init__(self, device: torch.device, precision: str) -> None:
        self.device = device
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.variant = ""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def labels(self, x: torch.Tensor, confidence: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``(labels, confidence or None)`` as ``(H,W)`` uint8 maps at network resolution (``fused_head`` only)."""
        raise NotImplementedError(f"backend {self.name} has no fused head; call it for logits")

    def release(self) -> None:
        """Free device memory held by the backend."""

    def input_buffer(self, shape: tuple[int, ...]) -> torch.Tensor | None:
        """A reusable tensor the caller may write the next input into (saving a copy), or ``None``."""
        return None

    def describe(self) -> str:
        return f"{self.name}[{self.variant}]" if self.variant else self.name


def cache_dir(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Where exported ONNX models, TensorRT engines and OpenVINO compiled models are kept: ``path``,
    ``$ESNET_ROS_CACHE``, or ``~/.cache/esnet_ros``."""
    base = path or os.environ.get(CACHE_ENV) or pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "esnet_ros"
    out = pathlib.Path(base).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return out


def weights_digest(model: torch.nn.Module) -> str:
    """A short SHA-256 of ``model``'s parameters and buffers (names, shapes, values)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        t = value.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """SHA-256 of a file's bytes (hex, first ``length`` characters)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]
