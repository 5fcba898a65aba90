"""OpenVINO backend: fp32, bf16 (AMX / AVX512-BF16) and int8 (NNCF) on the CPU, or OpenVINO's GPU.

The network comes from the same BN-folded ONNX export the ``onnxruntime`` backend uses (the export
cache, or the user's ``.onnx``).  Precisions:

- ``fp32``: ``INFERENCE_PRECISION_HINT=f32`` (set explicitly: on AMX CPUs OpenVINO defaults to bf16);
- ``bf16``: ``INFERENCE_PRECISION_HINT=bf16``; convs run on AMX tiles (OpenVINO keeps a few layers,
  e.g. the transposed convs, in fp32);
- ``int8``: post-training quantization with NNCF, calibrated on the user's images (the same image
  source and preprocessing as ``esnet export --int8``, :mod:`esnet_ros.inference.quantize`), or an int8
  QDQ ``.onnx`` from ``esnet export --int8`` run as is.  Layers NNCF leaves unquantized run in fp32.

Heads (:data:`HEADS`): one compiled model per kind of output, sharing one input buffer.

- ``labels`` and ``labels+confidence`` (what the engine runs for ``upsample="nearest"``): the argmax
  (a TopK over the channels) and the max softmax (``round(255 / sum exp(l - max))``) are part of the
  graph, so OpenVINO computes them in its blocked layout and returns ``(H,W)`` uint8 maps.  That skips
  the reorder of the 19-channel logits from OpenVINO's blocked layout to NCHW, which is memory-bound
  (15 ms at 1024x512): model + argmax bf16 72.8 -> 52.6 ms, int8 50.5 -> 31.8 ms at 1024x512, and the
  confidence adds 7 ms there (1.6 ms at 512x256); see docs/speed.md.
- ``logits`` (``upsample="bilinear"``, which needs the logits): NCHW by default, or channels-last with
  ``logits_layout="nhwc"`` (a ``(1,C,H,W)`` view of a ``(1,H,W,C)`` buffer).

Each head compiles in ~0.2 s, the first time it is used (the label heads at construction).

Compiled models are cached on disk (``export_model``/``import_model``) under
``<cache>/openvino/esnet-<onnx digest>-<W>x<H>-<precision>[-cal<digest>][-nhwc]-<head>-<DEVICE>-ov<version>.blob``
with a SHA-256 beside each blob; a blob whose checksum does not match (or that OpenVINO cannot import)
is rebuilt, never trusted.  For int8 the blobs hold the NNCF calibration, so a restart neither
quantizes nor compiles again (a missing head quantizes once more).

Threads: ``num_threads`` (0 = every core) sets ``INFERENCE_NUM_THREADS``; threads are not pinned to
cores (``ENABLE_CPU_PINNING=False``: on a shared robot CPU pinned threads wait for a busy core instead
of moving).  OpenVINO's CPU plugin has no spin setting; its TBB workers sleep when idle.

Device: ``ov_device="GPU"`` (or ``GPU.0``, ...) runs the network on Intel graphics through OpenVINO's
GPU plugin (needs the Intel compute runtime, ``intel-opencl-icd``); fp32 and int8 only there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from esnet_ros.core.image_files import calibration_images
from esnet_ros.inference.backend_base import Backend, cache_dir, file_digest
from esnet_ros.inference.devices import openvino_version, thread_count

__all__ = ["OpenVinoBackend", "CALIBRATION_IMAGES", "HEADS", "calibration_digest", "quantize_int8", "with_head"]

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 32
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: what NNCF left unquantized runs in f32
#: the outputs a compiled model can end in (see the module docstring)
HEADS = ("logits", "labels", "labels+confidence")
_HEAD_TAGS = {"logits": "logits", "labels": "labels", "labels+confidence": "labelsconf"}


def calibration_digest(files: list[pathlib.Path]) -> str:
    """A short digest of a calibration set (file names, sizes and modification times)."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:12]


