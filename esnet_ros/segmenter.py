"""The inference engine: one uint8 image in, the outputs you ask for out.

All pre- and post-processing is written in torch ops and runs on the engine's device, so the
CUDA path (resize, normalize, argmax, colorize and blend on the GPU, one copy back) is the very
code the CPU tests exercise.

Example::

    seg = Segmenter("weights.safetensors", device="auto", input_size=(1024, 512))
    out = seg(image_bgr, color_order="bgr", outputs=("labels", "overlay"))
    out.labels      # (H,W) uint8 class ids at input resolution
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from esnet_ros.backends import create_backend, resolve_device, resolve_precision
from esnet_ros.checkpoint import demo_weights_path, labels_from_meta, load_checkpoint
from esnet_ros.labels import LabelSet
from esnet_ros.model import check_input_size

__all__ = ["Segmenter", "SegmentationResult", "OUTPUTS", "RESOLUTIONS", "validate_image"]

log = logging.getLogger(__name__)

OUTPUTS = ("labels", "confidence", "color", "overlay")
RESOLUTIONS = ("input", "network")
COLOR_ORDERS = ("rgb", "bgr")


@dataclasses.dataclass
class SegmentationResult:
    """What one call produced; outputs that were not asked for are ``None``.

    ``labels`` (H,W) uint8 class ids; ``confidence`` (H,W) uint8 max softmax x255;
    ``color`` (H,W,3) uint8 RGB palette image; ``overlay`` (H,W,3) uint8 in the input's order.
    ``timings_ms`` holds ``preprocess``, ``inference`` and ``postprocess``.
    """

    labels: np.ndarray | None = None
    confidence: np.ndarray | None = None
    color: np.ndarray | None = None
    overlay: np.ndarray | None = None
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def validate_image(image: Any, what: str = "image") -> np.ndarray:
    """Check an ``(H,W,3) uint8`` array, raising ``TypeError``/``ValueError`` that name the fix."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray of shape (H,W,3) and dtype uint8, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{what} has dtype {image.dtype}; convert it to uint8 (0..255), e.g. image.astype(np.uint8)")
    if image.ndim != 3 or image.shape[2] != 3:
        hint = "use cv2.cvtColor to make 3 channels" if image.ndim in (2, 3) else "pass one (H,W,3) image"
        raise ValueError(f"{what} has shape {image.shape}; expected (H,W,3) with 3 color channels: {hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {image.shape}); pass an image with at least 1x1 pixels")
    return image


