"""ESNet checkpoints: our own format with metadata, and the authors' formats.

Our format is a ``.safetensors`` file whose header carries the metadata as JSON under the
key ``esnet_ros``.  ``.pt``/``.pth`` files (the authors' checkpoints, and our training-resume
files) are read with ``torch.load(weights_only=True)``: loading never executes code.

The authors' checkpoints come as a bare state_dict, as ``{'state_dict': ...}``, or with a
``module.`` prefix (DataParallel).  They carry no metadata, so these documented defaults are
assumed and logged: Cityscapes' 19 classes and palette, pixel/255 in RGB order (the ERFNet
lineage), a 1024x512 network input.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import torch

from esnet_ros.core.labels import LabelSet, cityscapes
from esnet_ros.core.metadata import (
    ARCH,
    ARCH_VERSION,
    DEFAULT_INPUT_SIZE,
    DEFAULT_NORMALIZATION,
    FORMAT,
    FORMAT_VERSION,
    META_KEY,
    ModelMeta,
    Normalization,
)
from esnet_ros.core.model import ESNet

__all__ = [
    "ARCH",
    "ARCH_VERSION",
    "FORMAT_VERSION",
    "DEFAULT_NORMALIZATION",
    "ModelMeta",
    "make_metadata",
    "save_checkpoint",
    "load_checkpoint",
    "load_state_dict_file",
    "demo_weights_path",
    "bundled_weights_path",
    "resolve_weights",
    "is_synthetic_only",
    "BUNDLED_WEIGHTS",
    "DEFAULT_WEIGHTS",
]

log = logging.getLogger(__name__)

_ENCODER_HEAD_PREFIX = "encoder_output_conv."


#: The models bundled in ``esnet_ros/weights/``, by the short name a user may give instead of a path.
BUNDLED_WEIGHTS = {
    "camvid": "esnet_camvid.safetensors",  # real street scenes (CamVid); the default
    "synthetic": "esnet_demo_synth.safetensors",  # our procedural streets: for the synthetic demo, not real cameras
}
#: What an empty ``weights`` means everywhere (node, launch file, CLIs).
DEFAULT_WEIGHTS = "camvid"


def bundled_weights_path(name: str) -> pathlib.Path:
    """The file of a bundled model by its short name (:data:`BUNDLED_WEIGHTS`)."""
    if name not in BUNDLED_WEIGHTS:
        raise ValueError(f"no bundled model {name!r}; bundled: {', '.join(BUNDLED_WEIGHTS)} (or give a file path)")
    return pathlib.Path(__file__).resolve().parents[1] / "weights" / BUNDLED_WEIGHTS[name]


def demo_weights_path() -> pathlib.Path:
    """The bundled synthetic model (trained by ``esnet train`` on synthetic scenes; not for real cameras)."""
    return bundled_weights_path("synthetic")


def resolve_weights(weights: str | pathlib.Path | None) -> pathlib.Path:
    """The weights file a user means: a bundled model's short name (``camvid``, ``synthetic``), empty for
    the default (:data:`DEFAULT_WEIGHTS`), or a path (``~`` expanded)."""
    if weights in (None, ""):
        return bundled_weights_path(DEFAULT_WEIGHTS)
    if str(weights) in BUNDLED_WEIGHTS:
        return bundled_weights_path(str(weights))
    return pathlib.Path(weights).expanduser()


def is_synthetic_only(meta: ModelMeta) -> bool:
    """True for a model trained on our procedural scenes only (the synthetic demo model): not for real cameras."""
    return meta.dataset == "synthetic-streets"


def make_metadata(
    labels: LabelSet,
    *,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    dataset: str | None = None,
    recipe: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    normalization: Normalization | Mapping[str, Any] | None = None,
    license: str = "MIT",
) -> ModelMeta:
    """Everything inference needs to use a model correctly, plus its provenance."""
    if normalization is None:
        normalization = DEFAULT_NORMALIZATION
    elif not isinstance(normalization, Normalization):
        normalization = Normalization.from_dict(normalization)
    if dataset is not None:  # recorded as the class list's name, which the file stores under "dataset"
        labels = dataclasses.replace(labels, name=dataset)
    return ModelMeta(
        labels=labels,
        input_size=tuple(input_size),
        normalization=normalization,
        recipe=dict(recipe or {}),
        metrics=dict(metrics or {}),
        license=license,
    )


#: Float weights smaller than this in magnitude are written as exact zeros (see save_checkpoint).
TINY_WEIGHT = 1e-12


def save_checkpoint(path: str | pathlib.Path, model: torch.nn.Module, meta: ModelMeta) -> pathlib.Path:
    """Write ``model``'s inference weights and ``meta`` to a ``.safetensors`` file.

    Float weights with ``|w| < TINY_WEIGHT`` are written as 0. Weight decay leaves the weights of
    dead channels decaying towards zero (a quarter of the demo model's weights were below 1e-30);
    their products with activations are denormal floats, which take x86 cores off the fast path:
    ONNX Runtime ran the demo model in 515 ms instead of ~230 ms at 1024x512. Their contribution
    to the logits is below float32 resolution.
    """
    from safetensors.torch import save_file

    path = pathlib.Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint writes .safetensors files, got {path}; rename it to {path.stem}.safetensors")
    model = getattr(model, "module", model)  # DDP / DataParallel
    state = {
        k: _zero_tiny(v.detach().cpu().contiguous())
        for k, v in model.state_dict().items()
        if not k.startswith(_ENCODER_HEAD_PREFIX)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp), metadata={META_KEY: json.dumps(meta.to_dict())})
    tmp.replace(path)  # never leave a half-written checkpoint behind
    return path


def _zero_tiny(t: torch.Tensor) -> torch.Tensor:
    if not t.is_floating_point():
        return t
    return torch.where(t.abs() < TINY_WEIGHT, torch.zeros((), dtype=t.dtype), t)


def load_state_dict_file(path: str | pathlib.Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read tensors and (if present) our metadata from a checkpoint file, never executing code."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist; pass an existing .safetensors/.pt file "
            f"(or a bundled model's name: {', '.join(BUNDLED_WEIGHTS)}; empty for {DEFAULT_WEIGHTS})"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"weights file {path} is empty (truncated download?); re-download or re-export it")
    with path.open("rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(path) or head[:2] == b"\x80\x02" or path.suffix in (".pt", ".pth"):
        return _load_torch_file(path)
    return _load_safetensors(path)


def _load_safetensors(path: pathlib.Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"weights file {path} is not a readable .safetensors or PyTorch file ({exc}); "
            f"it is corrupt or truncated: re-download or re-export it"
        ) from exc
    meta = json.loads(header[META_KEY]) if META_KEY in header else None
    return state, meta


def _load_torch_file(path: pathlib.Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"refusing to load {path}: it contains Python objects that could execute code when unpickled "
            f"({str(exc).splitlines()[0][:200]}). Only tensors and plain containers are accepted; "
            f"re-save it as a state_dict (torch.save(model.state_dict(), ...)) or as .safetensors"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"weights file {path} is corrupt or truncated ({str(exc).splitlines()[0][:200]}); "
            f"re-download or re-export it"
        ) from exc
    if not isinstance(obj, Mapping):
        raise ValueError(f"weights file {path} holds a {type(obj).__name__}, not a state_dict; save model.state_dict()")
    meta = obj.get("meta") if obj.get("format") == FORMAT else None
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"weights file {path} contains no tensors; is it an ESNet checkpoint?")
    return state, meta


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def _authors_meta(num_classes: int, labels: LabelSet | None) -> ModelMeta:
    assumed = []
    if labels is None:
        if num_classes != 19:
            raise ValueError(
                f"this checkpoint has {num_classes} classes and no metadata, so its class names are unknown; "
                f"pass a labels file (labels_file=classes.yaml, see esnet_ros/core/labels.py)"
            )
        labels = cityscapes()
        assumed.append("Cityscapes 19 classes and palette")
    assumed += [
        "normalization pixel/255 in RGB order",
        f"network input {DEFAULT_INPUT_SIZE[0]}x{DEFAULT_INPUT_SIZE[1]}",
    ]
    meta = make_metadata(labels, dataset=labels.name).replace(assumed_defaults=tuple(assumed))
    log.warning("checkpoint has no esnet_ros metadata (authors' format); assumed: %s", "; ".join(assumed))
    return meta


def load_checkpoint(
    path: str | pathlib.Path,
    device: str | torch.device = "cpu",
    *,
    labels: LabelSet | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
) -> tuple[ESNet, ModelMeta]:
    """Load ESNet weights: returns ``(model in eval mode on device, metadata)``.

    ``labels`` overrides the class list (needed for metadata-less checkpoints that are not
    Cityscapes); ``class_names`` only checks that the checkpoint matches the caller's list.
    """
    path = pathlib.Path(path)
    state, stored = load_state_dict_file(path)
    state = _strip_prefix(state)
    if stored is not None and stored.get("arch", ARCH) != ARCH:
        raise ValueError(
            f"{path} is a checkpoint of architecture {stored.get('arch')!r}, not {ARCH!r}; use ESNet weights"
        )
    num_classes = _num_classes(path, state)
    if labels is not None and labels.num_classes != num_classes:
        raise ValueError(
            f"{path} predicts {num_classes} classes but the class list has {labels.num_classes} "
            f"(labels {labels.name!r}): use a labels file with exactly {num_classes} classes"
        )
    if stored is None:
        meta = _authors_meta(num_classes, labels)
    else:
        meta = ModelMeta.from_dict(stored)
        if labels is not None:
            meta = meta.replace(labels=labels)
    if meta.num_classes != num_classes:
        raise ValueError(
            f"{path} predicts {num_classes} classes but the class list has {meta.num_classes}: "
            f"use a labels file with exactly {num_classes} classes"
        )
    if class_names is not None and list(class_names) != meta.class_names:
        raise ValueError(
            f"{path} predicts {num_classes} classes {meta.class_names[:5]}... but {len(class_names)} classes "
            f"{list(class_names)[:5]}... were requested; use weights trained on that class list"
        )
    state = {k: v for k, v in state.items() if not k.startswith(_ENCODER_HEAD_PREFIX)}
    model = ESNet(num_classes)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match ESNet({num_classes}): {len(missing)} missing keys {missing[:4]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:4]}; is it from another ESNet variant or model?"
        )
    return model.to(device).eval(), meta.replace(source=str(path))


def _num_classes(path: pathlib.Path, state: Mapping[str, torch.Tensor]) -> int:
    out_key = "decoder.output_conv.weight"
    if out_key not in state or "encoder.initial_block.conv.weight" not in state:
        some = ", ".join(list(state)[:3])
        raise ValueError(
            f"{path} is not an ESNet checkpoint (no {out_key!r}; its keys start with {some}); "
            f"use ESNet weights (see shared/reference/esnet_reference_state_dict_keys.tsv for the layout)"
        )
    return int(state[out_key].shape[1])