def quantize_int8(model: Any, meta: Mapping[str, Any], files: list[pathlib.Path], size: tuple[int, int]) -> Any:
    """NNCF post-training quantization of an ``openvino.Model`` on ``files`` (preprocessed as the engine does)."""
    try:
        import nncf
    except ImportError as exc:
        raise ValueError("precision=int8 on backend=openvino needs NNCF: pip install nncf") from exc
    from esnet_ros.inference.quantize import calibration_input

    dataset = nncf.Dataset(files, lambda path: calibration_input(path, meta, size))
    log.info("quantizing to int8 with NNCF on %d calibration images (once; later starts reuse the cache)", len(files))
    return nncf.quantize(model, dataset, subset_size=len(files), preset=nncf.QuantizationPreset.MIXED)


def _is_quantized(model: Any) -> bool:
    """True for a model that already holds int8 ops (e.g. a QDQ .onnx from ``esnet export --int8``)."""
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


class _Compiled:
    """One compiled head: its infer request, reading the backend's shared input array."""

    def __init__(self, compiled: Any, cache_hit: bool, blob: pathlib.Path, shared_input: np.ndarray) -> None:
        import openvino as ov

        self.compiled, self.cache_hit, self.blob = compiled, cache_hit, blob
        self.request = compiled.create_infer_request()
        self.request.set_input_tensor(ov.Tensor(shared_input, shared_memory=True))

    def outputs(self) -> list[np.ndarray]:
        self.request.infer()
        return [self.request.get_output_tensor(i).data for i in range(len(self.compiled.outputs))]


