"""``esnet demo``: a camera (synthetic scenes, or real frames with ``--images``) and the node over DDS, scored live.

``esnet demo [--seconds N] [--camera TOPIC] [--output demo_output] [--weights W] [--width --height]
[--rate-hz 30]``; see :mod:`esnet_ros.tooling.demo` for what it does and what it writes.
"""

from __future__ import annotations

import argparse

from esnet_ros.tooling.demo import run_demo
from esnet_ros.tooling.demo_setup import DemoOptions
from esnet_ros.tooling.harness import DEFAULT_CAMERA_RATE_HZ, parse_camera_size

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_camera_arguments(parser.add_argument_group("camera (default: the synthetic camera, scored live)"))
    _add_node_arguments(parser.add_argument_group("model and node"))
    _add_run_arguments(parser.add_argument_group("measurement and output"))


def _add_camera_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--camera",
        default=None,
        metavar="TOPIC",
        help="segment this real camera topic (sensor_msgs/Image) instead of the synthetic camera; no mIoU",
    )
    group.add_argument(
        "--camera-transport",
        choices=("raw", "compressed"),
        default="raw",
        help="with --camera: raw (sensor_msgs/Image on TOPIC) or compressed (CompressedImage on TOPIC/compressed)",
    )
    group.add_argument(
        "--images",
        default=None,
        metavar="DIR_OR_VIDEO",
        help="replay a folder of images (sorted by name) or a video file as the camera, through the "
        "node over DDS (default weights: the bundled CamVid model)",
    )
    group.add_argument(
        "--labels",
        default=None,
        metavar="DIR",
        help="with --images: label PNGs named like the images (e.g. CamVid/testannot), for a live mIoU",
    )
    group.add_argument(
        "--rate-hz",
        type=float,
        default=DEFAULT_CAMERA_RATE_HZ,
        help=f"synthetic camera frame rate (default {DEFAULT_CAMERA_RATE_HZ:g}); the summary shows "
        "the rate the node sustains against it",
    )
    group.add_argument(
        "--camera-size",
        default=None,
        help="camera image size WxH (default: 1280x720 synthetic scenes; --images: resized to this, "
        "labels nearest; default their own size)",
    )
    group.add_argument(
        "--pool-size", type=int, default=10, help="distinct synthetic scenes the camera cycles through (default 10)"
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes (default 0)")


def _add_node_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--weights",
        default=None,
        help="a bundled model (camvid, synthetic) or a checkpoint (default: synthetic for the synthetic "
        "camera, camvid for --images and --camera)",
    )
    group.add_argument(
        "--width", type=int, default=None, help="network input width (default: the checkpoint's input_size)"
    )
    group.add_argument(
        "--height", type=int, default=None, help="network input height (default: the checkpoint's input_size)"
    )
    group.add_argument(
        "--int8",
        action="store_true",
        help="run the node in int8 (OpenVINO, NNCF-calibrated once on synthetic scenes written to "
        "OUTPUT/calibration; cached for later runs)",
    )
    group.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="a node parameter, e.g. --param precision:=int8 --param num_threads:=1 (repeatable)",
    )


def _add_run_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--seconds", type=float, default=30.0, help="measuring time after the first labels (default 30)")
    group.add_argument(
        "--output", default="demo_output", help="folder for PNGs, summary.json and logs (default demo_output)"
    )
    group.add_argument(
        "--video-seconds",
        type=float,
        default=5.0,
        help="seconds of camera | classes | overlay in side_by_side.mp4 after the run (0: no video; default 5)",
    )
    group.add_argument(
        "--save-frames", type=int, default=5, help="overlay PNGs to write, spread over the run (default 5)"
    )
    group.add_argument(
        "--all-outputs",
        action="store_true",
        help="also subscribe to color, overlay and confidence while measuring (every output computed)",
    )
    group.add_argument(
        "--background-load",
        type=int,
        default=0,
        metavar="CORES",
        help="keep CORES cores busy with CPU hogs while measuring, as on a shared robot CPU (default 0)",
    )
    group.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the first labels (pool rendering + model loading; default 120)",
    )


def run(args: argparse.Namespace) -> int:
    options = DemoOptions(
        seconds=args.seconds,
        camera=args.camera,
        camera_transport=args.camera_transport,
        output=args.output,
        weights=args.weights,
        width=args.width,
        height=args.height,
        rate_hz=args.rate_hz,
        camera_size=parse_camera_size(args.camera_size) if args.camera_size else None,
        images=args.images,
        labels=args.labels,
        pool_size=args.pool_size,
        seed=args.seed,
        save_frames=args.save_frames,
        video_seconds=args.video_seconds,
        startup_timeout=args.startup_timeout,
        all_outputs=args.all_outputs,
        background_load=args.background_load,
        node_params=tuple(args.param),
        int8=args.int8,
    )
    return run_demo(options)
