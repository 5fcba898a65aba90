"""``esnet bag INPUT --output OUTPUT``: segment every frame of a rosbag2 recording (MCAP or sqlite3) offline.

    esnet bag drive/ --output drive_seg/ [--topic /camera/image_raw] [--json run.json] [--video overlay.mp4]
    esnet bag --bench [--bench-size 1280x720] [--bench-frames 60] [--outputs labels,stats]  # vs. the model alone

Writes a new recording with /esnet/labels, /esnet/color, /esnet/overlay, /esnet/confidence and
/esnet/stats (the node's messages for the same frames and settings), see :mod:`esnet_ros.ros.bag`.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib

from esnet_ros.cli.engine_options import add_engine_arguments, build_segmenter
from esnet_ros.core.sizes import parse_size
from esnet_ros.inference.segmenter import RESOLUTIONS
from esnet_ros.ros.bag import OUTPUT_NAMES, STORAGES, VIDEO_STREAMS, BagJob, format_summary

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", help="rosbag2 directory (metadata.yaml) or a .mcap / .db3 file")
    parser.add_argument("--output", "-o", help="output bag directory (written under a temporary name, then renamed)")
    parser.add_argument(
        "--topic", default=None, help="image topic (default: the bag's only Image/CompressedImage topic)"
    )
    parser.add_argument("--outputs", default=",".join(OUTPUT_NAMES), help=f"comma list of: {', '.join(OUTPUT_NAMES)}")
    parser.add_argument(
        "--copy-topics",
        nargs="*",
        default=None,
        metavar="TOPIC",
        help="also copy these input topics into the output (no names: every topic)",
    )
    parser.add_argument(
        "--storage", choices=tuple(STORAGES), default=None, help="output storage (default: the input's)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--json", default=None, help="write the summary to this JSON file")
    parser.add_argument("--video", default=None, help="also write a video (.mp4, .avi, .mkv, .mov)")
    parser.add_argument("--video-stream", choices=VIDEO_STREAMS, default="overlay", help="what the video shows")
    parser.add_argument("--video-fps", type=float, default=None, help="video frame rate (default: the recording's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    engine = add_engine_arguments(parser)
    engine.add_argument("--output-resolution", choices=RESOLUTIONS, default="input")
    engine.add_argument("--overlay-alpha", type=float, default=0.5, help="0 = camera image only, 1 = class colors only")
    engine.add_argument("--max-input-pixels", type=int, default=BagJob.max_input_pixels)
    bench = parser.add_argument_group("benchmark")
    bench.add_argument("--bench", action="store_true", help="time esnet bag against the model alone (JSON)")
    bench.add_argument("--bench-size", default="1280x720", help="camera frame WIDTHxHEIGHT for --bench")
    bench.add_argument("--bench-frames", type=int, default=60, help="frames in the benchmark's recording")


def _job(args: argparse.Namespace) -> BagJob:
    if not args.input or not args.output:
        raise ValueError("esnet bag needs INPUT and --output OUTPUT, e.g. esnet bag drive/ --output drive_seg/")
    if not 0.0 <= args.overlay_alpha <= 1.0:
        raise ValueError(f"--overlay-alpha {args.overlay_alpha} must be within 0..1")
    copies = None if args.copy_topics is None else (tuple(args.copy_topics) or ("*",))
    return BagJob(
        input=pathlib.Path(args.input),
        output=pathlib.Path(args.output),
        topic=args.topic,
        outputs=tuple(o.strip() for o in args.outputs.split(",") if o.strip()),
        copy_topics=copies,
        storage=args.storage,
        overwrite=args.overwrite,
        video=pathlib.Path(args.video) if args.video else None,
        video_stream=args.video_stream,
        video_fps=args.video_fps,
        max_input_pixels=args.max_input_pixels,
        output_resolution=args.output_resolution,
        overlay_alpha=args.overlay_alpha,
        upsample=args.upsample,
        progress=not args.no_progress,
    )


def _write_json(path: str | None, data: dict) -> None:
    if path:
        target = pathlib.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=2) + "\n")
        log.info("wrote %s", target)


def run(args: argparse.Namespace) -> int:
    if args.bench:
        from esnet_ros.ros.bag.bench import bench_bag

        outputs = tuple(o.strip() for o in args.outputs.split(",") if o.strip())
        result = bench_bag(
            build_segmenter(args),
            size=parse_size(args.bench_size, "--bench-size"),
            frames=args.bench_frames,
            outputs=outputs,
        )
        print(json.dumps(result, indent=2))
        _write_json(args.json, result)
        return 0
    from esnet_ros.ros.bag.pipeline import segment_bag  # rclpy: loaded only when a bag is segmented

    job = _job(args)
    summary = segment_bag(job, build_segmenter(args))
    print(format_summary(summary), flush=True)  # before the interpreter's (slow) exit with torch loaded
    _write_json(args.json, summary)
    return 130 if summary["interrupted"] else 0
