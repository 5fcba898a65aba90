"""The inference engine: one uint8 image in, the outputs you ask for out.

The node, ``esnet predict``, ``esnet evaluate`` and int8 calibration all run this class, so what
they write, score and calibrate on is what ``/esnet/labels`` carries.

:class:`Segmenter` loads the weights, builds the backend and picks, once, the pipeline of its device
(:mod:`esnet_ros.inference.pipelines`), to which every call goes: on CUDA all pre- and post-processing
is written in torch ops and runs on the GPU (resize, normalize, argmax, colorize and blend on the device,
one packed copy back) (:class:`~esnet_ros.inference.pipelines.CudaPipeline`); on the CPU the hot steps
take the cheaper routes of :mod:`esnet_ros.inference.cpu_ops`, with the same results
(:class:`~esnet_ros.inference.pipelines.CpuPipeline`). Buffers are allocated once per image size and
reused; only the returned arrays are new (or the caller's ``out`` arrays, which the CPU computes into).

How labels come back to the input's size is an explicit choice (:data:`UPSAMPLE_MODES`):

- ``nearest`` (:data:`DEFAULT_UPSAMPLE`): argmax at network resolution, then labels (and the
  confidence) upsampled by nearest neighbour: cheap, blocky edges;
- ``bilinear``: logits upsampled bilinearly to the input's size, then the argmax (and the
  confidence: the max softmax of the upsampled logits): what the Cityscapes benchmark scores,
  smoother edges, and it costs a C-plane resize and an argmax at full resolution.

The per-call options are :meth:`Segmenter.infer`'s; ``seg(image, ...)`` takes the same ones (plus
``out`` and ``on_labels``) and is ``seg.finish(seg.infer(image, ...), out, on_labels)``.

Example::

    seg = Segmenter("weights.safetensors", device="auto", input_size=(512, 256))
    out = seg(image_bgr, color_order="bgr", outputs=("labels", "overlay"), upsample="nearest")
    out.labels      # (H,W) uint8 class ids at input resolution
"""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from esnet_ros.core.labels import LabelSet
from esnet_ros.core.metadata import COLOR_ORDERS, ModelMeta
from esnet_ros.core.model import check_input_size
from esnet_ros.inference.backends import create_backend
from esnet_ros.inference.defaults import DEFAULT_UPSAMPLE, ENGINE_DEFAULTS, UPSAMPLE_MODES
from esnet_ros.inference.devices import resolve_device, resolve_precision
from esnet_ros.inference.label_space import LabelSpace
from esnet_ros.inference.loading import load_for_engine
from esnet_ros.inference.pipelines import (
    OUTPUTS,
    RESOLUTIONS,
    CallOptions,
    CpuPipeline,
    CudaPipeline,
    Inferred,
    SegmentationResult,
    check_choice,
)

__all__ = [
    "Segmenter",
    "SegmentationResult",
    "Inferred",
    "CallOptions",
    "OUTPUTS",
    "RESOLUTIONS",
    "UPSAMPLE_MODES",
    "DEFAULT_UPSAMPLE",
    "validate_image",
]