def _check_choice(name: str, value: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    v = str(value).strip().lower()
    if v not in allowed:
        raise ValueError(f"{name}={value!r} must be one of: {', '.join(allowed)}")
    return v


class Segmenter:
    """ESNet inference on any size of uint8 image, on the CPU or CUDA.

    Args:
        weights: a checkpoint path, a ``(model, metadata)`` pair, or ``None`` for the bundled
            demo model (trained on synthetic scenes: not for real cameras).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (fp16 on CUDA, fp32 on CPU), ``fp32`` or ``fp16`` (CUDA only).
        backend: see :data:`esnet_ros.backends.BACKENDS`.
        input_size: network input ``(W, H)``, both multiples of 8; ``None`` takes the size the
            checkpoint was trained at (1024x512 for the authors' weights).
        labels: class list overriding the checkpoint's (needed for metadata-less custom weights).
    """

    def __init__(
        self,
        weights: str | pathlib.Path | tuple[torch.nn.Module, Mapping[str, Any]] | None = None,
        *,
        device: str = "auto",
        precision: str = "auto",
        backend: str = "torch",
        input_size: tuple[int, int] | None = None,
        labels: LabelSet | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        if isinstance(weights, tuple):
            model, meta = weights
            meta = dict(meta)
        else:
            path = pathlib.Path(weights) if weights not in (None, "") else demo_weights_path()
            model, meta = load_checkpoint(path, "cpu", labels=labels)
        if labels is not None:
            if labels.num_classes != model.num_classes:
                raise ValueError(
                    f"the labels list {labels.num_classes} classes but the model predicts {model.num_classes}; "
                    f"use a labels file with {model.num_classes} classes"
                )
            meta.update(labels.to_meta())
        self.meta = meta
        self.labels = labels_from_meta(meta)
        size = tuple(input_size) if input_size is not None else tuple(meta.get("input_size", (1024, 512)))
        check_input_size(int(size[0]), int(size[1]), what="network input")
        self.input_size = (int(size[0]), int(size[1]))
        self.backend = create_backend(backend, model, meta, self.device, self.precision, self.input_size)
        norm = meta["normalization"]
        scale = float(norm["scale"])
        mean = torch.tensor(norm["mean"], dtype=torch.float32)
        std = torch.tensor(norm["std"], dtype=torch.float32)
        # x_norm = pixel * gain + bias, per channel in the model's color order
        self._gain = (scale / std).view(1, 3, 1, 1).to(self.device)
        self._bias = (-mean / std).view(1, 3, 1, 1).to(self.device)
        self.model_color_order = norm["color_order"]
        self._palette = torch.from_numpy(self.labels.palette()).to(self.device)
        self._pinned: torch.Tensor | None = None
        log.info(
            "Segmenter: %s backend on %s (%s), network input %dx%d, %d classes (%s)",
            self.backend.name, self.device, self.precision, *self.input_size, self.labels.num_classes, self.labels.name,
        )

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    def release(self) -> None:
        """Free device memory (the node calls this on deactivate)."""
        self.backend.release()
        self._pinned = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- stages -------------------------------------------------------------------------------

    def _upload(self, image: np.ndarray) -> torch.Tensor:
        """(H,W,3) uint8 numpy -> (H,W,3) uint8 tensor on the device (via a pinned buffer on CUDA)."""
        host = torch.from_numpy(image)
        if self.device.type != "cuda":
            return host
        if self._pinned is None or self._pinned.shape != host.shape:
            self._pinned = torch.empty(host.shape, dtype=torch.uint8, pin_memory=True)
        self._pinned.copy_(host)
        return self._pinned.to(self.device, non_blocking=True)

    def preprocess(self, image: torch.Tensor, color_order: str) -> torch.Tensor:
        """(H,W,3) uint8 -> (1,3,h,w) float normalized, in the model's color order."""
        x = image.permute(2, 0, 1).unsqueeze(0)
        if color_order != self.model_color_order:
            x = x.flip(1)
        w, h = self.input_size
        x = x.float()
        if x.shape[2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return x * self._gain + self._bias

    # -- the call -----------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(
        self,
        image: np.ndarray,
        color_order: str = "rgb",
        outputs: Iterable[str] = ("labels",),
        resolution: str = "input",
        alpha: float = 0.5,
    ) -> SegmentationResult:
        """Segment one ``(H,W,3) uint8`` image; compute only ``outputs`` (see :data:`OUTPUTS`)."""
        image = validate_image(image)
        color_order = _check_choice("color_order", color_order, COLOR_ORDERS)
        resolution = _check_choice("resolution", resolution, RESOLUTIONS)
        wanted = tuple(dict.fromkeys(_check_choice("outputs", o, OUTPUTS) for o in outputs))
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha={alpha} must be within 0..1 (0: input only, 1: mask only)")
        cuda = self.device.type == "cuda"
        t0 = time.perf_counter()
        src = self._upload(image)
        x = self.preprocess(src, color_order)
        if cuda:
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        logits = self.backend(x)
        if cuda:
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        result = self._postprocess(logits, src, wanted, resolution, float(alpha), color_order)
        t3 = time.perf_counter()
        result.timings_ms = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return result

    def _postprocess(
        self,
        logits: torch.Tensor,
        src: torch.Tensor,
        wanted: tuple[str, ...],
        resolution: str,
        alpha: float,
        color_order: str,
    ) -> SegmentationResult:
        logits = logits[0]
        out_hw = tuple(src.shape[:2]) if resolution == "input" else tuple(logits.shape[1:])
        labels = logits.argmax(0).to(torch.uint8)
        device_out: dict[str, torch.Tensor] = {}
        if "confidence" in wanted:
            # max softmax = 1 / sum(exp(l - max l)), computed in fp32 for stability
            lf = logits.float()
            conf = 1.0 / torch.exp(lf - lf.amax(0, keepdim=True)).sum(0)
            device_out["confidence"] = _resize_nearest(conf.mul(255.0).round_().to(torch.uint8), out_hw)
        labels = _resize_nearest(labels, out_hw)
        if "labels" in wanted:
            device_out["labels"] = labels
        if "color" in wanted or "overlay" in wanted:
            color = self._palette[labels.long()]
            if "color" in wanted:
                device_out["color"] = color
            if "overlay" in wanted:
                base = src if resolution == "input" else _resize_image(src, out_hw)
                device_out["overlay"] = _blend(base, color, alpha, rgb_to_input=color_order == "bgr")
        return SegmentationResult(**_to_host(device_out, self.device))


def _resize_nearest(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(h,w) integer map -> (H,W) by nearest neighbour (labels must never be interpolated)."""
    if tuple(t.shape) == tuple(hw):
        return t
    return F.interpolate(t[None, None].float(), size=hw, mode="nearest")[0, 0].to(t.dtype)


def _resize_image(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(H,W,3) uint8 -> (h,w,3) uint8, bilinear."""
    x = F.interpolate(img.permute(2, 0, 1)[None].float(), size=hw, mode="bilinear", align_corners=False)
    return x[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)


def _blend(base: torch.Tensor, color_rgb: torch.Tensor, alpha: float, rgb_to_input: bool) -> torch.Tensor:
    """(1-alpha)*base + alpha*color, uint8, with the color mask put in the base's channel order."""
    color = color_rgb.flip(-1) if rgb_to_input else color_rgb
    out = torch.lerp(base.float(), color.float(), alpha)
    return out.round_().to(torch.uint8)


def _to_host(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, np.ndarray]:
    """Bring device tensors to numpy; on CUDA with one packed copy of only the requested outputs."""
    if device.type != "cuda":
        return {k: v.contiguous().numpy() for k, v in tensors.items()}
    flat = torch.cat([v.reshape(-1) for v in tensors.values()])
    host = flat.cpu().numpy()
    out, offset = {}, 0
    for key, v in tensors.items():
        n = v.numel()
        out[key] = host[offset : offset + n].reshape(tuple(v.shape))
        offset += n
    return out
