"""CPU kernels of the engine: NumPy/OpenCV routes to the same results as the torch ops they replace.

:func:`preprocess_into` (uint8 image -> normalized network input, as the engine and int8
calibration need it), :func:`argmax_channels` (a running-max argmax over channel planes, split across threads),
:func:`nearest_index`/:func:`resize_nearest_np` (nearest upsampling through index maps built from
torch's own ``nearest`` rule), :func:`resize_bilinear_planes` (OpenCV's bilinear resize, equal to
``F.interpolate(..., "bilinear", align_corners=False)``) and :class:`CpuBuffers` (arrays reused
from frame to frame).  Each is tested against the torch op it replaces: :func:`resize_nearest`,
:func:`resize_image` and :func:`blend` are those torch ops (the CUDA path runs them on the GPU).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from esnet_ros.core.metadata import Normalization

__all__ = [
    "CpuBuffers",
    "preprocess_into",
    "network_input",
    "argmax_channels",
    "nearest_index",
    "resize_nearest_np",
    "resize_bilinear_planes",
    "resize_nearest",
    "resize_image",
    "blend",
]


class CpuBuffers:
    """Arrays reused from frame to frame (one set per shape), and a small thread pool."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._tensors: dict[str, torch.Tensor] = {}
        self.index_maps: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.pool: ThreadPoolExecutor | None = None

    def array(self, key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        a = self._arrays.get(key)
        if a is None or a.shape != tuple(shape) or a.dtype != dtype:
            a = self._arrays[key] = np.empty(shape, dtype)
        return a

    def tensor(self, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        t = self._tensors.get(key)
        if t is None or tuple(t.shape) != tuple(shape) or t.dtype != dtype:
            t = self._tensors[key] = torch.empty(shape, dtype=dtype)
        return t

    @staticmethod
    def thread_count() -> int:
        return min(torch.get_num_threads(), os.cpu_count() or 1, 8)

    def threads(self) -> ThreadPoolExecutor | None:
        n = self.thread_count()
        if n < 2:
            return None
        if self.pool is None:
            self.pool = ThreadPoolExecutor(n, thread_name_prefix="esnet_post")
        return self.pool


def argmax_channels(
    logits: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray | None = None,
    buffers: CpuBuffers | None = None,
) -> None:
    """``labels[...] = logits.argmax(0)`` (first maximum wins, as in torch), for ``(C,H,W)`` float32.

    Optionally ``confidence[...] = round(255 * max softmax)``.  A running maximum over the C
    planes, in row bands spread over a few threads (NumPy releases the GIL): 25x faster on the
    CPU than ``torch.argmax(dim=0)``.  At most 256 classes (labels are uint8).
    """
    c, h, w = logits.shape
    buffers = buffers or CpuBuffers()
    best = buffers.array("argmax_best", (h, w), np.float32)
    mask = buffers.array("argmax_mask", (h, w), np.bool_)
    step = buffers.array("argmax_step", (h, w), np.uint8)
    acc = tmp = None
    if confidence is not None:
        acc = buffers.array("argmax_acc", (h, w), np.float32)
        tmp = buffers.array("argmax_tmp", (h, w), np.float32)
    pool = buffers.threads() if h * w >= 1 << 16 else None
    workers = buffers.thread_count() if pool is not None else 1
    # Bands of up to ~128k pixels, at least one per worker: NumPy's per-call overhead (4 calls per
    # plane and band) outweighs cache misses below that (1024x512x19: 16k-pixel bands 14.5 ms,
    # 128k 4.6 ms on 2 cores).
    band = max(1, min((128 * 1024) // max(w, 1), -(-h // workers)))

    def work(r0: int) -> None:
        r1 = min(h, r0 + band)
        b, m, lab, s = best[r0:r1], mask[r0:r1], labels[r0:r1], step[r0:r1]
        np.copyto(b, logits[0, r0:r1])
        lab.fill(0)
        for k in range(1, c):
            plane = logits[k, r0:r1]
            np.greater(plane, b, out=m)
            np.maximum(b, plane, out=b)
            # k exceeds every label so far, so max(lab, k * m) sets k exactly where plane k is a
            # new strict maximum: 3-4x faster than a masked copy (np.copyto(..., where=m))
            np.multiply(m, np.uint8(k), out=s)
            np.maximum(lab, s, out=lab)
        if confidence is not None:
            a, t = acc[r0:r1], tmp[r0:r1]
            a.fill(0.0)
            for k in range(c):  # max softmax = 1 / sum exp(l - max)
                np.subtract(logits[k, r0:r1], b, out=t)
                np.exp(t, out=t)
                np.add(a, t, out=a)
            np.divide(255.0, a, out=a)
            np.rint(a, out=a)
            np.copyto(confidence[r0:r1], a, casting="unsafe")

    starts = range(0, h, band)
    if pool is None:
        for r0 in starts:
            work(r0)
    else:
        for _ in pool.map(work, starts):
            pass


def preprocess_into(
    image: np.ndarray, color_order: str, normalization: Normalization, out: torch.Tensor, buffers: CpuBuffers
) -> torch.Tensor:
    """(H,W,3) uint8 in ``color_order`` -> ``out``, a (1,3,h,w) float32 tensor, normalized as ``normalization``.

    The engine's CPU pre-processing (int8 calibration runs it too). One pass converts and
    normalizes (in the model's channel order) at input resolution, OpenCV resizes (bilinear
    commutes with the per-channel affine: its weights sum to 1), and ``cv2.split`` writes the
    planes straight into ``out`` (or the resize writes a channels_last ``out`` directly).
    """
    h, w = out.shape[2:]
    flip = color_order != normalization.color_order
    gain, bias = normalization.gain_bias()
    if flip:
        gain, bias = gain[::-1], bias[::-1]
    nhwc = out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    norm = buffers.array("normalized", image.shape, np.float32)
    # per-channel broadcasting over a last axis of 3 is slow in NumPy: scalars, or OpenCV
    if np.all(gain == gain[0]):
        np.multiply(image, gain[0], out=norm, casting="unsafe")
    else:
        np.copyto(norm, image, casting="unsafe")
        cv2.multiply(norm, (*(float(g) for g in gain), 0.0), dst=norm)
    if np.any(bias):
        if np.all(bias == bias[0]):
            np.add(norm, bias[0], out=norm)
        else:
            cv2.add(norm, (*(float(b) for b in bias), 0.0), dst=norm)
    if image.shape[:2] != (h, w):
        resized = buffers.array("resized", (h, w, 3), np.float32)
        got = cv2.resize(norm, (w, h), dst=resized, interpolation=cv2.INTER_LINEAR)
        if not np.shares_memory(got, resized):
            resized[...] = got
        norm = resized
    if nhwc:  # (h,w,3) view of the channels_last buffer
        out[0].permute(1, 2, 0).numpy()[...] = norm[:, :, ::-1] if flip else norm
        return out
    planes = out[0].numpy()
    targets = [planes[2], planes[1], planes[0]] if flip else [planes[0], planes[1], planes[2]]
    for target, got in zip(targets, cv2.split(norm, targets)):
        if not np.shares_memory(target, got):  # OpenCV allocated instead of writing in place
            target[...] = got
    return out


def network_input(image: np.ndarray, color_order: str, normalization: Normalization,
                  size: tuple[int, int]) -> np.ndarray:
    """A new ``(1,3,H,W)`` float32 array: :func:`preprocess_into` at network size ``(W, H)``."""
    w, h = size
    return preprocess_into(image, color_order, normalization, torch.empty(1, 3, h, w), CpuBuffers()).numpy()


def nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` outputs under torch's ``nearest`` rule (``floor(i * src / dst)``
    in float32, as ``F.interpolate(mode="nearest")`` computes it)."""
    probe = torch.arange(src, dtype=torch.float32).view(1, 1, src)
    return F.interpolate(probe, size=dst, mode="nearest").view(-1).to(torch.int64).numpy()


def resize_nearest_np(a: np.ndarray, hw: tuple[int, int], buffers: CpuBuffers) -> np.ndarray:
    """(h,w) uint8 -> a new (H,W) array by nearest neighbour, exactly like :func:`resize_nearest`."""
    h, w = a.shape
    H, W = hw
    if (h, w) == (H, W):
        return a.copy()
    key = (h, w, H, W)
    maps = buffers.index_maps.get(key)
    if maps is None:
        maps = buffers.index_maps[key] = (nearest_index(h, H), nearest_index(w, W))
    rows, cols = maps
    cols_done = buffers.array("nearest_cols", (h, W), a.dtype)
    np.take(a, cols, axis=1, out=cols_done)
    return np.take(cols_done, rows, axis=0)


def resize_bilinear_planes(planes: np.ndarray, hw: tuple[int, int], buffers: CpuBuffers) -> np.ndarray:
    """``(C,h,w) float32`` -> ``(C,H,W)`` bilinear (half-pixel centres, as ``align_corners=False``).

    The result lives in a buffer of ``buffers`` (valid until the next call); the planes are
    resized in parallel on the buffers' threads (OpenCV releases the GIL).
    """
    c = planes.shape[0]
    H, W = hw
    out = buffers.array("bilinear_planes", (c, H, W), np.float32)

    def work(k: int) -> None:
        got = cv2.resize(planes[k], (W, H), dst=out[k], interpolation=cv2.INTER_LINEAR)
        if not np.shares_memory(got, out[k]):
            out[k] = got

    pool = buffers.threads()
    if pool is None:
        for k in range(c):
            work(k)
    else:
        for _ in pool.map(work, range(c)):
            pass
    return out


def resize_nearest(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(h,w) integer map -> (H,W) by nearest neighbour (labels must never be interpolated)."""
    if tuple(t.shape) == tuple(hw):
        return t
    return F.interpolate(t[None, None].float(), size=hw, mode="nearest")[0, 0].to(t.dtype)


def resize_image(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(H,W,3) uint8 -> (h,w,3) uint8, bilinear."""
    x = F.interpolate(img.permute(2, 0, 1)[None].float(), size=hw, mode="bilinear", align_corners=False)
    return x[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)


def blend(base: torch.Tensor, color_rgb: torch.Tensor, alpha: float, rgb_to_input: bool) -> torch.Tensor:
    """(1-alpha)*base + alpha*color, uint8, with the color mask put in the base's channel order."""
    color = color_rgb.flip(-1) if rgb_to_input else color_rgb
    out = torch.lerp(base.float(), color.float(), alpha)
    return out.round_().to(torch.uint8)
