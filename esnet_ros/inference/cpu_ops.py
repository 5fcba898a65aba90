"""The engine's CPU kernels: NumPy/OpenCV routes to the results of the torch ops they replace.

- :func:`normalize_into`: uint8 pixels -> the normalized network input, written into the
  backend's buffer (OpenCV's bilinear resize on float pixels equals
  ``F.interpolate(..., "bilinear", align_corners=False)``);
- :func:`argmax_channels`: ``logits.argmax(0)`` (and the max softmax) over channel planes, in
  row bands spread over a few threads;
- :func:`resize_nearest`: labels brought to another size through index maps built from torch's
  own ``nearest`` rule (:func:`nearest_index`);
- :func:`resize_bilinear_planes`: logits brought to another size, bilinear (OpenCV, per plane);
- :func:`blend`: ``torch.lerp(base, color, alpha)`` rounded to uint8, by ``cv2.addWeighted`` for
  every alpha at which that gives the same bytes (checked on all 256x256 pairs, once per alpha).

:class:`CpuBuffers` holds the arrays reused from frame to frame.  Each kernel is tested against
the torch op it replaces.
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
    "normalize_into",
    "network_input",
    "argmax_channels",
    "max_softmax",
    "nearest_index",
    "resize_nearest",
    "resize_bilinear_planes",
    "blend",
]


class CpuBuffers:
    """Arrays reused from frame to frame (one set per shape), and a small thread pool."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._tensors: dict[str, torch.Tensor] = {}
        self.index_maps: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.exact_blend: dict[float, bool] = {}
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


