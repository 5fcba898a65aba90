"""The inference engine: one uint8 image in, the outputs you ask for out.

The node, ``esnet predict``, ``esnet evaluate`` and int8 calibration all run this class, so what
they write, score and calibrate on is what ``/esnet/labels`` carries.

On CUDA all pre- and post-processing is written in torch ops and runs on the GPU (resize,
normalize, argmax, colorize and blend on the device, one packed copy back).  On the CPU the
hot steps take the cheaper routes of :mod:`esnet_ros.inference.cpu_ops`, with the same results.
Buffers are allocated once per image size and reused; only the returned arrays are new.

How labels come back to the input's size is an explicit choice (:data:`UPSAMPLE_MODES`):

- ``nearest`` (:data:`DEFAULT_UPSAMPLE`): argmax at network resolution, then labels (and the
  confidence) upsampled by nearest neighbour: cheap, blocky edges;
- ``bilinear``: logits upsampled bilinearly to the input's size, then the argmax (and the
  confidence: the max softmax of the upsampled logits): what the Cityscapes benchmark scores,
  smoother edges, and it costs a C-plane resize and an argmax at full resolution.

Example::

    seg = Segmenter("weights.safetensors", device="auto", input_size=(512, 256))
    out = seg(image_bgr, color_order="bgr", outputs=("labels", "overlay"), upsample="nearest")
    out.labels      # (H,W) uint8 class ids at input resolution
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import Any, Callable, Iterable, Mapping

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from esnet_ros.core.labels import LabelSet
from esnet_ros.core.metadata import COLOR_ORDERS, ModelMeta
from esnet_ros.core.model import check_input_size
from esnet_ros.inference.defaults import DEFAULT_UPSAMPLE, ENGINE_DEFAULTS, UPSAMPLE_MODES
from esnet_ros.inference.backends import create_backend
from esnet_ros.inference.devices import resolve_device, resolve_precision
from esnet_ros.inference.label_space import LabelSpace
from esnet_ros.inference.loading import load_for_engine
from esnet_ros.inference.cpu_ops import (
    CpuBuffers,
    argmax_channels,
    blend,
    normalize_into,
    resize_bilinear_planes,
    resize_nearest,
)
from esnet_ros.inference.torch_ops import postprocess_on_device, resize_image

__all__ = [
    "Segmenter",
    "SegmentationResult",
    "Inferred",
    "OUTPUTS",
    "RESOLUTIONS",
    "UPSAMPLE_MODES",
    "DEFAULT_UPSAMPLE",
    "validate_image",
]

log = logging.getLogger(__name__)

OUTPUTS = ("labels", "confidence", "color", "overlay")
RESOLUTIONS = ("input", "network")


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
        weights: a checkpoint path, a ``(model, ModelMeta)`` pair, or a bundled model's
            name (``camvid``, ``synthetic``), or ``None`` for the default bundled model (CamVid: real streets).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (fp16 on CUDA; on the CPU the weights' validated int8 companion, else bf16 with
            OpenVINO on AMX/AVX512-BF16, else fp32: :mod:`esnet_ros.inference.auto_precision`),
            ``fp32``, ``fp16`` (CUDA only), ``bf16`` (OpenVINO) or ``int8``.
        backend: see :data:`esnet_ros.inference.devices.BACKENDS`.
        input_size: network input ``(W, H)``, both multiples of 8; ``None`` takes the size the
            checkpoint was trained at (``ModelMeta.input_size``), or a fixed-size ONNX file's.
        labels: class list overriding the checkpoint's (needed for metadata-less custom weights).
        backend_options: passed to :func:`esnet_ros.inference.backends.create_backend` (e.g.
            ``{"compile": "default"}`` for torch, ``{"cache_dir": ...}`` for onnxruntime).
        num_threads: CPU threads of the backend (0 = every core).

    ``weights`` may also be an ``.onnx`` file from ``esnet export`` (run by ``onnxruntime``).
    """

    def __init__(
        self,
        weights: str | pathlib.Path | tuple[torch.nn.Module, ModelMeta | Mapping[str, Any]] | None = None,
        *,
        device: str = ENGINE_DEFAULTS["device"],
        precision: str = ENGINE_DEFAULTS["precision"],
        backend: str = ENGINE_DEFAULTS["backend"],
        input_size: tuple[int, int] | None = None,
        labels: LabelSet | None = None,
        backend_options: Mapping[str, Any] | None = None,
        num_threads: int = ENGINE_DEFAULTS["num_threads"],
    ) -> None:
        self.device = resolve_device(device)
        resolve_precision(precision, self.device)  # bad values fail before the weights load; auto waits for the backend
        loaded = load_for_engine(weights, backend, precision, self.device, labels, backend_options)
        model, meta, backend, precision = loaded.model, loaded.meta, loaded.backend, loaded.precision
        #: why this precision runs (``precision=auto``'s rule, or what was asked for)
        self.precision_reason = loaded.reason
        self.meta = meta
        self.labels = meta.labels
        size = tuple(input_size) if input_size is not None else (meta.onnx_input_size or meta.input_size)
        check_input_size(int(size[0]), int(size[1]), what="network input")
        self.input_size = (int(size[0]), int(size[1]))
        fixed = meta.onnx_input_size
        if model is None and fixed and tuple(fixed) != self.input_size:
            raise ValueError(
                f"{meta.onnx_path} was exported for {fixed[0]}x{fixed[1]} but input_size is "
                f"{self.input_size[0]}x{self.input_size[1]}; use input_size=({fixed[0]}, {fixed[1]}) or export with --dynamic"
            )
        self.backend = create_backend(
            backend, model, meta, self.device, precision, self.input_size, options=backend_options,
            num_threads=num_threads,
        )
        self.precision = self.backend.precision
        # x_norm = pixel * gain + bias, per channel in the model's color order
        self._gain_np, self._bias_np = meta.normalization.gain_bias()
        self._gain = torch.from_numpy(self._gain_np).view(1, 3, 1, 1).to(self.device)
        self._bias = torch.from_numpy(self._bias_np).view(1, 3, 1, 1).to(self.device)
        self.model_color_order = meta.normalization.color_order
        self._palette_np = np.ascontiguousarray(self.labels.palette())
        self._palette = torch.from_numpy(self._palette_np).to(self.device)
        self._pinned: torch.Tensor | None = None
        # one set of buffers per half of a call (Segmenter.infer / finish may run on two threads)
        self._cpu = CpuBuffers() if self.device.type == "cpu" else None
        self._cpu_finish = CpuBuffers() if self.device.type == "cpu" else None
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
            self._cpu, self._cpu_finish = CpuBuffers(), CpuBuffers()
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
        """(H,W,3) uint8 tensor -> (1,3,h,w) float normalized, in the model's color order (torch ops)."""
        x = image.permute(2, 0, 1).unsqueeze(0)
        if color_order != self.model_color_order:
            x = x.flip(1)
        w, h = self.input_size
        x = x.float()
        if x.shape[2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return x * self._gain + self._bias

    def network_input(self, image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
        """The ``(1,3,h,w)`` float32 array the network gets for ``image`` (a new array: int8 calibration)."""
        image = validate_image(image)
        color_order = _check_choice("color_order", color_order, COLOR_ORDERS)
        if self.device.type == "cuda":
            return self.preprocess(self._upload(image), color_order).float().cpu().numpy()
        return self._preprocess_cpu(image, color_order).numpy().copy()

    def _preprocess_cpu(self, image: np.ndarray, color_order: str) -> torch.Tensor:
        """CPU: (H,W,3) uint8 -> (1,3,h,w) float32 normalized, written into a reused buffer."""
        w, h = self.input_size
        x = self.backend.input_buffer((1, 3, h, w))
        if x is None:
            x = self._cpu.tensor("input", (1, 3, h, w), torch.float32)
        flip = color_order != self.model_color_order
        return normalize_into(image, x, self._gain_np, self._bias_np, flip, self._cpu)

    # -- the call -----------------------------------------------------------------------------

    def __call__(
        self,
        image: np.ndarray,
        color_order: str = "rgb",
        outputs: Iterable[str] = ("labels",),
        resolution: str = "input",
        alpha: float = 0.5,
        upsample: str = DEFAULT_UPSAMPLE,
        out: Mapping[str, np.ndarray] | None = None,
        on_labels: Callable[[np.ndarray], None] | None = None,
        label_space: LabelSpace | None = None,
    ) -> SegmentationResult:
        """Segment one ``(H,W,3) uint8`` image; compute only ``outputs`` (see :data:`OUTPUTS`).

        ``upsample`` (:data:`UPSAMPLE_MODES`) says how labels reach the input's size when
        ``resolution="input"``; at ``resolution="network"`` both modes give the same result.
        ``out``: output name -> a C-contiguous array of the output's shape and dtype; the CPU
        path computes into it (e.g. a message's buffer), others copy into it; the result holds it.
        ``on_labels(labels)``: with ``labels`` among ``outputs``, called with them as soon as they exist (CPU:
        before the other outputs are computed, e.g. to publish them first; other devices: after all).
        ``label_space``: publish labels (and draw color/overlay) in this :class:`LabelSpace` (a remap, a
        confidence threshold) instead of the model's classes.

        The same as ``finish(infer(image, ...), out, on_labels)``: a pipeline may run :meth:`infer` for
        the next frame while another thread runs :meth:`finish` for this one.
        """
        inferred = self.infer(image, color_order, outputs, resolution, alpha, upsample, label_space)
        return self.finish(inferred, out, on_labels)

    @torch.inference_mode()
    def infer(
        self,
        image: np.ndarray,
        color_order: str = "rgb",
        outputs: Iterable[str] = ("labels",),
        resolution: str = "input",
        alpha: float = 0.5,
        upsample: str = DEFAULT_UPSAMPLE,
        label_space: LabelSpace | None = None,
    ) -> "Inferred":
        """The first half of a call: pre-processing and the network (the arguments of :meth:`__call__`).

        On the CPU it ends with the labels (and confidence) as small arrays of its own, at network
        resolution (at the output's for ``upsample="bilinear"``); on CUDA it also computes the outputs.
        """
        image = validate_image(image)
        wanted = tuple(dict.fromkeys(_check_choice("outputs", o, OUTPUTS) for o in outputs))
        if label_space is not None and label_space.needs_confidence and "confidence" not in wanted:
            wanted += ("confidence",)  # the threshold reads it
        post = _Post(
            wanted=wanted,
            resolution=_check_choice("resolution", resolution, RESOLUTIONS),
            alpha=float(alpha),
            color_order=_check_choice("color_order", color_order, COLOR_ORDERS),
            upsample=_check_choice("upsample", upsample, UPSAMPLE_MODES),
            label_space=label_space,
        )
        if not 0.0 <= post.alpha <= 1.0:
            raise ValueError(f"alpha={alpha} must be within 0..1 (0: input only, 1: mask only)")
        if self.device.type == "cuda":
            return self._infer_cuda(image, post)
        t0 = time.perf_counter()
        x = self._preprocess_cpu(image, post.color_order)
        t1 = time.perf_counter()
        out_hw = self._output_hw(image, post.resolution)
        want_conf = "confidence" in post.wanted
        if self.backend.fused_head and (post.upsample == "nearest" or out_hw == self.input_size[::-1]):
            labels, conf = self.backend.labels(x, want_conf)  # argmax (and confidence) in the backend's graph
            labels, conf = labels.copy(), (conf.copy() if want_conf else None)
            t2 = t3 = time.perf_counter()
        else:
            logits = self.backend(x)
            t2 = time.perf_counter()
            labels, conf = self._argmax_cpu(logits[0].float(), out_hw, post.upsample, want_conf)
            t3 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return Inferred(image, post, labels, conf, None, timings)

    def _output_hw(self, image: np.ndarray, resolution: str) -> tuple[int, int]:
        """``(H, W)`` of the outputs: the image's (``resolution="input"``) or the network's."""
        return tuple(image.shape[:2]) if resolution == "input" else self.input_size[::-1]

    def _argmax_cpu(self, lg: torch.Tensor, out_hw: tuple[int, int], upsample: str,
                    want_conf: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """CPU logits ``(C,h,w)`` -> new ``(labels, confidence or None)`` arrays (bilinear: at ``out_hw``)."""
        buf = self._cpu
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
                conf[...] = (1.0 / torch.exp(lg - lg.amax(0, keepdim=True)).sum(0)).mul(255.0).round_().to(torch.uint8).numpy()
        return labels, conf

    def _infer_cuda(self, image: np.ndarray, post: "_Post") -> "Inferred":
        """CUDA: everything on the device, then one packed copy of the requested outputs to the host."""
        t0 = time.perf_counter()
        src = self._upload(image)
        x = self.preprocess(src, post.color_order)
        torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        logits = self.backend(x)
        torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        host = postprocess_on_device(logits, src, self._palette, wanted=post.wanted, resolution=post.resolution,
                                     upsample=post.upsample, alpha=post.alpha, color_order=post.color_order)
        timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                   "postprocess": (time.perf_counter() - t2) * 1e3}
        return Inferred(image, post, None, None, SegmentationResult(**host), timings)

    def finish(
        self,
        inferred: "Inferred",
        out: Mapping[str, np.ndarray] | None = None,
        on_labels: Callable[[np.ndarray], None] | None = None,
    ) -> SegmentationResult:
        """The second half of a call: the outputs at their size (``out`` and ``on_labels`` as in :meth:`__call__`)."""
        t0 = time.perf_counter()
        into = dict(out or {})
        post = inferred.post
        if inferred.result is not None and post.label_space is not None:  # CUDA: redrawn on the host
            post.label_space.relabel(inferred.result, inferred.image, post.resolution, post.color_order, post.alpha)
        result = inferred.result if inferred.result is not None else self._finish_cpu(inferred, into, on_labels)
        _deliver(result, into)
        if inferred.result is not None and on_labels is not None and result.labels is not None:
            on_labels(result.labels)
        timings = dict(inferred.timings_ms)
        timings["postprocess"] += (time.perf_counter() - t0) * 1e3
        result.timings_ms = timings
        return result

    def _finish_cpu(self, inferred: "Inferred", into: dict[str, np.ndarray],
                    on_labels: Callable[[np.ndarray], None] | None) -> SegmentationResult:
        """CPU: labels, confidence, color and overlay at the output's size, computed into ``into`` where it fits."""
        buf, post, image = self._cpu_finish, inferred.post, inferred.image
        out_hw = self._output_hw(image, post.resolution)
        into = {k: v for k, v in into.items() if k in post.wanted and _fits(v, k, out_hw)}
        out: dict[str, np.ndarray] = {}
        space, palette = post.label_space, self._palette_np
        if space is not None:  # at the labels' own size, before they are upsampled
            inferred.labels, palette = space.apply(inferred.labels, inferred.confidence), space.palette
        labels = resize_nearest(inferred.labels, out_hw, buf, into.get("labels"))
        if "labels" in post.wanted:
            out["labels"] = labels
            if on_labels is not None:
                on_labels(labels)
        if inferred.confidence is not None:
            out["confidence"] = resize_nearest(inferred.confidence, out_hw, buf, into.get("confidence"))
        if "color" in post.wanted or "overlay" in post.wanted:
            # palette at the labels' own size, then the nearest maps: equals palette[labels]
            color = resize_nearest(np.take(palette, inferred.labels, axis=0), out_hw, buf, into.get("color"))
            if "color" in post.wanted:
                out["color"] = color
            if "overlay" in post.wanted:
                base = image if post.resolution == "input" else resize_image(torch.from_numpy(image), out_hw).numpy()
                mask = cv2.cvtColor(color, cv2.COLOR_RGB2BGR) if post.color_order == "bgr" else color
                out["overlay"] = blend(np.ascontiguousarray(base), mask, post.alpha, buf, into.get("overlay"))
        return SegmentationResult(**out)


@dataclasses.dataclass(frozen=True)
class _Post:
    """One call's post-processing choices."""

    wanted: tuple[str, ...]
    resolution: str
    alpha: float
    color_order: str
    upsample: str
    label_space: LabelSpace | None = None


@dataclasses.dataclass
class Inferred:
    """What :meth:`Segmenter.infer` hands to :meth:`Segmenter.finish`: the image, the call's choices,
    and the labels/confidence of its own (CPU) or the finished outputs (CUDA)."""

    image: np.ndarray
    post: _Post
    labels: np.ndarray | None
    confidence: np.ndarray | None
    result: SegmentationResult | None
    timings_ms: dict[str, float]


def _fits(dest: np.ndarray, name: str, hw: tuple[int, ...]) -> bool:
    """Whether ``dest`` can take output ``name`` at size ``hw`` (else :func:`_deliver` names the problem)."""
    shape = tuple(hw) + ((3,) if name in ("color", "overlay") else ())
    return dest.shape == shape and dest.dtype == np.uint8 and dest.flags.c_contiguous and dest.flags.writeable


def _deliver(result: SegmentationResult, into: Mapping[str, np.ndarray]) -> None:
    """Put each computed output into its ``into`` array (a no-op for those computed there)."""
    for name, dest in into.items():
        got = getattr(result, name, None)
        if got is None or got is dest:
            continue
        if not _fits(dest, name, got.shape[:2]):
            raise ValueError(f"out[{name!r}] is {dest.shape} {dest.dtype}; pass a writable C-contiguous uint8 array "
                             f"of shape {got.shape}")
        np.copyto(dest, got)
        setattr(result, name, dest)
