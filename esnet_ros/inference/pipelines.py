"""The engine's two pipelines, one per kind of device, behind one interface.

:class:`~esnet_ros.inference.segmenter.Segmenter` picks one when it is built and hands every call to it:

- :class:`CpuPipeline`: the hot steps take the cheaper routes of :mod:`esnet_ros.inference.cpu_ops`
  (normalization straight into the backend's input buffer, a threaded channel argmax, nearest maps,
  palette and blend into the caller's arrays); :meth:`~CpuPipeline.infer` ends with the labels (and
  confidence) at network resolution (at the output's for ``upsample="bilinear"``), :meth:`~CpuPipeline.finish`
  brings them to the output's size and builds the other outputs.
- :class:`CudaPipeline`: every step in torch ops on the device (:mod:`esnet_ros.inference.torch_ops`:
  resize, normalize, argmax, colorize and blend), one packed copy of the requested outputs back;
  :meth:`~CudaPipeline.finish` only delivers them (and redraws them in a :class:`LabelSpace`).

Both offer ``infer(image, options) -> Inferred``, ``finish(inferred, into, on_labels) -> SegmentationResult``,
``network_input(image, color_order)`` and ``release()``; each holds only its own buffers, allocated once
per image size and reused (one set per half of a call: ``infer`` and ``finish`` may run on two threads).
:class:`CallOptions` is one call's checked options.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from esnet_ros.core.metadata import COLOR_ORDERS, Normalization
from esnet_ros.inference.backend_base import Backend
from esnet_ros.inference.cpu_ops import (
    CpuBuffers,
    argmax_channels,
    blend,
    normalize_into,
    resize_bilinear_planes,
    resize_nearest,
)
from esnet_ros.inference.defaults import UPSAMPLE_MODES
from esnet_ros.inference.label_space import LabelSpace
from esnet_ros.inference.torch_ops import postprocess_on_device, resize_image

__all__ = [
    "CallOptions",
    "CpuPipeline",
    "CudaPipeline",
    "Inferred",
    "OUTPUTS",
    "RESOLUTIONS",
    "SegmentationResult",
    "check_choice",
]

OUTPUTS = ("labels", "confidence", "color", "overlay")
RESOLUTIONS = ("input", "network")

OnLabels = Callable[[np.ndarray], None]


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


def check_choice(name: str, value: str, allowed: Iterable[str]) -> str:
    """``value`` lower-cased if it is one of ``allowed``, else a ``ValueError`` that lists them."""
    allowed = tuple(allowed)
    v = str(value).strip().lower()
    if v not in allowed:
        raise ValueError(f"{name}={value!r} must be one of: {', '.join(allowed)}")
    return v


@dataclasses.dataclass(frozen=True)
class CallOptions:
    """One call's checked options (:meth:`parse` builds them from ``Segmenter.infer``'s arguments).

    ``wanted``: the outputs to compute, in order, without repeats (plus ``confidence`` when the label
    space's threshold reads it).
    """

    wanted: tuple[str, ...]
    resolution: str
    alpha: float
    color_order: str
    upsample: str
    label_space: LabelSpace | None = None

    @classmethod
    def parse(
        cls,
        *,
        color_order: str,
        outputs: Iterable[str],
        resolution: str,
        alpha: float,
        upsample: str,
        label_space: LabelSpace | None,
    ) -> CallOptions:
        """Check each option, raising a ``ValueError`` that names it and what it may be."""
        wanted = tuple(dict.fromkeys(check_choice("outputs", o, OUTPUTS) for o in outputs))
        if label_space is not None and label_space.needs_confidence and "confidence" not in wanted:
            wanted += ("confidence",)  # the threshold reads it
        options = cls(
            wanted=wanted,
            resolution=check_choice("resolution", resolution, RESOLUTIONS),
            alpha=float(alpha),
            color_order=check_choice("color_order", color_order, COLOR_ORDERS),
            upsample=check_choice("upsample", upsample, UPSAMPLE_MODES),
            label_space=label_space,
        )
        if not 0.0 <= options.alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must be within 0..1 (0: input only, 1: mask only)")
        return options

    def output_hw(self, image: np.ndarray, input_size: tuple[int, int]) -> tuple[int, int]:
        """``(H, W)`` of the outputs: the image's (``resolution="input"``) or the network's ``input_size`` (W, H)."""
        return tuple(image.shape[:2]) if self.resolution == "input" else (input_size[1], input_size[0])


@dataclasses.dataclass
class Inferred:
    """What a pipeline's ``infer`` hands to its ``finish``: the image, the call's options, and the
    labels/confidence of its own (:class:`CpuPipeline`) or the finished outputs (:class:`CudaPipeline`)."""

    image: np.ndarray
    options: CallOptions
    labels: np.ndarray | None
    confidence: np.ndarray | None
    result: SegmentationResult | None
    timings_ms: dict[str, float]


def _timings(t0: float, t1: float, t2: float, t3: float) -> dict[str, float]:
    return {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}


class CpuPipeline:
    """The CPU: NumPy/OpenCV kernels (:mod:`esnet_ros.inference.cpu_ops`), computing into reused buffers
    and, in :meth:`finish`, into the caller's arrays where they fit.

    Args:
        backend: runs the network (its ``input_buffer`` is written in place; a ``fused_head`` gives the labels).
        normalization: the model's input normalization and color order.
        palette: ``(C,3) uint8`` RGB per class.
        input_size: network input ``(W, H)``.
    """

    def __init__(
        self, backend: Backend, normalization: Normalization, palette: np.ndarray, input_size: tuple[int, int]
    ) -> None:
        self.backend = backend
        self.input_size = input_size
        self.model_color_order = normalization.color_order
        self._gain, self._bias = normalization.gain_bias()  # x_norm = pixel * gain + bias, in the model's order
        self._palette = np.ascontiguousarray(palette)
        self._infer_buffers, self._finish_buffers = CpuBuffers(), CpuBuffers()

    def release(self) -> None:
        self._infer_buffers, self._finish_buffers = CpuBuffers(), CpuBuffers()

    def network_input(self, image: np.ndarray, color_order: str) -> np.ndarray:
        """The ``(1,3,h,w)`` float32 array the network gets (a new array)."""
        return self._preprocess(image, color_order).numpy().copy()

    def _preprocess(self, image: np.ndarray, color_order: str) -> torch.Tensor:
        """(H,W,3) uint8 -> (1,3,h,w) float32 normalized, written into the backend's input (or a reused buffer)."""
        w, h = self.input_size
        x = self.backend.input_buffer((1, 3, h, w))
        if x is None:
            x = self._infer_buffers.tensor("input", (1, 3, h, w), torch.float32)
        flip = color_order != self.model_color_order
        return normalize_into(image, x, self._gain, self._bias, flip, self._infer_buffers)

    def infer(self, image: np.ndarray, options: CallOptions) -> Inferred:
        """Pre-processing and the network, ending with new labels (and confidence) arrays."""
        t0 = time.perf_counter()
        x = self._preprocess(image, options.color_order)
        t1 = time.perf_counter()
        out_hw = options.output_hw(image, self.input_size)
        want_conf = "confidence" in options.wanted
        if self.backend.fused_head and (options.upsample == "nearest" or out_hw == self.input_size[::-1]):
            labels, conf = self.backend.labels(x, want_conf)  # argmax (and confidence) in the backend's graph
            labels, conf = labels.copy(), (conf.copy() if want_conf else None)
            t2 = t3 = time.perf_counter()
        else:
            logits = self.backend(x)
            t2 = time.perf_counter()
            labels, conf = self._argmax(logits[0].float(), out_hw, options.upsample, want_conf)
            t3 = time.perf_counter()
        return Inferred(image, options, labels, conf, None, _timings(t0, t1, t2, t3))

    def _argmax(
        self, lg: torch.Tensor, out_hw: tuple[int, int], upsample: str, want_conf: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``(C,h,w)`` -> new ``(labels, confidence or None)`` arrays (bilinear: at ``out_hw``)."""
        buf = self._infer_buffers
        if upsample == "bilinear" and tuple(lg.shape[1:]) != tuple(out_hw):
            lg = torch.from_numpy(resize_bilinear_planes(lg.contiguous().numpy(), out_hw, buf))
        h, w = lg.shape[1:]
        labels = np.empty((h, w), np.uint8)
        conf = np.empty((h, w), np.uint8) if want_conf else None
        if lg.is_contiguous():  # NCHW planes: running max over channels, rows split across threads
            argmax_channels(lg.numpy(), labels, conf, buf)
        else:  # e.g. channels_last logits: torch reduces over the contiguous channel dim well
            labels[...] = lg.argmax(0).numpy()
            if want_conf:
                p = 1.0 / torch.exp(lg - lg.amax(0, keepdim=True)).sum(0)  # the max softmax
                conf[...] = p.mul(255.0).round_().to(torch.uint8).numpy()
        return labels, conf

    def finish(
        self, inferred: Inferred, into: Mapping[str, np.ndarray], on_labels: OnLabels | None
    ) -> SegmentationResult:
        """The outputs at their size, computed into ``into`` where it fits (copied into the rest)."""
        result = self._outputs(inferred, into, on_labels)
        _deliver(result, into)
        return result

    def _outputs(
        self, inferred: Inferred, into: Mapping[str, np.ndarray], on_labels: OnLabels | None
    ) -> SegmentationResult:
        """Labels, confidence, color and overlay at the output's size; ``on_labels`` as soon as the labels exist."""
        buf, o, image = self._finish_buffers, inferred.options, inferred.image
        out_hw = o.output_hw(image, self.input_size)
        into = {k: v for k, v in into.items() if k in o.wanted and _fits(v, k, out_hw)}
        out: dict[str, np.ndarray] = {}
        palette = self._palette
        if o.label_space is not None:  # at the labels' own size, before they are upsampled
            inferred.labels, palette = o.label_space.apply(inferred.labels, inferred.confidence), o.label_space.palette
        labels = resize_nearest(inferred.labels, out_hw, buf, into.get("labels"))
        if "labels" in o.wanted:
            out["labels"] = labels
            if on_labels is not None:
                on_labels(labels)
        if inferred.confidence is not None:
            out["confidence"] = resize_nearest(inferred.confidence, out_hw, buf, into.get("confidence"))
        if "color" in o.wanted or "overlay" in o.wanted:
            # palette at the labels' own size, then the nearest maps: equals palette[labels]
            color = resize_nearest(np.take(palette, inferred.labels, axis=0), out_hw, buf, into.get("color"))
            if "color" in o.wanted:
                out["color"] = color
            if "overlay" in o.wanted:
                base = image if o.resolution == "input" else resize_image(torch.from_numpy(image), out_hw).numpy()
                mask = cv2.cvtColor(color, cv2.COLOR_RGB2BGR) if o.color_order == "bgr" else color
                out["overlay"] = blend(np.ascontiguousarray(base), mask, o.alpha, buf, into.get("overlay"))
        return SegmentationResult(**out)


class CudaPipeline:
    """CUDA: everything in torch ops on the device, then one packed copy of the requested outputs to the host.

    Arguments as :class:`CpuPipeline`'s; the device is the backend's. The image goes up through a reused
    page-locked buffer. The same ops run on any torch device: on the CPU device (the tests' stand-in for a
    GPU) without the page-locked copy and the syncs that time the stages.
    """

    def __init__(
        self, backend: Backend, normalization: Normalization, palette: np.ndarray, input_size: tuple[int, int]
    ) -> None:
        self.backend = backend
        self.device = backend.device
        self.input_size = input_size
        self.model_color_order = normalization.color_order
        gain, bias = normalization.gain_bias()
        self._gain = torch.from_numpy(gain).view(1, 3, 1, 1).to(self.device)
        self._bias = torch.from_numpy(bias).view(1, 3, 1, 1).to(self.device)
        self._palette = torch.from_numpy(np.ascontiguousarray(palette)).to(self.device)
        self._on_cuda = self.device.type == "cuda"
        self._pinned: torch.Tensor | None = None

    def release(self) -> None:
        self._pinned = None
        if self._on_cuda:
            torch.cuda.empty_cache()

    def _sync(self) -> None:
        if self._on_cuda:
            torch.cuda.synchronize(self.device)

    def _upload(self, image: np.ndarray) -> torch.Tensor:
        """(H,W,3) uint8 numpy -> (H,W,3) uint8 tensor on the device (via the page-locked buffer on CUDA)."""
        host = torch.from_numpy(image)
        if not self._on_cuda:
            return host.to(self.device)
        if self._pinned is None or self._pinned.shape != host.shape:
            self._pinned = torch.empty(host.shape, dtype=torch.uint8, pin_memory=True)
        self._pinned.copy_(host)
        return self._pinned.to(self.device, non_blocking=True)

    def _preprocess(self, image: torch.Tensor, color_order: str) -> torch.Tensor:
        """(H,W,3) uint8 tensor -> (1,3,h,w) float normalized, in the model's color order."""
        x = image.permute(2, 0, 1).unsqueeze(0)
        if color_order != self.model_color_order:
            x = x.flip(1)
        w, h = self.input_size
        x = x.float()
        if x.shape[2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return x * self._gain + self._bias

    def network_input(self, image: np.ndarray, color_order: str) -> np.ndarray:
        """The ``(1,3,h,w)`` float32 array the network gets (a new array)."""
        return self._preprocess(self._upload(image), color_order).float().cpu().numpy()

    def infer(self, image: np.ndarray, options: CallOptions) -> Inferred:
        """Pre-processing, the network and the post-processing: the finished outputs, on the host."""
        t0 = time.perf_counter()
        src = self._upload(image)
        x = self._preprocess(src, options.color_order)
        self._sync()
        t1 = time.perf_counter()
        logits = self.backend(x)
        self._sync()
        t2 = time.perf_counter()
        host = postprocess_on_device(
            logits,
            src,
            self._palette,
            wanted=options.wanted,
            resolution=options.resolution,
            upsample=options.upsample,
            alpha=options.alpha,
            color_order=options.color_order,
        )
        result = SegmentationResult(**host)
        return Inferred(image, options, None, None, result, _timings(t0, t1, t2, time.perf_counter()))

    def finish(
        self, inferred: Inferred, into: Mapping[str, np.ndarray], on_labels: OnLabels | None
    ) -> SegmentationResult:
        """The outputs copied into ``into`` (redrawn on the host in the label space first); then ``on_labels``."""
        result, o = inferred.result, inferred.options
        if o.label_space is not None:
            o.label_space.relabel(result, inferred.image, o.resolution, o.color_order, o.alpha)
        _deliver(result, into)
        if on_labels is not None and result.labels is not None:
            on_labels(result.labels)
        return result


def _fits(dest: np.ndarray, name: str, hw: tuple[int, ...]) -> bool:
    """Whether ``dest`` can take output ``name`` at size ``hw`` (else :func:`_deliver` names the problem)."""
    shape = tuple(hw) + ((3,) if name in ("color", "overlay") else ())
    return dest.shape == shape and dest.dtype == np.uint8 and dest.flags.c_contiguous and dest.flags.writeable


def _deliver(result: SegmentationResult, into: Mapping[str, Any]) -> None:
    """Put each computed output into its ``into`` array (a no-op for those computed there)."""
    for name, dest in into.items():
        got = getattr(result, name, None)
        if got is None or got is dest:
            continue
        if not _fits(dest, name, got.shape[:2]):
            raise ValueError(
                f"out[{name!r}] is {dest.shape} {dest.dtype}; pass a writable C-contiguous uint8 array "
                f"of shape {got.shape}"
            )
        np.copyto(dest, got)
        setattr(result, name, dest)
