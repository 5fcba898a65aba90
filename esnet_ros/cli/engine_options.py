"""The engine's options, shared by every command that runs it (predict, evaluate, bag).

Names and defaults are the node's parameters of the same names (``--device`` is ``device``,
``--num-threads`` is ``num_threads``, ...), so a command run with its defaults computes what the
node publishes with its defaults. ``test/cli/test_engine_options.py`` holds the two tables together.
"""

from __future__ import annotations

import argparse

from esnet_ros.core.labels import load_labels_yaml
from esnet_ros.core.model import parse_size
from esnet_ros.inference.backends import calibration_options
from esnet_ros.inference.defaults import DEFAULT_UPSAMPLE, ENGINE_DEFAULTS, UPSAMPLE_MODES
from esnet_ros.inference.devices import BACKENDS, PRECISIONS
from esnet_ros.inference.segmenter import Segmenter

# ENGINE_DEFAULTS (defined in esnet_ros/inference/defaults.py) is re-exported: the option defaults
__all__ = ["ENGINE_DEFAULTS", "add_engine_arguments", "build_segmenter"]


def add_engine_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("engine (the node's parameters of the same names and defaults)")
    group.add_argument(
        "--weights",
        default="",
        help="checkpoint or exported .onnx (default: the bundled CamVid model; `synthetic` names the demo's)",
    )
    group.add_argument("--labels", default=None, help="labels YAML overriding the checkpoint's class list")
    group.add_argument(
        "--input-size",
        default=None,
        help="network input WIDTHxHEIGHT (default: the size the checkpoint was trained at)",
    )
    group.add_argument("--device", default=ENGINE_DEFAULTS["device"], help="auto, cpu, cuda or cuda:N")
    group.add_argument(
        "--backend",
        default=ENGINE_DEFAULTS["backend"],
        choices=BACKENDS,
        help="inference backend; auto picks the fastest one that keeps accuracy (logged)",
    )
    group.add_argument(
        "--precision",
        default=ENGINE_DEFAULTS["precision"],
        choices=PRECISIONS,
        help="auto, fp32, fp16 (CUDA), bf16 (OpenVINO) or int8 (explicit only)",
    )
    group.add_argument(
        "--num-threads",
        type=int,
        default=ENGINE_DEFAULTS["num_threads"],
        help="CPU threads for inference (0: all cores)",
    )
    group.add_argument(
        "--int8-calibration-dir",
        default=ENGINE_DEFAULTS["int8_calibration_dir"],
        help="with --precision int8 --backend openvino: images NNCF calibrates on (once, cached)",
    )
    group.add_argument(
        "--upsample",
        default=ENGINE_DEFAULTS["upsample"],
        choices=UPSAMPLE_MODES,
        help=f"labels to the image's size: nearest (labels) or bilinear (logits); default {DEFAULT_UPSAMPLE}",
    )
    return group


def build_segmenter(args: argparse.Namespace) -> Segmenter:
    """The engine, built from the options as the node builds it from its parameters."""
    if args.num_threads < 0:
        raise ValueError(f"--num-threads {args.num_threads} must be >= 0 (0: all cores)")
    labels = load_labels_yaml(args.labels) if args.labels else None
    size = parse_size(args.input_size) if args.input_size else None
    return Segmenter(
        args.weights or None,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        num_threads=args.num_threads,
        input_size=size,
        labels=labels,
        backend_options=calibration_options(args.backend, args.int8_calibration_dir),
    )
