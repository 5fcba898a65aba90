"""Typed model metadata: what inference needs to use a model correctly, plus its provenance.

A :class:`ModelMeta` travels with the weights (in the ``.safetensors`` header and in an exported
ONNX file's ``metadata_props``, as JSON under :data:`META_KEY`), in the spirit of timm's
``PretrainedCfg`` and torchvision's ``Weights.meta``.  Training builds its pixel normalization
from :attr:`ModelMeta.normalization`; the engine and int8 calibration read the same object.

Files written before a field existed load with these documented defaults, applied here and
nowhere else (:meth:`ModelMeta.from_dict`):

- ``input_size``: 1024x512 (the paper's Cityscapes input);
- ``normalization``: pixel/255 in RGB order, mean 0, std 1 (the ERFNet lineage);
- ``recipe``, ``metrics``: empty; ``license``: ``MIT``; ``dataset`` (the class list's name): ``custom``.

Example::

    meta = make_metadata(cityscapes(), input_size=(512, 256))      # esnet_ros.core.checkpoint
    x = meta.normalization.apply(pixels_rgb)                       # (N,3,H,W) float, model order
    ModelMeta.from_dict(meta.to_dict())                            # the same metadata again
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from esnet_ros.core.labels import LabelSet

__all__ = [
    "META_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "ARCH",
    "ARCH_VERSION",
    "DEFAULT_INPUT_SIZE",
    "COLOR_ORDERS",
    "Normalization",
    "DEFAULT_NORMALIZATION",
    "ModelMeta",
]

#: the key of our JSON metadata in a .safetensors header and in ONNX metadata_props
META_KEY = "esnet_ros"
FORMAT = "esnet_ros"
FORMAT_VERSION = 1
ARCH = "esnet"
ARCH_VERSION = 1
DEFAULT_INPUT_SIZE = (1024, 512)
COLOR_ORDERS = ("rgb", "bgr")


@dataclasses.dataclass(frozen=True)
class Normalization:
    """``x = (pixel * scale - mean) / std`` per channel, channels in ``color_order``."""

    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color_order: str = "rgb"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "color_order", str(self.color_order).lower())
        if self.color_order not in COLOR_ORDERS:
            raise ValueError(f"normalization color_order={self.color_order!r} must be 'rgb' or 'bgr'")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            raise ValueError(f"normalization mean and std need 3 values each, std non-zero; got {self}")

    def gain_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """``(gain, bias)``, float32 ``(3,)`` each: ``x = pixel * gain + bias`` in the model's order."""
        std = np.asarray(self.std, np.float32)
        return (np.float32(self.scale) / std).astype(np.float32), (-np.asarray(self.mean, np.float32) / std)

    def apply(self, pixels: torch.Tensor, color_order: str = "rgb") -> torch.Tensor:
        """``(N,3,H,W)`` or ``(3,H,W)`` pixels (any dtype) in ``color_order`` -> normalized float32, model order."""
        x = pixels.float()
        if str(color_order).lower() != self.color_order:
            x = x.flip(-3)
        gain, bias = (torch.from_numpy(v).to(x.device).view(3, 1, 1) for v in self.gain_bias())
        return x * gain + bias

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std), "color_order": self.color_order}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalization:
        missing = {"scale", "mean", "std", "color_order"} - set(d)
        if missing:
            raise ValueError(f"normalization {dict(d)} lacks {sorted(missing)}; give scale, mean, std and color_order")
        return cls(d["scale"], tuple(d["mean"]), tuple(d["std"]), d["color_order"])


DEFAULT_NORMALIZATION = Normalization()

#: keys written by ModelMeta.to_dict besides the label keys and the extras
_ONNX_FIELDS = (
    "onnx_input_size",
    "onnx_dynamic",
    "onnx_bn_folded",
    "onnx_precision",
    "int8_calibration",
    "int8_validation",
)
_MAPPING_FIELDS = ("int8_calibration", "int8_validation")


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """Everything inference needs to use a model correctly, plus its provenance.

    ``source`` and ``onnx_path`` say where this copy was loaded from; they are not written.
    ``extra`` keeps keys this version does not know, so that they survive a load and save.
    """

    labels: LabelSet
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    normalization: Normalization = DEFAULT_NORMALIZATION
    recipe: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    license: str = "MIT"
    arch: str = ARCH
    arch_version: int = ARCH_VERSION
    assumed_defaults: tuple[str, ...] = ()
    onnx_input_size: tuple[int, int] | None = None
    onnx_dynamic: bool | None = None
    onnx_bn_folded: bool | None = None
    onnx_precision: str | None = None
    int8_calibration: Mapping[str, Any] | None = None
    int8_validation: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: str | None = dataclasses.field(default=None, compare=False)
    onnx_path: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        w, h = (int(v) for v in self.input_size)
        object.__setattr__(self, "input_size", (w, h))
        if self.onnx_input_size is not None:
            object.__setattr__(self, "onnx_input_size", tuple(int(v) for v in self.onnx_input_size))
        if not isinstance(self.normalization, Normalization):
            object.__setattr__(self, "normalization", Normalization.from_dict(self.normalization))
        object.__setattr__(self, "assumed_defaults", tuple(self.assumed_defaults))

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    @property
    def dataset(self) -> str:
        """The dataset the model was trained on (stored as the class list's name)."""
        return self.labels.name

    @property
    def class_names(self) -> list[str]:
        return list(self.labels.names)

    def replace(self, **changes: Any) -> ModelMeta:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form stored in checkpoints and ONNX files."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "arch_version": self.arch_version,
            "num_classes": self.num_classes,
            **self.labels.to_meta(),
            "input_size": list(self.input_size),
            "normalization": self.normalization.to_dict(),
            "recipe": dict(self.recipe),
            "metrics": dict(self.metrics),
            "license": self.license,
        }
        if self.assumed_defaults:
            out["assumed_defaults"] = list(self.assumed_defaults)
        for key in _ONNX_FIELDS:
            value = getattr(self, key)
            if value is not None:
                out[key] = (
                    list(value) if isinstance(value, tuple) else (dict(value) if key in _MAPPING_FIELDS else value)
                )
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str | None = None) -> ModelMeta:
        """Read :meth:`to_dict`'s form; missing fields take the module's documented defaults."""
        if "class_names" not in d or "palette" not in d:
            raise ValueError(
                f"model metadata lacks class_names/palette (keys: {sorted(d)[:8]}); re-save the checkpoint"
            )
        labels = LabelSet.from_meta(dict(d))
        if int(d.get("num_classes", labels.num_classes)) != labels.num_classes:
            raise ValueError(f"metadata says {d['num_classes']} classes but lists {labels.num_classes} class names")
        known = (
            {f.name for f in dataclasses.fields(cls)}
            | set(labels.to_meta())
            | {"format", "format_version", "num_classes"}
        )
        return cls(
            labels=labels,
            input_size=tuple(d.get("input_size") or DEFAULT_INPUT_SIZE),
            normalization=Normalization.from_dict(d["normalization"])
            if d.get("normalization")
            else DEFAULT_NORMALIZATION,
            recipe=dict(d.get("recipe") or {}),
            metrics=dict(d.get("metrics") or {}),
            license=str(d.get("license", "MIT")),
            arch=str(d.get("arch", ARCH)),
            arch_version=int(d.get("arch_version", ARCH_VERSION)),
            assumed_defaults=tuple(d.get("assumed_defaults") or ()),
            **{key: d.get(key) for key in _ONNX_FIELDS},
            extra={k: v for k, v in d.items() if k not in known},
            source=source if source is not None else d.get("source"),
            onnx_path=d.get("onnx_path"),
        )
