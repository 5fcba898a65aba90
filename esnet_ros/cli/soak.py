"""``esnet soak``: the node against the synthetic camera for minutes, watched (JSON report).

``esnet soak --minutes N --rate-hz R [--json out.json] [--width W --height H]``; exits 0 when the
targets hold, else 1.  See :mod:`esnet_ros.tooling.soak` for what it measures.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from esnet_ros.tooling.harness import interruptible, parse_camera_size
from esnet_ros.tooling.soak import SoakOptions, print_report, soak

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="soak duration in minutes, fractions allowed (default 10)"
    )
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera frame rate (default 30)")
    parser.add_argument("--json", default=None, help="write the report here as JSON")
    parser.add_argument("--width", type=int, default=512, help="network input width (default 512)")
    parser.add_argument("--height", type=int, default=256, help="network input height (default 256)")
    parser.add_argument(
        "--weights", default=None, help="checkpoint (default: the bundled CamVid model; `synthetic` names the demo's)"
    )
    parser.add_argument("--camera-size", default="1280x720", help="camera image size WxH (default 1280x720)")
    parser.add_argument(
        "--pool-size", type=int, default=6, help="distinct scenes the camera cycles through (default 6)"
    )
    parser.add_argument("--sample-s", type=float, default=2.0, help="seconds between RSS samples (default 2)")
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="warm-up excluded from the RSS growth (default: a quarter of the run, at most 60 s)",
    )
    parser.add_argument(
        "--max-rss-growth-mb", type=float, default=20.0, help="RSS growth target after warm-up (default 20)"
    )
    parser.add_argument(
        "--log-dir", default=None, help="folder for the camera's and node's logs (default: a temporary folder)"
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=120.0, help="seconds to wait for the first labels (default 120)"
    )


def run(args: argparse.Namespace) -> int:
    options = SoakOptions(
        minutes=args.minutes,
        rate_hz=args.rate_hz,
        width=args.width,
        height=args.height,
        weights=args.weights,
        camera_size=parse_camera_size(args.camera_size),
        pool_size=args.pool_size,
        sample_s=args.sample_s,
        warmup_s=args.warmup_s,
        max_rss_growth_mb=args.max_rss_growth_mb,
        log_dir=args.log_dir,
        startup_timeout=args.startup_timeout,
    )
    options.check()
    with interruptible():
        report = soak(options)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report, args.json)
    return 0 if report["passed"] else 1
