"""The ``esnet`` command: one entry point, one subcommand per task.

Each subcommand lives in its own module, imported only when used, which defines
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

__all__ = ["main", "get_args_parser", "SUBCOMMANDS"]

SUBCOMMANDS = {
    "synth": ("esnet_ros.cli.synth", "generate synthetic street scenes in the Cityscapes layout"),
    "train": ("esnet_ros.cli.train", "train ESNet (the paper's recipe by default)"),
    "evaluate": ("esnet_ros.cli.evaluate", "mIoU, category mIoU, per-class IoU and a confusion matrix"),
    "predict": ("esnet_ros.cli.predict", "write predictions (labelIds, trainIds, color or overlay PNGs)"),
    "bundle": ("esnet_ros.cli.bundle", "a trained checkpoint as a model to ship, with data terms and evaluations"),
    "export": ("esnet_ros.cli.export", "export to ONNX with the checkpoint's metadata"),
    "bag": ("esnet_ros.cli.bag", "segment every frame of a rosbag2 recording (MCAP/sqlite3) into a new one"),
    "bench": ("esnet_ros.cli.bench", "benchmark the model and the node end to end (JSON)"),
    "soak": ("esnet_ros.cli.soak", "run the node against a synthetic camera for minutes (JSON)"),
    "demo": ("esnet_ros.cli.demo", "synthetic camera + segmentation node + live summary"),
}


def get_args_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to add its arguments (fast start-up)."""
    parser = argparse.ArgumentParser(prog="esnet", description="ESNet semantic segmentation for ROS 2")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if name == command:
            _add_module_arguments(p, module_name)
    return parser


def _add_module_arguments(parser: argparse.ArgumentParser, module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a subcommand whose optional dependency is missing
        parser.set_defaults(_import_error=f"{module_name}: {exc}")
        return
    module.add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = get_args_parser(command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if getattr(args, "_import_error", None):
        print(f"esnet {args.command}: cannot import {args._import_error}", file=sys.stderr)
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"esnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