class OpenVinoBackend(Backend):
    """An ONNX model compiled by OpenVINO.

    Args:
        onnx_path: the fp32 (or int8 QDQ) ONNX model.
        device: the engine's device (the CPU: pre- and post-processing run there).
        precision: ``fp32``, ``bf16`` or ``int8``.
        input_size: the network input ``(W, H)``.
        meta: the model's metadata (normalization for int8 calibration).
        ov_device: OpenVINO's device: ``CPU`` (default), ``GPU``, ``GPU.1``, ...
        num_threads: CPU inference threads (0 = every core).
        cache: the cache folder (default :func:`~esnet_ros.inference.backend_base.cache_dir`).
        calibration_dir: images for int8 calibration (searched recursively, like ``esnet export --int8``).
        calibration_images: how many of them (spread evenly over the sorted list).
        logits_layout: ``nchw`` (default) or ``nhwc`` (channels-last logits, see the module docstring).

    ``backend(x)`` returns the logits; :meth:`labels` the argmax (and confidence) computed in the graph.
    ``blob``/``cache_hit`` describe the ``labels`` head; ``blobs`` lists every head compiled so far.
    """

    name = "openvino"
    fused_head = True

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        device: torch.device,
        precision: str,
        input_size: tuple[int, int],
        *,
        meta: Mapping[str, Any] | None = None,
        ov_device: str = "CPU",
        num_threads: int = 0,
        cache: str | os.PathLike | None = None,
        calibration_dir: str | os.PathLike | None = None,
        calibration_images: int = CALIBRATION_IMAGES,
        logits_layout: str = "nchw",
    ) -> None:
        super().__init__(device, precision)
        import openvino as ov

        self.path = pathlib.Path(onnx_path)
        self.core = ov.Core()
        self.ov_device = self._check_device(str(ov_device).strip().upper(), precision)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.meta = meta
        self.logits_layout = str(logits_layout).strip().lower()
        if self.logits_layout not in ("nchw", "nhwc"):
            raise ValueError(f"logits_layout={logits_layout!r} must be one of: nchw, nhwc")
        self.calibration = self._calibration_files(calibration_dir, calibration_images) if precision == "int8" else None
        self.config = self._config(num_threads)
        self._folder = cache_dir(cache) / "openvino"
        self._folder.mkdir(parents=True, exist_ok=True)
        w, h = self.input_size
        self._in_np = np.zeros((1, 3, h, w), np.float32)  # every head's input tensor
        self._in = torch.from_numpy(self._in_np)
        self._model: Any = None  # the network read (and quantized) once, for the heads compiled here
        cal = f"-cal{calibration_digest(self.calibration)}" if self.calibration else ""
        # the heads' common cache key: the ONNX file hashed once, not per head
        self._blob_key = f"esnet-{file_digest(self.path)}-{w}x{h}-{precision}{cal}"
        self._heads: dict[str, _Compiled] = {}
        labels = self._head("labels")
        self._head("labels+confidence")
        self.blob, self.cache_hit = labels.blob, labels.cache_hit
        self.variant = f"{self.ov_device} {precision}" + (" nhwc" if self.logits_layout == "nhwc" else "")
        log.info(
            "openvino %s on %s (%s), compiled model %s (%s)",
            ov.__version__,
            self.ov_device,
            precision,
            self.blob.name,
            "cache hit" if self.cache_hit else "compiled now",
        )

    # -- set-up ------------------------------------------------------------------------------------

    def _check_device(self, name: str, precision: str) -> str:
        available = list(self.core.available_devices)
        if name not in available and name.split(".")[0] not in {d.split(".")[0] for d in available}:
            hint = (
                " (Intel graphics need the compute runtime: apt-get install intel-opencl-icd)"
                if name.startswith("GPU")
                else ""
            )
            raise ValueError(
                f"ov_device={name!r} is not available to OpenVINO here (it sees: {', '.join(available)}){hint}; "
                f"use ov_device=CPU"
            )
        if name != "CPU" and precision == "bf16":
            raise ValueError(
                f"precision=bf16 is a CPU path (AMX/AVX512-BF16); on ov_device={name} use precision=fp32 or int8"
            )
        return name

    def _calibration_files(self, directory: str | os.PathLike | None, count: int) -> list[pathlib.Path] | None:
        if directory is None:
            return None  # an int8 .onnx needs none; checked in _read_model
        return calibration_images(directory, count)

    def _config(self, num_threads: int) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if self.ov_device == "CPU":
            config.update(
                INFERENCE_PRECISION_HINT=_HINTS[self.precision],
                INFERENCE_NUM_THREADS=thread_count(num_threads),
                ENABLE_CPU_PINNING=False,
                CPU_DENORMALS_OPTIMIZATION=True,  # flush denormals (ORT: 254 -> 194 ms on this model)
            )
        return config

    @property
    def blobs(self) -> dict[str, pathlib.Path]:
        """The cache file of each head compiled so far."""
        return {name: head.blob for name, head in self._heads.items()}

    def _blob_path(self, head: str) -> pathlib.Path:
        layout = "-nhwc" if self.logits_layout == "nhwc" and head == "logits" else ""
        return (
            self._folder / f"{self._blob_key}{layout}-{_HEAD_TAGS[head]}-{self.ov_device}-ov{openvino_version()}.blob"
        )

    def _read_model(self) -> Any:
        """The ONNX model at the fixed input size, quantized for int8 (once per backend)."""
        if self._model is not None:
            return self._model
        w, h = self.input_size
        model = self.core.read_model(str(self.path))
        if model.input(0).get_partial_shape().is_dynamic:
            model.reshape({model.input(0).get_any_name(): [1, 3, h, w]})
        shape = tuple(model.input(0).get_shape())
        if shape != (1, 3, h, w):
            raise ValueError(
                f"{self.path} takes input {shape} but input_size is {w}x{h}; "
                f"use input_size=({shape[3]}, {shape[2]}) or export with --dynamic"
            )
        quantized = _is_quantized(model)
        if self.precision == "int8" and not quantized:
            if self.calibration is None:
                raise ValueError(
                    "precision=int8 on backend=openvino needs calibration images: pass the backend option "
                    "calibration_dir=IMAGES (camera-like PNG/JPEG, e.g. `esnet synth` output), or an int8 .onnx "
                    "from `esnet export --int8 --calibration-dir IMAGES` as weights"
                )
            model = quantize_int8(model, self.meta, self.calibration, self.input_size)
        elif quantized and self.precision != "int8":
            log.warning("%s is int8-quantized: it runs in int8 whatever precision=%s says", self.path, self.precision)
        self._model = model
        return model

    def _head(self, head: str) -> _Compiled:
        """The compiled model ending in ``head``: from the cache when its checksum holds, else compiled now."""
        compiled = self._heads.get(head)
        if compiled is None:
            blob = self._blob_path(head)
            model = self._import(blob)
            hit = model is not None
            if not hit:
                model = self.core.compile_model(
                    with_head(self._read_model(), head, self.logits_layout), self.ov_device, self.config
                )
                self._store(model, blob)
            compiled = self._heads[head] = _Compiled(model, hit, blob, self._in_np)
        return compiled

    def _import(self, blob: pathlib.Path) -> Any:
        """The cached compiled model at ``blob`` when it exists and its checksum holds (else ``None``)."""
        digest = blob.with_suffix(".sha256")
        if not (blob.is_file() and digest.is_file()):
            return None
        data = blob.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest.read_text().strip():
            log.warning("the cached compiled model %s is corrupt (checksum mismatch); rebuilding it", blob)
            return None
        try:
            compiled = self.core.import_model(data, self.ov_device, self.config)
        except RuntimeError as exc:
            log.warning("cannot import the cached compiled model %s (%s); rebuilding it", blob, exc)
            return None
        return compiled

    def _store(self, compiled: Any, blob: pathlib.Path) -> None:
        """Write the blob and its checksum atomically (a crash never leaves a half blob trusted)."""
        exported = compiled.export_model()
        data = exported.getvalue() if hasattr(exported, "getvalue") else bytes(exported)
        tmp = blob.with_name(f".{blob.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, blob)
            blob.with_suffix(".sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
        except OSError as exc:  # a read-only cache: run uncached
            log.warning("cannot write the compiled model cache %s (%s); the next start compiles again", blob, exc)
            tmp.unlink(missing_ok=True)

    # -- inference ---------------------------------------------------------------------------------

    def input_buffer(self, shape: tuple[int, ...]) -> torch.Tensor | None:
        return self._in if tuple(self._in.shape) == tuple(shape) else None

    def _set_input(self, x: torch.Tensor) -> None:
        if tuple(x.shape) != tuple(self._in.shape):
            raise ValueError(f"openvino backend compiled for input {tuple(self._in.shape)}, got {tuple(x.shape)}")
        if x.data_ptr() != self._in.data_ptr():
            self._in.copy_(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._set_input(x)
        out = torch.from_numpy(self._head("logits").outputs()[0])
        return out.permute(0, 3, 1, 2) if self.logits_layout == "nhwc" else out  # (1,C,H,W) either way

    def labels(self, x: torch.Tensor, confidence: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``(labels, confidence or None)``: ``(H,W)`` uint8 maps at network resolution, computed in the
        graph (views of the backend's output buffers: valid until the next call)."""
        self._set_input(x)
        outputs = self._head("labels+confidence" if confidence else "labels").outputs()
        return outputs[0][0, 0], (outputs[1][0, 0] if confidence else None)

    def release(self) -> None:
        self._heads = {}
        self._model = None


def with_head(model: Any, head: str, logits_layout: str = "nchw") -> Any:
    """``model`` (ending in NCHW logits) ending in ``head`` instead (see :data:`HEADS`)."""
    if head not in HEADS:
        raise ValueError(f"head={head!r} must be one of: {', '.join(HEADS)}")
    if head == "logits":
        if logits_layout == "nchw":
            return model
        from openvino.preprocess import PrePostProcessor

        ppp = PrePostProcessor(model)
        ppp.output(0).tensor().set_layout(ov_layout("NHWC"))
        ppp.output(0).model().set_layout(ov_layout("NCHW"))
        return ppp.build()
    import openvino as ov
    from openvino import opset13 as ops

    logits = model.output(0).get_node().input_value(0)
    top = ops.topk(logits, ops.constant(np.int64(1)), axis=1, mode="max", sort="none", index_element_type="i32")
    outputs = [ops.convert(top.output(1), "u8")]  # (1,1,H,W) class ids
    if head == "labels+confidence":  # round(255 * max softmax) = round(255 / sum exp(l - max l))
        total = ops.reduce_sum(
            ops.exp(ops.subtract(logits, top.output(0))), ops.constant(np.int64([1])), keep_dims=True
        )
        outputs.append(ops.convert(ops.round(ops.divide(ops.constant(np.float32(255.0)), total), "half_to_even"), "u8"))
    return ov.Model([ops.result(o) for o in outputs], model.get_parameters(), f"esnet_{_HEAD_TAGS[head]}")


def ov_layout(text: str) -> Any:
    """``openvino.Layout(text)`` (kept apart so the module imports without OpenVINO)."""
    import openvino as ov

    return ov.Layout(text)