def _affine(image: np.ndarray, gain: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """``out = image * gain + bias`` per channel (scalars or OpenCV: NumPy broadcasts over 3 slowly)."""
    if np.all(gain == gain[0]):
        np.multiply(image, gain[0], out=out, casting="unsafe")
    else:
        np.copyto(out, image, casting="unsafe")
        cv2.multiply(out, (*(float(g) for g in gain), 0.0), dst=out)
    if not np.any(bias):
        return
    if np.all(bias == bias[0]):
        np.add(out, bias[0], out=out)
    else:
        cv2.add(out, (*(float(b) for b in bias), 0.0), dst=out)


def normalize_into(
    image: np.ndarray, x: torch.Tensor, gain: np.ndarray, bias: np.ndarray, flip: bool, buffers: CpuBuffers
) -> torch.Tensor:
    """``(H,W,3)`` uint8 -> ``x`` ``(1,3,h,w)`` float32: ``pixel * gain + bias``, resized bilinear.

    ``gain``/``bias`` are per channel in the model's order; ``flip`` reverses the image's channel
    order to the model's.  One pass converts and normalizes at input resolution, OpenCV resizes
    (bilinear commutes with the per-channel affine: its weights sum to 1), and ``cv2.split``
    writes the planes straight into ``x`` (or the resize fills a channels_last ``x`` directly).
    """
    h, w = x.shape[2:]
    if flip:
        gain, bias = gain[::-1], bias[::-1]
    norm = buffers.array("normalized", image.shape, np.float32)
    _affine(image, gain, bias, norm)
    if image.shape[:2] != (h, w):
        resized = buffers.array("resized", (h, w, 3), np.float32)
        got = cv2.resize(norm, (w, h), dst=resized, interpolation=cv2.INTER_LINEAR)
        if not np.shares_memory(got, resized):
            resized[...] = got
        norm = resized
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out_hwc = x[0].permute(1, 2, 0).numpy()  # (h,w,3) view of the channels_last buffer
        out_hwc[...] = norm[:, :, ::-1] if flip else norm
        return x
    planes = x[0].numpy()
    targets = [planes[2], planes[1], planes[0]] if flip else [planes[0], planes[1], planes[2]]
    for target, got in zip(targets, cv2.split(norm, targets), strict=True):
        if not np.shares_memory(target, got):  # OpenCV allocated instead of writing in place
            target[...] = got
    return x


def network_input(
    image: np.ndarray, normalization: Normalization, size: tuple[int, int], color_order: str = "bgr"
) -> np.ndarray:
    """A new ``(1,3,h,w)`` float32 array: ``image`` as the engine's CPU path feeds the network at ``size``
    (W, H); int8 calibration reads its inputs through this, so it sees what the node's network sees."""
    w, h = size
    gain, bias = normalization.gain_bias()
    x = torch.empty((1, 3, h, w), dtype=torch.float32)
    return normalize_into(image, x, gain, bias, color_order != normalization.color_order, CpuBuffers()).numpy()


def _bands(h: int, w: int, buffers: CpuBuffers) -> tuple[Any, range]:
    """The pool (None: run inline) and the first rows of the row bands for an ``(h,w)`` plane."""
    pool = buffers.threads() if h * w >= 1 << 16 else None
    workers = buffers.thread_count() if pool is not None else 1
    # Bands of up to ~128k pixels, at least one per worker: NumPy's per-call overhead (4 calls per
    # plane and band) outweighs cache misses below that (1024x512x19: 16k-pixel bands 14.5 ms,
    # 128k 4.6 ms on 2 cores).
    band = max(1, min((128 * 1024) // max(w, 1), -(-h // workers)))
    return pool, range(0, h, band)


def _run_bands(work: Any, pool: Any, starts: range) -> None:
    if pool is None:
        for r0 in starts:
            work(r0)
    else:
        for _ in pool.map(work, starts):
            pass


def argmax_channels(
    logits: np.ndarray, labels: np.ndarray, confidence: np.ndarray | None = None, buffers: CpuBuffers | None = None
) -> None:
    """``labels[...] = logits.argmax(0)`` (first maximum wins, as in torch), for ``(C,H,W)`` float32.

    Optionally ``confidence[...] = round(255 * max softmax)`` (:func:`max_softmax`, which may also
    be called afterwards: the labels first, e.g. to publish them, then the confidence).  A running
    maximum over the C planes, in row bands spread over a few threads (NumPy releases the GIL): 25x
    faster on the CPU than ``torch.argmax(dim=0)``.  At most 256 classes (labels are uint8).
    """
    c, h, w = logits.shape
    buffers = buffers or CpuBuffers()
    best = buffers.array("argmax_best", (h, w), np.float32)
    mask = buffers.array("argmax_mask", (h, w), np.bool_)
    step = buffers.array("argmax_step", (h, w), np.uint8)
    pool, starts = _bands(h, w, buffers)
    band = starts.step

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

    _run_bands(work, pool, starts)
    if confidence is not None:
        max_softmax(logits, confidence, buffers)


def max_softmax(logits: np.ndarray, confidence: np.ndarray, buffers: CpuBuffers) -> None:
    """``confidence[...] = round(255 * max softmax)`` of ``(C,H,W)`` float32 logits, right after
    :func:`argmax_channels` on the same logits and ``buffers`` (it reuses that call's running maximum)."""
    c, h, w = logits.shape
    best = buffers.array("argmax_best", (h, w), np.float32)
    acc = buffers.array("argmax_acc", (h, w), np.float32)
    tmp = buffers.array("argmax_tmp", (h, w), np.float32)
    pool, starts = _bands(h, w, buffers)
    band = starts.step

    def work(r0: int) -> None:
        r1 = min(h, r0 + band)
        b, a, t = best[r0:r1], acc[r0:r1], tmp[r0:r1]
        a.fill(0.0)
        for k in range(c):  # max softmax = 1 / sum exp(l - max)
            np.subtract(logits[k, r0:r1], b, out=t)
            np.exp(t, out=t)
            np.add(a, t, out=a)
        np.divide(255.0, a, out=a)
        np.rint(a, out=a)
        np.copyto(confidence[r0:r1], a, casting="unsafe")

    _run_bands(work, pool, starts)


def nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` outputs under torch's ``nearest`` rule (``floor(i * src / dst)``
    in float32, as ``F.interpolate(mode="nearest")`` computes it)."""
    probe = torch.arange(src, dtype=torch.float32).view(1, 1, src)
    return F.interpolate(probe, size=dst, mode="nearest").view(-1).to(torch.int64).numpy()


def resize_nearest(
    a: np.ndarray, hw: tuple[int, int], buffers: CpuBuffers, out: np.ndarray | None = None
) -> np.ndarray:
    """``(h,w,...)`` -> a new ``(H,W,...)`` array by nearest neighbour, exactly as ``F.interpolate(mode="nearest")``.

    Trailing channels move with their pixel, so ``resize_nearest(palette[labels])`` equals
    ``palette[resize_nearest(labels)]`` at a fraction of the cost (the gather runs at the small size).
    ``out``: a C-contiguous ``(H,W,...)`` array to write into (and return) instead of a new one.
    """
    h, w = a.shape[:2]
    H, W = hw
    if (h, w) == (H, W):
        if out is None:
            return a.copy()
        np.copyto(out, a)
        return out
    key = (h, w, H, W)
    maps = buffers.index_maps.get(key)
    if maps is None:
        maps = buffers.index_maps[key] = (nearest_index(h, H), nearest_index(w, W))
    rows, cols = maps
    cols_done = buffers.array(f"nearest_cols{a.ndim}", (h, W) + a.shape[2:], a.dtype)
    np.take(a, cols, axis=1, out=cols_done)
    return np.take(cols_done, rows, axis=0, out=out)


def _lerp_u8(base: torch.Tensor, color: torch.Tensor, alpha: float) -> torch.Tensor:
    """The reference: ``(1-alpha)*base + alpha*color`` in float32 (``torch.lerp``), rounded half to even."""
    return torch.lerp(base.float(), color.float(), alpha).round_().to(torch.uint8)


def _one_per_row(v: np.ndarray) -> np.ndarray:
    """``v`` as an ``(N,1)`` non-contiguous view: OpenCV processes each element as a row's tail."""
    wide = np.zeros((v.size, 2), v.dtype)
    wide[:, 0] = v
    return wide[:, :1]


def blend(
    base: np.ndarray, color: np.ndarray, alpha: float, buffers: CpuBuffers, out: np.ndarray | None = None
) -> np.ndarray:
    """A new uint8 array ``torch.lerp(base, color, alpha)`` rounded, for equal-shaped uint8 arrays.

    ``cv2.addWeighted`` (one pass, ~8x faster) is used when it gives the same byte as torch for
    every one of the 256x256 (base, color) pairs at this ``alpha`` (0, 0.25, 0.5, 1 do; 0.3 does
    not); otherwise torch computes it.  ``out``: a C-contiguous array to write into (and return).
    """
    alpha = float(alpha)
    exact = buffers.exact_blend.get(alpha)
    if exact is None:
        a, c = (t.reshape(-1) for t in np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8)))
        want = _lerp_u8(torch.from_numpy(a), torch.from_numpy(c), alpha).numpy()
        exact = buffers.exact_blend[alpha] = all(  # OpenCV's vector loop, and its scalar tail (1-pixel rows)
            np.array_equal(cv2.addWeighted(x, 1.0 - alpha, y, alpha, 0.0).ravel(), want)
            for x, y in ((a, c), (_one_per_row(a), _one_per_row(c)))
        )
    if exact:
        got = cv2.addWeighted(base, 1.0 - alpha, color, alpha, 0.0, dst=out)
    else:
        got = _lerp_u8(torch.from_numpy(base), torch.from_numpy(color), alpha).numpy()
    if out is None:
        return got
    if got.ctypes.data != out.ctypes.data:  # OpenCV allocated, or torch computed it
        np.copyto(out, got)
    return out


def resize_bilinear_planes(planes: np.ndarray, hw: tuple[int, int], buffers: CpuBuffers) -> np.ndarray:
    """``(C,h,w)`` float32 -> ``(C,H,W)`` float32 (a reused buffer), bilinear with half-pixel centres:
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` up to float rounding."""
    c = planes.shape[0]
    H, W = hw
    out = buffers.array("planes_bilinear", (c, H, W), np.float32)
    for k in range(c):  # OpenCV spreads each plane over its own threads
        got = cv2.resize(planes[k], (W, H), dst=out[k], interpolation=cv2.INTER_LINEAR)
        if not np.shares_memory(got, out[k]):
            out[k] = got
    return out
