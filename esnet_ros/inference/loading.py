"""What the engine loads: a checkpoint, an exported ``.onnx``, or an in-memory model, and for
``precision=auto`` on the CPU the precision, backend and file to run (:mod:`~esnet_ros.inference.auto_precision`).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections.abc import Mapping
from typing import Any

import torch

from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights
from esnet_ros.core.labels import LabelSet
from esnet_ros.core.metadata import ModelMeta
from esnet_ros.inference.auto_precision import AutoChoice, choose_cpu_precision, int8_companion
from esnet_ros.inference.devices import cpu_isa, openvino_version
from esnet_ros.inference.onnx_export import read_onnx_metadata

__all__ = ["Loaded", "load_for_engine"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The network (``None`` for an ``.onnx`` file), its metadata, and the backend and precision to run it
    with (``auto`` left to :func:`~esnet_ros.inference.backends.create_backend` except on the CPU), and why."""

    model: torch.nn.Module | None
    meta: ModelMeta
    backend: str
    precision: str
    reason: str


def load_for_engine(
    weights: Any,
    backend: str,
    precision: str,
    device: torch.device,
    labels: LabelSet | None = None,
    options: Mapping[str, Any] | None = None,
) -> Loaded:
    """Load ``weights`` for a :class:`~esnet_ros.inference.segmenter.Segmenter` on ``device``.

    A checkpoint's int8 companion (``NAME_int8.onnx``) replaces it with ``precision=auto`` on the CPU
    where its validated loss allows (logged with the reason), and with an explicit ``precision=int8``
    unless the backend options bring their own int8 (``calibration_dir``, ``onnx_path``)."""
    model, meta, backend = _load(weights, backend, labels)
    asked = str(precision).strip().lower()
    companion = int8_companion(meta.source) if not meta.onnx_path else None
    if asked == "int8" and companion and not {"calibration_dir", "onnx_path"} & set(options or {}):
        log.info("precision=int8 runs the weights' int8 companion %s", companion)
        if str(backend).strip().lower() == "auto" and openvino_version():
            backend = "openvino"  # NNCF's QDQ layout: OpenVINO runs it faster than ONNX Runtime
        return Loaded(
            None,
            _companion_meta(companion, meta),
            backend,
            "int8",
            f"precision=int8 as asked: the weights' int8 companion {companion.name}",
        )
    auto = _auto_cpu_choice(precision, backend, device, meta)
    if auto is None:
        return Loaded(model, meta, backend, precision, f"precision={precision} as asked")
    log.info("precision=auto -> %s", auto.reason)
    if auto.weights is not None:  # the validated int8 companion replaces the fp32 weights
        model, meta = None, _companion_meta(auto.weights, meta)
    return Loaded(model, meta, auto.backend, auto.precision, auto.reason)


def _companion_meta(companion: pathlib.Path, meta: ModelMeta) -> ModelMeta:
    """The int8 companion's metadata, with the checkpoint's labels (a ``labels=`` override) and source."""
    return read_onnx_metadata(companion).replace(onnx_path=str(companion), labels=meta.labels, source=meta.source)


def _load(weights: Any, backend: str, labels: LabelSet | None) -> tuple[torch.nn.Module | None, ModelMeta, str]:
    """``(model or None for an .onnx file, metadata, backend)`` from what :class:`Segmenter` was given."""
    if isinstance(weights, tuple):
        model, meta = weights
        meta = meta if isinstance(meta, ModelMeta) else ModelMeta.from_dict(meta)
    else:
        path = resolve_weights(weights)
        if path.suffix == ".onnx":  # an exported model: metadata from its metadata_props
            model, meta = None, read_onnx_metadata(path).replace(onnx_path=str(path))
            if str(backend).strip().lower() in ("torch", "auto"):
                backend = "onnxruntime"
        else:
            model, meta = load_checkpoint(path, "cpu", labels=labels)
    num_classes = model.num_classes if model is not None else meta.num_classes
    if labels is not None:
        if labels.num_classes != num_classes:
            raise ValueError(
                f"the labels list {labels.num_classes} classes but the model predicts {num_classes}; "
                f"use a labels file with {num_classes} classes"
            )
        meta = meta.replace(labels=labels)
    return model, meta, backend


def _auto_cpu_choice(precision: str, backend: str, device: torch.device, meta: ModelMeta) -> AutoChoice | None:
    """``precision=auto`` on the CPU (:mod:`~esnet_ros.inference.auto_precision`); ``None`` for anything else."""
    if str(precision).strip().lower() != "auto" or device.type != "cpu" or meta.onnx_path:
        return None
    companion = int8_companion(meta.source)
    return choose_cpu_precision(
        cpu_isa(),
        openvino=bool(openvino_version()),
        backend=str(backend).strip().lower(),
        int8_meta=read_onnx_metadata(companion) if companion else None,
        int8_path=companion,
    )
