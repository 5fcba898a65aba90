"""``esnet demo``: a camera and the segmentation node over real DDS, scored live.

1. starts the camera (:mod:`esnet_ros.tooling.synthetic_camera`, bgr8 at ``rate_hz``, 30 Hz by default):
   1280x720 synthetic scenes served by the synthetic model, or with ``images`` a folder or video of real
   frames (ground truth from ``labels``) served by the CamVid model; unless ``camera`` names a live
   camera topic. Then the segmentation node (:mod:`esnet_ros.ros.node`), each as a child process whose
   log goes to ``OUTPUT/logs/`` (:mod:`esnet_ros.tooling.harness`);
2. waits (bounded) for the first labels, then measures for ``seconds`` with a live progress bar:
   frames, processed FPS against the camera's, latency (camera stamp -> labels received here) and
   mIoU so far;
3. stops the camera, lets the node finish its last frame, reads the node's counters from
   ``/diagnostics`` and stops the node (SIGINT, then a bounded wait);
4. prints the rate the node sustains (processed FPS vs camera FPS), latency (median, p90) and
   mIoU against the camera's ground truth (predictions matched to ground truth by header stamp,
   scored by :class:`esnet_ros.training.metrics.ConfusionMatrix`, the one mIoU), and writes overlay
   PNGs, a side-by-side image (input | classes | overlay) and ``summary.json`` to ``OUTPUT/``.

With a live ``camera`` topic only the node is started, on that topic; there is no ground truth,
so no mIoU.  rclpy is imported only when a demo runs.
"""

from __future__ import annotations

import json
import logging
import pathlib
import sys
import time
from typing import Any, NamedTuple

import numpy as np

from esnet_ros.core.summary import json_safe
from esnet_ros.tooling.demo_report import MeasuringWindow, fmt, print_summary, rate, window_figures
from esnet_ros.tooling.demo_setup import DemoOptions, DemoRun, prepare
from esnet_ros.tooling.harness import (
    OUTPUT_TOPICS,
    Child,
    DemoError,
    camera_argv,
    camera_published,
    indent_log,
    interruptible,
    node_argv,
)
from esnet_ros.tooling.monitor import Monitor, Pictures, close_run, drain_and_count, message_array
from esnet_ros.tooling.pictures import record_video, save_png, side_by_side, visible_classes

__all__ = ["DemoOptions", "run_demo", "print_summary"]  # DemoOptions: from demo_setup; print_summary: demo_report

log = logging.getLogger(__name__)


def run_demo(options: DemoOptions) -> int:
    """Run the demo; print the summary; 0 on success, 1 on a failed run, 130 when interrupted."""
    run = prepare(options)
    with interruptible():
        return _run(run)


def _start_children(run: DemoRun) -> list[Child]:
    """The camera (unless a real one is given) and the node, node last."""
    options, model, out = run.options, run.model, run.out
    children: list[Child] = []
    if options.own_camera:
        w, h = options.frame_size
        children.append(
            Child(
                "synthetic camera" if options.synthetic else "replay camera",
                camera_argv(
                    width=w,
                    height=h,
                    rate_hz=options.rate_hz,
                    pool_size=options.pool_size,
                    seed=options.seed,
                    images=options.images,
                    labels_dir=options.labels,
                ),
                out / "logs" / "camera.log",
            )
        )
    transport = "raw" if options.own_camera else options.camera_transport
    node = node_argv(
        weights=model.weights,
        input_size=model.size,
        camera_topic=options.camera_topic,
        transport=transport,
        extra_params=options.node_params,
    )
    children.append(Child("segmentation node", node, out / "logs" / "node.log"))
    print(
        f"esnet demo: {_source(options)} -> segmentation node ({model.weights.name}, network input "
        f"{model.size[0]}x{model.size[1]}); logs in {out / 'logs'}",
        flush=True,
    )
    if not options.ground_truth:
        print(
            "esnet demo: no ground truth (a live camera, or --images without --labels), so no mIoU is computed",
            flush=True,
        )
    return children