log = logging.getLogger(__name__)


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
    ``pipeline`` is the device's :class:`~esnet_ros.inference.pipelines.CpuPipeline` or
    :class:`~esnet_ros.inference.pipelines.CudaPipeline`, chosen here once.
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
        self.input_size = _network_size(meta, input_size, has_model=model is not None)
        self.backend = create_backend(
            backend,
            model,
            meta,
            self.device,
            precision,
            self.input_size,
            options=backend_options,
            num_threads=num_threads,
        )
        self.precision = self.backend.precision
        self.model_color_order = meta.normalization.color_order
        kind = CudaPipeline if self.device.type == "cuda" else CpuPipeline
        self.pipeline: CpuPipeline | CudaPipeline = kind(
            self.backend, meta.normalization, self.labels.palette(), self.input_size
        )
        log.info(
            "Segmenter: %s backend on %s (%s), network input %dx%d, %d classes (%s)",
            self.backend.name,
            self.device,
            self.precision,
            *self.input_size,
            self.labels.num_classes,
            self.labels.name,
        )

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    def release(self) -> None:
        """Free device memory (the node calls this on deactivate)."""
        self.backend.release()
        self.pipeline.release()

    def network_input(self, image: np.ndarray, color_order: str = "rgb") -> np.ndarray:
        """The ``(1,3,h,w)`` float32 array the network gets for ``image`` (a new array: int8 calibration)."""
        image = validate_image(image)
        return self.pipeline.network_input(image, check_choice("color_order", color_order, COLOR_ORDERS))

    # -- the call -----------------------------------------------------------------------------

    def __call__(
        self,
        image: np.ndarray,
        *options: Any,
        out: Mapping[str, np.ndarray] | None = None,
        on_labels: Callable[[np.ndarray], None] | None = None,
        **named_options: Any,
    ) -> SegmentationResult:
        """Segment one ``(H,W,3) uint8`` image: ``options`` are :meth:`infer`'s (``color_order``,
        ``outputs``, ``resolution``, ``alpha``, ``upsample``, ``label_space``), in its order or by name.

        ``out``: output name -> a C-contiguous array of the output's shape and dtype; the CPU
        path computes into it (e.g. a message's buffer), others copy into it; the result holds it.
        ``on_labels(labels)``: with ``labels`` among ``outputs``, called with them as soon as they exist (CPU:
        before the other outputs are computed, e.g. to publish them first; other devices: after all).

        The same as ``finish(infer(image, ...), out, on_labels)``: a pipeline may run :meth:`infer` for
        the next frame while another thread runs :meth:`finish` for this one.
        """
        return self.finish(self.infer(image, *options, **named_options), out, on_labels)

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
    ) -> Inferred:
        """The first half of a call: pre-processing and the network.

        ``color_order`` of ``image`` (:data:`~esnet_ros.core.metadata.COLOR_ORDERS`); ``outputs``: which to
        compute (see :data:`OUTPUTS`); ``resolution``: the outputs' size, the ``input``'s or the ``network``'s;
        ``alpha``: the overlay's weight of the mask (0..1); ``upsample`` (:data:`UPSAMPLE_MODES`): how labels
        reach the input's size when ``resolution="input"`` (at ``network`` both modes give the same result);
        ``label_space``: publish labels (and draw color/overlay) in this :class:`LabelSpace` (a remap, a
        confidence threshold) instead of the model's classes.

        On the CPU it ends with the labels (and confidence) as small arrays of its own, at network
        resolution (at the output's for ``upsample="bilinear"``); on CUDA it also computes the outputs.
        """
        image = validate_image(image)
        options = CallOptions.parse(
            color_order=color_order,
            outputs=outputs,
            resolution=resolution,
            alpha=alpha,
            upsample=upsample,
            label_space=label_space,
        )
        return self.pipeline.infer(image, options)

    def finish(
        self,
        inferred: Inferred,
        out: Mapping[str, np.ndarray] | None = None,
        on_labels: Callable[[np.ndarray], None] | None = None,
    ) -> SegmentationResult:
        """The second half of a call: the outputs at their size (``out`` and ``on_labels`` as in :meth:`__call__`)."""
        t0 = time.perf_counter()
        result = self.pipeline.finish(inferred, dict(out or {}), on_labels)
        timings = dict(inferred.timings_ms)
        timings["postprocess"] += (time.perf_counter() - t0) * 1e3
        result.timings_ms = timings
        return result


def _network_size(meta: ModelMeta, input_size: tuple[int, int] | None, has_model: bool) -> tuple[int, int]:
    """The network input ``(W, H)``: ``input_size``, else the checkpoint's (or the fixed-size ONNX file's)."""
    size = tuple(input_size) if input_size is not None else (meta.onnx_input_size or meta.input_size)
    check_input_size(int(size[0]), int(size[1]), what="network input")
    size = (int(size[0]), int(size[1]))
    fixed = meta.onnx_input_size
    if not has_model and fixed and tuple(fixed) != size:
        raise ValueError(
            f"{meta.onnx_path} was exported for {fixed[0]}x{fixed[1]} but input_size is "
            f"{size[0]}x{size[1]}; use input_size=({fixed[0]}, {fixed[1]}) or export with --dynamic"
        )
    return size
