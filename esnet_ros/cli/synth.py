"""``esnet synth --out DIR --train N --val M --seed S [--size 2048x1024]``: synthetic street scenes in
the Cityscapes layout (see :mod:`esnet_ros.data.synth`)."""

from __future__ import annotations

import argparse
import logging
import time

from esnet_ros.data.synth import parse_size, write_dataset

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (Cityscapes layout)")
    parser.add_argument("--train", type=int, default=100, help="number of training scenes")
    parser.add_argument("--val", type=int, default=20, help="number of validation scenes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (scenes are deterministic per seed)")
    parser.add_argument("--size", default="2048x1024", help="image size WIDTHxHEIGHT (default 2048x1024)")


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    start = time.perf_counter()
    counts = write_dataset(args.out, train=args.train, val=args.val, seed=args.seed, size=size)
    log.info("wrote %d train + %d val scenes (%dx%d) to %s in %.1f s", counts["train"], counts["val"],
             size[0], size[1], args.out, time.perf_counter() - start)
    return 0
