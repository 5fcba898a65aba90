"""Typed model metadata: what a checkpoint (or an exported ONNX file) says about its model.

:class:`ModelMeta` travels with the weights (JSON under :data:`META_KEY` in a ``.safetensors``
header or in ONNX ``metadata_props``) and is the one source that training, the engine and int8
calibration read: the class list and palette, the network input size, and the pixel
:class:`Normalization` (``x = (pixel * scale - mean) / std`` in ``color_order``).

Older files may lack keys; :meth:`ModelMeta.from_dict` fills them here and only here, with these
documented defaults (each one it used is listed in ``assumed_defaults``):

- ``input_size``: 1024x512 (the paper's Cityscapes input, :data:`DEFAULT_INPUT_SIZE`);
- ``normalization``: pixel/255 in RGB order, no mean/std (the ERFNet lineage, :data:`DEFAULT_NORMALIZATION`);
- ``recipe``/``metrics``: empty; ``license``: ``"unknown"``.

A file without a class list is refused unless the caller supplies a :class:`LabelSet`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from esnet_ros.core.labels import LabelSet

__all__ = [
    "META_KEY",
    "ARCH",
    "ARCH_VERSION",
    "FORMAT",
    "FORMAT_VERSION",
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_NORMALIZATION",
    "COLOR_ORDERS",
    "Normalization",
    "ModelMeta",
    "as_meta",
]

#: The key our metadata is stored under (safetensors header and ONNX metadata_props).
META_KEY = "esnet_ros"
ARCH = "esnet"
ARCH_VERSION = 1
FORMAT = "esnet_ros"
FORMAT_VERSION = 1
DEFAULT_INPUT_SIZE = (1024, 512)
COLOR_ORDERS = ("rgb", "bgr")
# keys written by esnet export / quantization; kept as they are in ONNX files
_ONNX_KEYS = ("onnx_input_size", "onnx_dynamic", "onnx_bn_folded", "onnx_precision", "int8_calibration")


@dataclasses.dataclass(frozen=True)
class Normalization:
    """``x = (pixel * scale - mean) / std`` per channel, channels in ``color_order``."""

    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color_order: str = "rgb"

    def __post_init__(self) -> None:
        order = str(self.color_order).lower()
        if order not in COLOR_ORDERS:
            raise ValueError(f"normalization color_order={self.color_order!r} must be 'rgb' or 'bgr'")
        if len(self.mean) != 3 or len(self.std) != 3 or any(float(s) == 0 for s in self.std):
            raise ValueError(f"normalization mean and std need 3 values each, std non-zero; got {self}")
        object.__setattr__(self, "color_order", order)
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def gain_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """``(gain, bias)``, each ``(3,) float32``: ``x = pixel * gain + bias`` (the same affine map)."""
        std = np.asarray(self.std, np.float32)
        return (np.float32(self.scale) / std).astype(np.float32), (-np.asarray(self.mean, np.float32) / std)

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std), "color_order": self.color_order}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Normalization":
        missing = {"scale", "mean", "std", "color_order"} - set(d)
        if missing:
            raise ValueError(f"normalization {dict(d)} lacks {sorted(missing)}; give scale, mean, std and color_order")
        return cls(scale=d["scale"], mean=tuple(d["mean"]), std=tuple(d["std"]), color_order=d["color_order"])


DEFAULT_NORMALIZATION = Normalization()


@dataclasses.dataclass(frozen=True)
class ModelMeta:
    """Everything inference needs to use a model correctly, plus its provenance.

    ``labels`` (names, palette, raw ids; its ``name`` is the dataset), ``input_size`` ``(W, H)`` the
    network was trained at, ``normalization``, the training ``recipe`` and ``metrics``, ``license``.
    ``source`` is the file it was read from; ``onnx`` holds what an ONNX export recorded
    (``onnx_input_size``, ``onnx_precision``, ...); ``extra`` keeps keys this version does not know.
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
    source: str | None = None
    onnx_path: str | None = None
    onnx: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.labels, LabelSet):
            raise TypeError(f"ModelMeta.labels must be a LabelSet, got {type(self.labels).__name__}")
        if not isinstance(self.normalization, Normalization):
            raise TypeError(f"ModelMeta.normalization must be a Normalization, got {type(self.normalization).__name__}")
        w, h = (int(v) for v in self.input_size)
        object.__setattr__(self, "input_size", (w, h))
        object.__setattr__(self, "assumed_defaults", tuple(self.assumed_defaults))

    # -- views ------------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return self.labels.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.labels.names

    @property
    def dataset(self) -> str:
        return self.labels.name

    @property
    def onnx_input_size(self) -> tuple[int, int] | None:
        """The fixed ``(W, H)`` of an ONNX export (``None`` for checkpoints and dynamic exports)."""
        size = self.onnx.get("onnx_input_size")
        return (int(size[0]), int(size[1])) if size else None

    def replace(self, **changes: Any) -> "ModelMeta":
        return dataclasses.replace(self, **changes)

    # -- the stored format ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form stored in checkpoints and ONNX files (flat keys, as always)."""
        out = {
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
            **dict(self.onnx),
            **dict(self.extra),
        }
        if self.assumed_defaults:
            out["assumed_defaults"] = list(self.assumed_defaults)
        if self.source is not None:
            out["source"] = self.source
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, labels: LabelSet | None = None) -> "ModelMeta":
        """Read the stored form; missing keys get the module's documented defaults (and are listed)."""
        d = dict(d)
        assumed = list(d.pop("assumed_defaults", None) or [])
        if labels is None:
            if "class_names" not in d or "palette" not in d:
                raise ValueError(
                    "model metadata has no class list (class_names, palette); pass a labels file "
                    "(labels_file:=classes.yaml, see esnet_ros/core/labels.py)"
                )
            labels = LabelSet.from_meta(d)
        if "input_size" not in d:
            assumed.append(f"network input {DEFAULT_INPUT_SIZE[0]}x{DEFAULT_INPUT_SIZE[1]}")
        if "normalization" not in d:
            assumed.append("normalization pixel/255 in RGB order")
        known = {f.name for f in dataclasses.fields(cls)} | set(labels.to_meta()) | {"format", "format_version", "num_classes"}
        return cls(
            labels=labels,
            input_size=tuple(d.get("input_size") or DEFAULT_INPUT_SIZE),
            normalization=Normalization.from_dict(d["normalization"]) if "normalization" in d else DEFAULT_NORMALIZATION,
            recipe=dict(d.get("recipe") or {}),
            metrics=dict(d.get("metrics") or {}),
            license=str(d.get("license", "unknown")),
            arch=str(d.get("arch", ARCH)),
            arch_version=int(d.get("arch_version", ARCH_VERSION)),
            assumed_defaults=tuple(dict.fromkeys(assumed)),
            source=d.get("source"),
            onnx_path=d.get("onnx_path"),
            onnx={k: d[k] for k in _ONNX_KEYS if k in d},
            extra={k: v for k, v in d.items() if k not in known and k not in _ONNX_KEYS},
        )


def as_meta(meta: "ModelMeta | Mapping[str, Any]") -> ModelMeta:
    """``meta`` itself, or a stored-form mapping read with :meth:`ModelMeta.from_dict`."""
    if isinstance(meta, ModelMeta):
        return meta
    if isinstance(meta, Mapping):
        return ModelMeta.from_dict(meta)
    raise TypeError(f"model metadata must be a ModelMeta or a mapping, got {type(meta).__name__}")