def _source(options: DemoOptions) -> str:
    """What the node segments, for the start-up line."""
    if options.synthetic:
        return f"synthetic camera {'x'.join(map(str, options.frame_size))} at {options.rate_hz:g} Hz"
    if options.images is not None:
        frames = "x".join(map(str, options.camera_size)) if options.camera_size else "their own size"
        return f"{options.images} replayed at {options.rate_hz:g} Hz ({frames})"
    return f"camera {options.camera_topic}"


def _run(run: DemoRun) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from esnet_ros.inference.benchmark import background_load  # torch: loaded once the demo really runs
    from esnet_ros.ros.dds import use_large_message_profile

    options = run.options
    context = rclpy.Context()
    use_large_message_profile()  # also inherited by the processes started here
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    children: list[Child] = []
    monitor = None
    try:
        children = _start_children(run)
        monitor = Monitor(
            context,
            camera_topic=options.camera_topic,
            ground_truth=options.ground_truth,
            labels=run.model.labels,
            all_outputs=options.all_outputs,
        )
        with background_load(options.background_load):
            window = _measure(options, monitor, children)
        summary = _finish(run, monitor, children, window)
    except KeyboardInterrupt:
        print("\nesnet demo: interrupted; stopping the camera and the node", file=sys.stderr)
        for child in reversed(children):
            child.stop()
        return 130
    except DemoError as exc:
        print(f"esnet demo: error: {exc}", file=sys.stderr)
        for child in reversed(children):
            child.stop()
        return 1
    finally:
        close_run(children, monitor, context)
    print_summary(summary)
    return 0


def _measure(options: DemoOptions, monitor: Monitor, children: list[Child]) -> MeasuringWindow:
    """Wait for the first labels, then measure for ``options.seconds`` with a live progress bar.

    Measured as a planner consumes the node: labels (and stats, and ground truth here; every output with
    ``all_outputs``).  The node computes color and overlay only while someone subscribes.
    """
    start = time.monotonic()
    if not monitor.wait_for(lambda: len(monitor.label_times) > 0, options.startup_timeout, children):
        hint = (
            "the camera may still be rendering or loading its frames, or the node loading"
            if options.own_camera
            else f"is {options.camera_topic} publishing sensor_msgs/Image? (check its type and QoS)"
        )
        raise DemoError(
            f"no labels on {OUTPUT_TOPICS['labels']} within {options.startup_timeout:g} s ({hint}); "
            f"last lines of the node's log:\n{indent_log(children[-1].tail(15))}"
        )
    startup_s = time.monotonic() - start
    if options.own_camera:  # its 1 Hz diagnostics give the rate it really sends: have one before measuring
        monitor.wait_for(lambda: monitor.camera_published_at() is not None, 3.0, children)
    monitor.reset()
    t0 = time.monotonic()
    node_start, camera_start = monitor.counters(), monitor.camera_published_at()
    _progress(options, monitor, children, t0)
    seconds = time.monotonic() - t0
    monitor.recording = False
    return MeasuringWindow(
        startup_s=startup_s,
        seconds=seconds,
        node_start=node_start,
        node_end=monitor.counters(),
        camera_start=camera_start,
        camera_end=monitor.camera_published_at(),
    )


def _progress(options: DemoOptions, monitor: Monitor, children: list[Child], t0: float) -> None:
    """Spin for the window, showing frames, processed/camera FPS, latency and mIoU so far."""
    from tqdm import tqdm

    camera_start = monitor.camera_published_at()
    with tqdm(
        total=round(options.seconds),
        unit="s",
        desc="esnet demo",
        dynamic_ncols=True,
        file=sys.stderr,
        bar_format="{desc}: {n:.0f}/{total:.0f} s |{bar}| {postfix}",
    ) as bar:
        while (now := time.monotonic()) < t0 + options.seconds:
            monitor.spin(min(0.5, t0 + options.seconds - now))
            for child in children:
                child.check_alive()
            elapsed = time.monotonic() - t0
            frames = len(monitor.stats)
            recent = [ms for _, ms in monitor.latencies_ms[-30:]]
            camera_fps = rate(camera_start, monitor.camera_published_at())
            postfix = (
                f"frames {frames}  FPS {frames / elapsed:.1f}"
                + (f"/{camera_fps:.1f}" if camera_fps is not None else "")
                + f"  latency {fmt(np.median(recent) if recent else None, ' ms', 0)}"
            )
            quality = monitor.quality()
            if monitor.scores is not None:
                postfix += f"  mIoU {fmt(quality['miou'] * 100 if quality else None, '%')}"
            bar.set_postfix_str(postfix, refresh=False)
            bar.n = min(round(elapsed), bar.total)
            bar.refresh()


