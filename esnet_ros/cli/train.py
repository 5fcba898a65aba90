"""``esnet train``: argument parsing over :func:`esnet_ros.training.train.main` (the paper's recipe by default).

``torchrun --nproc_per_node N -m esnet_ros.cli train ...`` runs it distributed.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from esnet_ros.data.datasets import LABEL_KINDS
from esnet_ros.training.train import main

__all__ = ["add_arguments", "get_args_parser", "run", "argument_defaults"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    _add_dataset_arguments(data)
    _add_augmentation_arguments(data)
    _add_loading_arguments(data)
    _add_optimization_arguments(parser.add_argument_group("optimization (the paper's recipe by default)"))
    _add_run_arguments(parser.add_argument_group("run"))


def _add_dataset_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--data", required=True, help="dataset folder (Cityscapes layout, or images/ + labels/)")
    group.add_argument(
        "--labels",
        default=None,
        help="labels YAML of a custom dataset (default: Cityscapes' 19 classes, or DATA/labels.yaml)",
    )
    group.add_argument(
        "--label-kind",
        default="labelIds",
        choices=LABEL_KINDS,
        help="Cityscapes layout: read *_gtFine_labelIds.png (mapped to train ids) or *_labelTrainIds.png",
    )
    group.add_argument("--train-split", default="train")
    group.add_argument("--val-split", default="val", help="validation split ('' for none)")
    group.add_argument("--input-size", default="1024x512", help="network input WIDTHxHEIGHT (multiples of 8)")


def _add_augmentation_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--crop-size",
        default=None,
        help="train on random WIDTHxHEIGHT windows of the resized images (default: whole images)",
    )
    group.add_argument(
        "--scale-range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="rescale each resized image by a random factor in [LOW, HIGH], then crop --crop-size "
        "(default: the input size) from it; e.g. 0.5 2.0 (default: no scaling)",
    )
    group.add_argument(
        "--photometric",
        type=float,
        default=0.0,
        help="strength of brightness/contrast/saturation/hue/gamma jitter (0: off, 1: the usual ranges)",
    )
    group.add_argument(
        "--degrade",
        type=float,
        default=0.0,
        help="probability of blur, sensor noise or JPEG (quality 40..90) per image (0: off)",
    )
    group.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    group.add_argument("--translate", type=int, default=2, help="max random translation in pixels (0: none)")


def _add_loading_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--cache", action="store_true", help="keep the training set in memory at the input size (small datasets)"
    )
    group.add_argument(
        "--max-train-images", type=int, default=0, help="use only the first N training images (0: all; for quick runs)"
    )
    group.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per training process")


def _add_optimization_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--epochs", type=int, default=150, help="epochs of the full network")
    group.add_argument(
        "--encoder-epochs",
        type=int,
        default=0,
        help="two-stage training: first this many epochs of the encoder alone (1/8 labels)",
    )
    group.add_argument("--batch-size", type=int, default=4, help="images per process and step")
    group.add_argument("--lr", type=float, default=5e-4)
    group.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999))
    group.add_argument("--eps", type=float, default=1e-8)
    group.add_argument("--weight-decay", type=float, default=1e-4)
    group.add_argument("--poly-power", type=float, default=0.9)
    group.add_argument(
        "--class-weights",
        default="enet",
        help="'enet' (1/ln(c+p) from the training labels), 'none', or C comma-separated weights",
    )
    group.add_argument("--enet-c", type=float, default=1.10, help="c of the ENet class-weight formula")


def _add_run_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--output-dir", required=True, help="folder for checkpoints, logs and curves")
    group.add_argument("--resume", default=None, help="checkpoint.pth of an earlier run to continue")
    group.add_argument(
        "--init-weights",
        default=None,
        help="start from these model weights (.safetensors/.pt) with a fresh optimizer and schedule: "
        "fine-tuning; with another class count every layer but the output head is copied "
        "(pretraining); the file's training commands are kept in the new metadata",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    group.add_argument(
        "--bf16",
        action="store_true",
        help="bfloat16 autocast instead of float16 AMP; on the CPU also channels_last. ~1.6x faster "
        "steps on CPUs with AMX or AVX512-BF16; on CUDA it needs Ampere or newer",
    )
    group.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: cores / processes)")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--eval-every", type=int, default=1, help="validate every N epochs (and after the last)")
    group.add_argument(
        "--val-at-input-size",
        action="store_true",
        help="validate against labels resized to the input (faster) instead of full resolution",
    )
    group.add_argument("--dataset-name", default=None, help="dataset name recorded in the checkpoint metadata")
    group.add_argument("--print-freq", type=int, default=20, help="log every N iterations")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esnet train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def argument_defaults() -> dict[str, Any]:
    """The parser's defaults (``--data``/``--output-dir`` filled in), for the recorded command."""
    return vars(get_args_parser().parse_args(["--data", "x", "--output-dir", "x"]))


def run(args: argparse.Namespace) -> int:
    try:
        main(args, argument_defaults())
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
