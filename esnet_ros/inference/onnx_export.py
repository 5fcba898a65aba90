"""ESNet to ONNX, BatchNorm folded, with the checkpoint's metadata inside (``esnet export``'s library).

The model's metadata (class names, palette, normalization, input size, ...) travels in the
ONNX ``metadata_props`` as JSON under the key ``esnet_ros`` (plus a few flat keys for tools
that only show strings), so an ``.onnx`` file is as self-describing as our ``.safetensors``.
Every export is checked with ``onnx.checker`` and, unless ``--no-verify``, ONNX Runtime's
logits are compared with PyTorch's (tolerance 1e-4).

Example::

    esnet export --weights esnet.safetensors --output esnet_1024x512.onnx --width 1024 --height 512
    esnet export --weights esnet.safetensors --output esnet.onnx --dynamic      # any H, W (multiples of 8)
    esnet export --weights w.pt --output esnet_int8.onnx --int8 --calibration-dir synth/leftImg8bit/train
"""

from __future__ import annotations

import json
import logging
import pathlib
import warnings
from typing import Any

import numpy as np
import torch

from esnet_ros.core.metadata import META_KEY, ModelMeta
from esnet_ros.core.model import ESNet, check_input_size
from esnet_ros.inference.fold import blocked_layout_downsamplers, fold_batchnorm

__all__ = ["export_onnx", "read_onnx_metadata", "write_onnx_metadata", "verify_onnx", "META_KEY", "OPSET"]

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
PARITY_TOL = 1e-4


def export_onnx(
    model: torch.nn.Module,
    meta: ModelMeta,
    output: str | pathlib.Path,
    *,
    input_size: tuple[int, int] | None = None,
    dynamic: bool = False,
    fold_bn: bool = True,
    fp16: bool = False,
    opset: int = OPSET,
    verify: bool = True,
) -> pathlib.Path:
    """Write ``model`` as ONNX (input ``input`` (N,3,H,W) float, output ``logits`` (N,C,H,W)).

    ``input_size`` defaults to ``meta.input_size``.  ``dynamic`` leaves N, H and W symbolic.
    ``fp16`` exports half weights and I/O (for ONNX Runtime's CUDA provider).  ``verify``
    compares ONNX Runtime with PyTorch (max |diff| <= 1e-4 for fp32) and raises ``ValueError``
    when they differ.  Returns the output path.
    """
    import onnx

    w, h = (int(v) for v in (input_size or meta.input_size))
    check_input_size(w, h, what="export input")
    output = pathlib.Path(output)
    if output.suffix != ".onnx":
        raise ValueError(f"--output {output} must end in .onnx; try {output.with_suffix('.onnx')}")
    net = blocked_layout_downsamplers(fold_batchnorm(model)) if fold_bn and isinstance(model, ESNet) else model
    net = net.eval().cpu()
    if fp16:
        net = net.half()
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    _trace(net, tmp, (w, h), torch.float16 if fp16 else torch.float32, dynamic, opset)
    proto = onnx.load(str(tmp))
    info = meta.replace(
        onnx_input_size=None if dynamic else (w, h),
        onnx_dynamic=bool(dynamic),
        onnx_bn_folded=bool(fold_bn),
        onnx_precision="fp16" if fp16 else "fp32",
    )
    _set_metadata(proto, info)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp))
    tmp.replace(output)
    if verify:
        verify_onnx(output, model, input_size=(w, h))
    return output


def _trace(
    net: torch.nn.Module, path: pathlib.Path, size: tuple[int, int], dtype: torch.dtype, dynamic: bool, opset: int
) -> None:
    w, h = size
    dummy = torch.rand(1, 3, h, w, dtype=dtype)
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings(), torch.inference_mode():
        # the TorchScript-based exporter: deprecated but exact for this plain conv net, fast, and
        # without onnxscript's extra dependencies; the tracer warnings are about static shapes
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(
            net,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes=axes if dynamic else None,
            do_constant_folding=True,
            dynamo=False,
        )


def _set_metadata(proto: Any, meta: ModelMeta) -> None:
    flat = {
        META_KEY: json.dumps(meta.to_dict(), default=str),
        "num_classes": str(meta.num_classes),
        "class_names": ",".join(meta.class_names),
        "normalization": json.dumps(meta.normalization.to_dict()),
    }
    del proto.metadata_props[:]
    for key, value in flat.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "esnet_ros"
    proto.doc_string = "ESNet semantic segmentation (Wang et al. 2019); input (N,3,H,W) normalized, output logits"


def write_onnx_metadata(path: str | pathlib.Path, meta: ModelMeta) -> None:
    """Replace the metadata stored in an ONNX file (e.g. after int8 quantization)."""
    import onnx

    proto = onnx.load(str(path))
    _set_metadata(proto, meta)
    onnx.save(proto, str(path))


def read_onnx_metadata(path: str | pathlib.Path) -> ModelMeta:
    """The esnet_ros metadata stored in an ONNX file (``ValueError`` if it has none)."""
    import onnx

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ONNX file {path} does not exist; make one with `esnet export --weights W --output {path}`"
        )
    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if META_KEY not in props:
        raise ValueError(
            f"{path} has no esnet_ros metadata (class names, normalization); export it with `esnet export`, "
            f"which stores them in metadata_props"
        )
    return ModelMeta.from_dict(json.loads(props[META_KEY]), source=str(path))


def verify_onnx(
    path: str | pathlib.Path,
    model: torch.nn.Module,
    *,
    input_size: tuple[int, int],
    tol: float = PARITY_TOL,
    seed: int = 0,
) -> float:
    """Max |ONNX Runtime - PyTorch| on a random input; ``ValueError`` if above ``tol``."""
    import onnxruntime as ort

    w, h = input_size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = x.numpy().astype(np.float16) if sess.get_inputs()[0].type == "tensor(float16)" else x.numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: feed})[0].astype(np.float32)
    with torch.inference_mode():
        ref = model.eval().float().cpu()(x).numpy()
    diff = float(np.abs(got - ref).max())
    limit = tol if feed.dtype == np.float32 else max(tol, 5e-2)
    if not diff <= limit:
        raise ValueError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} > {limit:g}; report this export bug")
    log.info("verified %s: max |onnxruntime - torch| = %.2e", path, diff)
    return diff
