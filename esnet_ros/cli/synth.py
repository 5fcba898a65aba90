"""``esnet synth --out DIR --train N --val M --seed S [--size 2048x1024]``: synthetic street scenes in
the Cityscapes layout (see :mod:`esnet_ros.data.synth`).

``esnet synth --bag DIR --val M [--size 1280x720] [--rate-hz 10] [--storage mcap|sqlite3]`` records
the val scenes as a rosbag2 instead: ``/camera/image_raw`` (bgr8) and ``/camera/labels_gt`` (trainIds,
mono8) with the same stamps (see :func:`esnet_ros.ros.bag.record.write_synthetic_bag`)."""

from __future__ import annotations

import argparse
import logging
import time

from esnet_ros.core.sizes import parse_size
from esnet_ros.data.synth import write_dataset

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="output folder (Cityscapes layout)")
    parser.add_argument("--bag", default=None, help="record the --val scenes as a rosbag2 in this folder instead")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="--bag: frame rate of the recording")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="--bag: storage format")
    parser.add_argument("--train", type=int, default=100, help="number of training scenes")
    parser.add_argument("--val", type=int, default=20, help="number of validation scenes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (scenes are deterministic per seed)")
    parser.add_argument("--size", default="2048x1024", help="image size WIDTHxHEIGHT (default 2048x1024)")


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size, "--size", network=False)
    start = time.perf_counter()
    if args.bag:
        from esnet_ros.ros.bag.record import write_synthetic_bag  # rosbags: only for recordings

        path = write_synthetic_bag(
            args.bag, args.val, seed=args.seed, size=size, rate_hz=args.rate_hz, storage=args.storage
        )
        log.info(
            "recorded %d scenes (%dx%d, %.1f Hz) to %s in %.1f s",
            args.val,
            size[0],
            size[1],
            args.rate_hz,
            path,
            time.perf_counter() - start,
        )
        return 0
    if not args.out:
        raise ValueError("esnet synth needs --out DIR (a dataset) or --bag DIR (a recording)")
    counts = write_dataset(args.out, train=args.train, val=args.val, seed=args.seed, size=size)
    log.info(
        "wrote %d train + %d val scenes (%dx%d) to %s in %.1f s",
        counts["train"],
        counts["val"],
        size[0],
        size[1],
        args.out,
        time.perf_counter() - start,
    )
    return 0
