"""The engine's post-processing in torch ops, on the model's device (CUDA, or any torch device).

:func:`postprocess_on_device` turns a frame's logits into the requested outputs where the logits
are (argmax, optional bilinear upsampling of the logits, nearest upsampling of the labels, palette,
blend) and brings only those outputs back to the host, in one packed copy.  The CPU path
(:mod:`esnet_ros.inference.cpu_ops`) computes the same results with NumPy/OpenCV kernels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["postprocess_on_device", "resize_labels", "resize_image"]


def postprocess_on_device(
    logits: torch.Tensor,
    src: torch.Tensor,
    palette: torch.Tensor,
    *,
    wanted: tuple[str, ...],
    resolution: str,
    upsample: str,
    alpha: float,
    color_order: str,
) -> dict[str, np.ndarray]:
    """``(1,C,h,w)`` logits and the ``(H,W,3)`` uint8 source image (both on the device) -> host arrays.

    ``wanted`` among labels, confidence, color, overlay; ``resolution`` ``input`` or ``network``;
    ``upsample`` ``nearest`` (argmax, then labels upsampled) or ``bilinear`` (logits upsampled, then
    the argmax); the overlay is in ``color_order``, blended with ``alpha``.
    """
    logits = logits[0]
    out_hw = tuple(src.shape[:2]) if resolution == "input" else tuple(logits.shape[1:])
    if upsample == "bilinear" and tuple(logits.shape[1:]) != out_hw:
        logits = F.interpolate(logits[None].float(), size=out_hw, mode="bilinear", align_corners=False)[0]
    device_out: dict[str, torch.Tensor] = {}
    if "confidence" in wanted:
        # max softmax = 1 / sum(exp(l - max l)), computed in fp32 for stability
        lf = logits.float()
        conf = 1.0 / torch.exp(lf - lf.amax(0, keepdim=True)).sum(0)
        device_out["confidence"] = resize_labels(conf.mul(255.0).round_().to(torch.uint8), out_hw)
    labels = resize_labels(logits.argmax(0).to(torch.uint8), out_hw)
    if "labels" in wanted:
        device_out["labels"] = labels
    if "color" in wanted or "overlay" in wanted:
        color = palette[labels.long()]
        if "color" in wanted:
            device_out["color"] = color
        if "overlay" in wanted:
            base = src if resolution == "input" else resize_image(src, out_hw)
            device_out["overlay"] = _blend(base, color, alpha, rgb_to_input=color_order == "bgr")
    return _to_host(device_out)


def resize_labels(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(h,w) integer map -> (H,W) by nearest neighbour (labels must never be interpolated)."""
    if tuple(t.shape) == tuple(hw):
        return t
    return F.interpolate(t[None, None].float(), size=hw, mode="nearest")[0, 0].to(t.dtype)


def resize_image(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(H,W,3) uint8 -> (h,w,3) uint8, bilinear."""
    x = F.interpolate(img.permute(2, 0, 1)[None].float(), size=hw, mode="bilinear", align_corners=False)
    return x[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)


def _blend(base: torch.Tensor, color_rgb: torch.Tensor, alpha: float, rgb_to_input: bool) -> torch.Tensor:
    """(1-alpha)*base + alpha*color, uint8, with the color mask put in the base's channel order."""
    color = color_rgb.flip(-1) if rgb_to_input else color_rgb
    out = torch.lerp(base.float(), color.float(), alpha)
    return out.round_().to(torch.uint8)


def _to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Bring device tensors to numpy; on CUDA with one packed copy of only the requested outputs."""
    if not tensors or next(iter(tensors.values())).device.type != "cuda":
        return {k: v.contiguous().cpu().numpy() for k, v in tensors.items()}
    flat = torch.cat([v.reshape(-1) for v in tensors.values()])
    host = flat.cpu().numpy()
    out, offset = {}, 0
    for key, v in tensors.items():
        n = v.numel()
        out[key] = host[offset : offset + n].reshape(tuple(v.shape))
        offset += n
    return out