def _finish(run: DemoRun, monitor: Monitor, children: list[Child], window: MeasuringWindow) -> dict[str, Any]:
    """Pictures, then stop the camera (so the node's counters settle), then the node; the summary."""
    options, out = run.options, run.out
    pictures = _take_pictures(
        monitor,
        children,
        out,
        count=options.save_frames,
        camera=options.own_camera or options.camera_transport == "raw",
    )
    video = None
    latest = pictures.latest
    if options.video_seconds > 0 and latest is not None and latest.input is not None:  # while the camera still runs
        video = record_video(
            monitor, out / "side_by_side.mp4", options.video_seconds, options.rate_hz, run.model.labels, children
        )
    exit_codes: dict[str, int] = {}
    published = None
    if options.own_camera:
        cam_status = monitor.camera_status()
        exit_codes["camera"] = children[0].stop()
        published = camera_published(children[0], cam_status)
    counters, identity = drain_and_count(monitor, 10.0 if options.own_camera else 3.0)
    exit_codes["node"] = children[-1].stop()
    files: dict[str, Any] = {
        "overlays": [p.name for p in pictures.overlays],
        "logs": [str(c.log_path.relative_to(out)) for c in children],
        "video": {"file": video.path.name, "frames": video.frames} if video and video.frames else None,
    }
    if latest is not None:
        files["side_by_side"] = _save_side_by_side(out, latest, run.model.labels).name
    summary = window_figures(run, monitor, window)
    summary.update(
        node_counters=counters,
        counter_identity_holds=identity,
        exit_codes=exit_codes,
        files=files,
        problems_in_logs={c.name: c.problems()[:5] for c in children if c.problems()},
    )
    if options.own_camera:
        summary["camera"]["frames_published"] = published
    summary = json_safe(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["_output"] = str(out)
    return summary


def _save_side_by_side(out: pathlib.Path, latest: Pictures, labels) -> pathlib.Path:
    """``side_by_side.png``: camera | classes | overlay of one stamp, with the visible classes' legend."""
    color_bgr = message_array(latest.color)
    picture = side_by_side(
        message_array(latest.input) if latest.input is not None else None,
        color_bgr,
        message_array(latest.overlay),
        labels,
        visible_classes(color_bgr, labels),
    )
    return save_png(out / "side_by_side.png", picture)


class _Taken(NamedTuple):
    """What :func:`_take_pictures` got: the overlay PNGs written and the newest complete pictures."""

    overlays: list[pathlib.Path]
    latest: Pictures | None


def _take_pictures(
    monitor: Monitor, children: list[Child], out: pathlib.Path, *, count: int, camera: bool, timeout_s: float = 15.0
) -> _Taken:
    """Subscribe to color/overlay (and the camera); save ``count`` overlays; the newest complete pictures.

    The side-by-side needs the camera frame, the class colors and the overlay of one stamp; under
    load the monitor may miss some messages, so this waits (bounded) for a complete set.
    """
    monitor.subscribe_pictures(camera)
    saved: list[pathlib.Path] = []
    seen: set[int] = set()

    def done() -> bool:
        for stamp, msg in monitor.kept("overlay"):
            if len(saved) < count and stamp not in seen:
                seen.add(stamp)
                img = message_array(msg)
                if img is not None:
                    saved.append(save_png(out / f"overlay_{len(saved):03d}.png", img))
        latest = monitor.latest_triple()
        return len(saved) >= count and latest is not None and (latest.input is not None or not camera)

    if not monitor.wait_for(done, timeout_s, children):
        log.warning(
            "pictures: %d of %d overlays and %s side-by-side within %.0f s",
            len(saved),
            count,
            "a" if monitor.latest_triple() else "no",
            timeout_s,
        )
    return _Taken(saved, monitor.latest_triple())
