"""The inference engine: one uint8 image in, the outputs you ask for out.

On CUDA all pre- and post-processing is written in torch ops and runs on the GPU (resize,
normalize, argmax, colorize and blend on the device, one packed copy back).  On the CPU the
hot steps take cheaper routes with the same results: OpenCV's bilinear resize on float pixels
(equal to ``F.interpolate(..., "bilinear", align_corners=False)``), normalization written
straight into the backend's input buffer, a running-max argmax over the channel planes split
across threads, and nearest upsampling through index maps built from torch's own ``nearest``
rule.  Buffers are allocated once per image size and reused; only the returned arrays are new.
:func:`argmax_channels` and :func:`nearest_index` are tested against the torch ops they replace.

Example::

    seg = Segmenter("weights.safetensors", device="auto", input_size=(1024, 512))
    out = seg(image_bgr, color_order="bgr", outputs=("labels", "overlay"))
    out.labels      # (H,W) uint8 class ids at input resolution
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from esnet_ros.inference.backends import create_backend, resolve_device, resolve_precision
from esnet_ros.core.checkpoint import labels_from_meta, load_checkpoint, resolve_weights
from esnet_ros.core.labels import LabelSet
from esnet_ros.core.model import check_input_size

__all__ = [
    "Segmenter",
    "SegmentationResult",
    "OUTPUTS",
    "RESOLUTIONS",
    "validate_image",
    "argmax_channels",
    "nearest_index",
]

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
        precision: ``auto`` (fp16 on CUDA; on the CPU bf16 with OpenVINO on AMX/AVX512-BF16, else fp32),
            ``fp32``, ``fp16`` (CUDA only), ``bf16`` (OpenVINO) or ``int8``.
        backend: see :data:`esnet_ros.inference.backends.BACKENDS`.
        input_size: network input ``(W, H)``, both multiples of 8; ``None`` takes the size the
            checkpoint was trained at (1024x512 for the authors' weights).
        labels: class list overriding the checkpoint's (needed for metadata-less custom weights).
        backend_options: passed to :func:`esnet_ros.inference.backends.create_backend` (e.g.
            ``{"compile": "default"}`` for torch, ``{"cache_dir": ...}`` for onnxruntime).
        num_threads: CPU threads of the backend (0 = every core).

    ``weights`` may also be an ``.onnx`` file from ``esnet export`` (run by ``onnxruntime``).
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
        backend_options: Mapping[str, Any] | None = None,
        num_threads: int = 0,
    ) -> None:
        self.device = resolve_device(device)
        resolve_precision(precision, self.device)  # bad values fail before the weights load; auto waits for the backend
        if isinstance(weights, tuple):
            model, meta = weights
            meta = dict(meta)
        else:
            path = resolve_weights(weights)
            if path.suffix == ".onnx":  # an exported model: metadata from its metadata_props
                from esnet_ros.inference.onnx_export import read_onnx_metadata

                model, meta = None, read_onnx_metadata(path)
                meta["onnx_path"] = str(path)
                if str(backend).strip().lower() in ("torch", "auto"):
                    backend = "onnxruntime"
            else:
                model, meta = load_checkpoint(path, "cpu", labels=labels)
        num_classes = model.num_classes if model is not None else int(meta["num_classes"])
        if labels is not None:
            if labels.num_classes != num_classes:
                raise ValueError(
                    f"the labels list {labels.num_classes} classes but the model predicts {num_classes}; "
                    f"use a labels file with {num_classes} classes"
                )
            meta.update(labels.to_meta())
        self.meta = meta
        self.labels = labels_from_meta(meta)
        size = tuple(input_size) if input_size is not None else tuple(meta.get("input_size", (1024, 512)))
        check_input_size(int(size[0]), int(size[1]), what="network input")
        self.input_size = (int(size[0]), int(size[1]))
        fixed = meta.get("onnx_input_size")
        if model is None and fixed and tuple(fixed) != self.input_size:
            raise ValueError(
                f"{meta.get('onnx_path')} was exported for {fixed[0]}x{fixed[1]} but input_size is "
                f"{self.input_size[0]}x{self.input_size[1]}; use input_size=({fixed[0]}, {fixed[1]}) or export with --dynamic"
            )
        self.backend = create_backend(
            backend, model, meta, self.device, precision, self.input_size, options=backend_options,
            num_threads=num_threads,
        )
        self.precision = self.backend.precision
        norm = meta["normalization"]
        scale = float(norm["scale"])
        mean = torch.tensor(norm["mean"], dtype=torch.float32)
        std = torch.tensor(norm["std"], dtype=torch.float32)
        # x_norm = pixel * gain + bias, per channel in the model's color order
        self._gain = (scale / std).view(1, 3, 1, 1).to(self.device)
        self._bias = (-mean / std).view(1, 3, 1, 1).to(self.device)
        self.model_color_order = norm["color_order"]
        self._palette = torch.from_numpy(self.labels.palette()).to(self.device)
        self._palette_np = np.ascontiguousarray(self.labels.palette())
        self._gain_np = self._gain.flatten().cpu().numpy()
        self._bias_np = self._bias.flatten().cpu().numpy()
        self._bias_zero = not bool(np.any(self._bias_np))
        self._pinned: torch.Tensor | None = None
        self._cpu = _CpuBuffers() if self.device.type == "cpu" else None
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
        if self._cpu is not None:
            self._cpu = _CpuBuffers()
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

    def _preprocess_cpu(self, image: np.ndarray, color_order: str) -> torch.Tensor:
        """CPU: (H,W,3) uint8 -> (1,3,h,w) float32 normalized, written into a reused buffer.

        One pass converts and normalizes (in the model's channel order) at input resolution,
        OpenCV resizes (bilinear commutes with the per-channel affine: its weights sum to 1), and
        ``cv2.split`` writes the planes straight into the backend's NCHW input buffer (or the
        resize writes the NHWC buffer of a channels_last backend directly).
        """
        import cv2

        buf = self._cpu
        w, h = self.input_size
        x = self.backend.input_buffer((1, 3, h, w))
        if x is None:
            x = buf.tensor("input", (1, 3, h, w), torch.float32)
        flip = color_order != self.model_color_order
        gain, bias = (self._gain_np[::-1], self._bias_np[::-1]) if flip else (self._gain_np, self._bias_np)
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        norm = buf.array("normalized", image.shape, np.float32)
        # per-channel broadcasting over a last axis of 3 is slow in NumPy: scalars, or OpenCV
        if np.all(gain == gain[0]):
            np.multiply(image, gain[0], out=norm, casting="unsafe")
        else:
            np.copyto(norm, image, casting="unsafe")
            cv2.multiply(norm, (*(float(g) for g in gain), 0.0), dst=norm)
        if not self._bias_zero:
            if np.all(bias == bias[0]):
                np.add(norm, bias[0], out=norm)
            else:
                cv2.add(norm, (*(float(b) for b in bias), 0.0), dst=norm)
        if image.shape[:2] != (h, w):
            resized = buf.array("resized", (h, w, 3), np.float32)
            got = cv2.resize(norm, (w, h), dst=resized, interpolation=cv2.INTER_LINEAR)
            if not np.shares_memory(got, resized):
                resized[...] = got
            norm = resized
        if nhwc:  # (h,w,3) view of the channels_last buffer
            out_hwc = x[0].permute(1, 2, 0).numpy()
            if flip:
                out_hwc[...] = norm[:, :, ::-1]
            else:
                out_hwc[...] = norm
            return x
        planes = x[0].numpy()
        targets = [planes[2], planes[1], planes[0]] if flip else [planes[0], planes[1], planes[2]]
        for target, got in zip(targets, cv2.split(norm, targets)):
            if not np.shares_memory(target, got):  # OpenCV allocated instead of writing in place
                target[...] = got
        return x

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
        if cuda:
            src = self._upload(image)
            x = self.preprocess(src, color_order)
            torch.cuda.synchronize(self.device)
        else:
            x = self._preprocess_cpu(image, color_order)
        t1 = time.perf_counter()
        logits = self.backend(x)
        if cuda:
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        if cuda:
            result = self._postprocess(logits, src, wanted, resolution, float(alpha), color_order)
        else:
            result = self._postprocess_cpu(logits, image, wanted, resolution, float(alpha), color_order)
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


    def _postprocess_cpu(
        self,
        logits: torch.Tensor,
        image: np.ndarray,
        wanted: tuple[str, ...],
        resolution: str,
        alpha: float,
        color_order: str,
    ) -> SegmentationResult:
        """CPU: the same outputs as :meth:`_postprocess` without torch's slow strided reductions."""
        buf = self._cpu
        lg = logits[0].float()
        c, h, w = lg.shape
        out_hw = tuple(image.shape[:2]) if resolution == "input" else (h, w)
        want_conf = "confidence" in wanted
        labels_net = buf.array("labels_net", (h, w), np.uint8)
        conf_net = buf.array("conf_net", (h, w), np.uint8) if want_conf else None
        if lg.is_contiguous():  # NCHW planes: running max over channels, rows split across threads
            argmax_channels(lg.numpy(), labels_net, conf_net, buf)
        else:  # e.g. channels_last logits: torch reduces over the contiguous channel dim well
            labels_net[...] = lg.argmax(0).numpy()
            if want_conf:
                mx = lg.amax(0, keepdim=True)
                conf = 1.0 / torch.exp(lg - mx).sum(0)
                conf_net[...] = conf.mul(255.0).round_().to(torch.uint8).numpy()
        out: dict[str, np.ndarray] = {}
        labels = _resize_nearest_np(labels_net, out_hw, buf)
        if "labels" in wanted:
            out["labels"] = labels
        if want_conf:
            out["confidence"] = _resize_nearest_np(conf_net, out_hw, buf)
        if "color" in wanted or "overlay" in wanted:
            color = np.take(self._palette_np, labels, axis=0)
            if "color" in wanted:
                out["color"] = color
            if "overlay" in wanted:
                src = torch.from_numpy(image)
                base = src if resolution == "input" else _resize_image(src, out_hw)
                out["overlay"] = _blend(base, torch.from_numpy(color), alpha, rgb_to_input=color_order == "bgr").numpy()
        return SegmentationResult(**out)


class _CpuBuffers:
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
    buffers: _CpuBuffers | None = None,
) -> None:
    """``labels[...] = logits.argmax(0)`` (first maximum wins, as in torch), for ``(C,H,W)`` float32.

    Optionally ``confidence[...] = round(255 * max softmax)``.  A running maximum over the C
    planes, in row bands spread over a few threads (NumPy releases the GIL): 25x faster on the
    CPU than ``torch.argmax(dim=0)``.  At most 256 classes (labels are uint8).
    """
    c, h, w = logits.shape
    buffers = buffers or _CpuBuffers()
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


def nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each of ``dst`` outputs under torch's ``nearest`` rule (``floor(i * src / dst)``
    in float32, as ``F.interpolate(mode="nearest")`` computes it)."""
    probe = torch.arange(src, dtype=torch.float32).view(1, 1, src)
    return F.interpolate(probe, size=dst, mode="nearest").view(-1).to(torch.int64).numpy()


def _resize_nearest_np(a: np.ndarray, hw: tuple[int, int], buffers: _CpuBuffers) -> np.ndarray:
    """(h,w) uint8 -> a new (H,W) array by nearest neighbour, exactly like :func:`_resize_nearest`."""
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
