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

import dataclasses
import json
import logging
import pathlib
import sys
import time
from typing import Any

import numpy as np

from esnet_ros.core.summary import json_safe, percentiles
from esnet_ros.tooling.harness import (
    CAMERA_TOPIC,
    COUNTERS,
    DEFAULT_CAMERA_RATE_HZ,
    OUTPUT_TOPICS,
    Child,
    DemoError,
    camera_argv,
    camera_published,
    indent_log,
    interruptible,
    network_input_size,
    node_argv,
)
from esnet_ros.tooling.monitor import NODE_STAGES, Monitor, close_run, drain_and_count, message_array
from esnet_ros.tooling.pictures import record_video, save_png, side_by_side, visible_classes
from esnet_ros.tooling.demo_report import fmt as _fmt, print_summary
from esnet_ros.tooling.replay import check_label_folder

__all__ = ["DemoOptions", "run_demo", "print_summary"]  # print_summary: from demo_report

log = logging.getLogger(__name__)

KEEPS_UP_SHARE = 0.95  # processed / camera FPS at or above which the node "keeps up"


@dataclasses.dataclass
class DemoOptions:
    """What ``esnet demo`` runs; the fields mirror its options (see :mod:`esnet_ros.cli.demo`)."""

    seconds: float = 30.0
    camera: str | None = None  # a real camera topic instead of the synthetic camera
    camera_transport: str = "raw"  # with camera: raw or compressed
    output: str = "demo_output"
    weights: str | None = None  # None: the synthetic model for the synthetic camera, else the CamVid model
    width: int | None = None  # network input; None: the checkpoint's input_size
    height: int | None = None
    rate_hz: float = DEFAULT_CAMERA_RATE_HZ
    camera_size: tuple[int, int] | None = None  # the camera's frames; None: 1280x720 synthetic, images as they are
    images: str | None = None  # a folder of images or a video replayed as the camera (real frames)
    labels: str | None = None  # with images: their ground truth (LABELS/<image stem>.png), for a live mIoU
    pool_size: int = 10
    seed: int = 0
    save_frames: int = 5
    video_seconds: float = 5.0  # side_by_side.mp4: this long a stretch of camera | classes | overlay (0: none)
    startup_timeout: float = 120.0
    all_outputs: bool = False  # also subscribe to color, overlay and confidence while measuring
    background_load: int = 0  # cores kept busy by CPU hogs while measuring (a shared robot CPU)
    node_params: tuple[str, ...] = ()  # more node parameters, "name:=value"
    int8: bool = False  # OpenVINO int8, NNCF-calibrated on synthetic train scenes written to output/calibration

    def check(self) -> None:
        """``ValueError`` naming the option and the fix for anything out of range."""
        if not self.seconds > 0:
            raise ValueError(f"--seconds {self.seconds} must be > 0, e.g. --seconds 30")
        if not 0 < self.rate_hz <= 1000:
            raise ValueError(f"--rate-hz {self.rate_hz} must be in (0, 1000], e.g. --rate-hz 30")
        if self.camera is not None and self.images is not None:
            raise ValueError("--camera and --images both given: segment a live camera topic or replay images, not both")
        if self.labels is not None and self.images is None:
            raise ValueError(f"--labels {self.labels} needs --images (the frames those labels belong to)")
        if self.camera is not None and not self.camera.startswith("/"):
            raise ValueError(f"--camera {self.camera!r} must be an absolute topic name, e.g. /my_camera/image_raw")
        if self.video_seconds < 0:
            raise ValueError(f"--video-seconds {self.video_seconds} must be >= 0 (0: no video)")
        if self.save_frames < 0:
            raise ValueError(f"--save-frames {self.save_frames} must be >= 0")
        if not 1 <= self.pool_size <= 1000:
            raise ValueError(f"--pool-size {self.pool_size} must be in 1..1000")
        for param in self.node_params:
            name, sep, value = param.partition(":=")
            if not sep or not name.strip() or not value.strip():
                raise ValueError(f"--param {param!r} must be NAME:=VALUE, e.g. --param precision:=int8")

    @property
    def synthetic(self) -> bool:
        """The synthetic camera: no real camera topic and no images to replay."""
        return self.camera is None and self.images is None

    @property
    def own_camera(self) -> bool:
        """The demo starts the camera (synthetic scenes or replayed images) rather than listening to one."""
        return self.camera is None

    @property
    def ground_truth(self) -> bool:
        return self.synthetic or (self.images is not None and self.labels is not None)

    @property
    def frame_size(self) -> tuple[int, int]:
        """What the camera is asked for: the synthetic scenes' size, or (0, 0) for the images' own."""
        return self.camera_size or ((1280, 720) if self.synthetic else (0, 0))


def _rate(start: tuple[float, int] | None, end: tuple[float, int] | None) -> float | None:
    """Frames per second between two ``(monotonic time, count)`` samples (``None`` if unknown)."""
    if start is None or end is None or end[0] - start[0] < 0.5:
        return None
    return (end[1] - start[1]) / (end[0] - start[0])


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Window:
    """What the measuring window saw: its length and the counters at its ends."""

    startup_s: float
    seconds: float
    node_start: dict[str, int | None]
    node_end: dict[str, int | None]
    camera_start: tuple[float, int] | None
    camera_end: tuple[float, int] | None


def run_demo(options: DemoOptions) -> int:
    """Run the demo; print the summary; 0 on success, 1 on a failed run, 130 when interrupted."""
    options.check()
    from esnet_ros.core.checkpoint import resolve_weights

    # the synthetic camera draws what the synthetic model was trained on; real frames get the CamVid model
    weights = resolve_weights(options.weights or ("synthetic" if options.synthetic else None))
    if not options.weights and not weights.is_file():
        raise FileNotFoundError(f"the bundled model {weights} is missing; pass --weights PATH to a checkpoint")
    size, meta, labels = network_input_size(weights, options.width, options.height)
    if options.labels is not None:
        check_label_folder(options.images, options.labels, labels)
    out = pathlib.Path(options.output)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("overlay_*.png")) + [out / "side_by_side.png", out / "side_by_side.mp4", out / "summary.json"]:
        old.unlink(missing_ok=True)
    if options.int8:
        options = dataclasses.replace(options, node_params=_int8_params(out, options) + options.node_params)
    with interruptible():
        return _run(options, weights, size, meta, labels, out)


INT8_CALIBRATION_SCENES = 16


def _int8_params(out: pathlib.Path, options: DemoOptions) -> tuple[str, ...]:
    """``--int8``: calibration images (synthetic *train* scenes: not the ones the camera shows) and the node
    parameters that quantize with them (once: later runs reuse the cached int8 model)."""
    from esnet_ros.data.synth.writer import write_pairs

    folder = out / "calibration"
    images = folder / "images" / "train"
    if len(list(images.glob("*.png"))) != INT8_CALIBRATION_SCENES:
        print(f"esnet demo: writing {INT8_CALIBRATION_SCENES} calibration scenes for int8 to {folder}", flush=True)
        write_pairs(folder, INT8_CALIBRATION_SCENES, seed=options.seed + 1, size=options.camera_size, split="train")
    return ("backend:=openvino", "precision:=int8", f"int8_calibration_dir:={images.resolve()}")


def _start_children(options: DemoOptions, weights: pathlib.Path, size, out: pathlib.Path) -> tuple[list[Child], str]:
    """The camera (unless a real one is given) and the node; ``(children, camera topic)``, node last."""
    camera_topic = CAMERA_TOPIC if options.own_camera else options.camera
    children: list[Child] = []
    if options.own_camera:
        w, h = options.frame_size
        children.append(Child("synthetic camera" if options.synthetic else "replay camera", camera_argv(
            width=w, height=h, rate_hz=options.rate_hz, pool_size=options.pool_size, seed=options.seed,
            images=options.images, labels_dir=options.labels), out / "logs" / "camera.log"))
    transport = "raw" if options.own_camera else options.camera_transport
    children.append(Child("segmentation node", node_argv(weights=weights, input_size=size, camera_topic=camera_topic,
                                                         transport=transport, extra_params=options.node_params),
                           out / "logs" / "node.log"))
    if options.synthetic:
        source = f"synthetic camera {'x'.join(map(str, options.frame_size))} at {options.rate_hz:g} Hz"
    elif options.images is not None:
        frames = "x".join(map(str, options.camera_size)) if options.camera_size else "their own size"
        source = f"{options.images} replayed at {options.rate_hz:g} Hz ({frames})"
    else:
        source = f"camera {camera_topic}"
    print(f"esnet demo: {source} -> segmentation node ({weights.name}, network input {size[0]}x{size[1]}); "
          f"logs in {out / 'logs'}", flush=True)
    if not options.ground_truth:
        print("esnet demo: no ground truth (a live camera, or --images without --labels), so no mIoU is computed",
              flush=True)
    return children, camera_topic


def _run(options: DemoOptions, weights, size, meta, labels, out: pathlib.Path) -> int:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from esnet_ros.inference.benchmark import background_load  # torch: loaded once the demo really runs
    from esnet_ros.ros.dds import use_large_message_profile

    context = rclpy.Context()
    use_large_message_profile()  # also inherited by the processes started here
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    children: list[Child] = []
    monitor = None
    try:
        children, camera_topic = _start_children(options, weights, size, out)
        monitor = Monitor(context, camera_topic=camera_topic, ground_truth=options.ground_truth, labels=labels,
                          all_outputs=options.all_outputs)
        with background_load(options.background_load):
            window = _measure(options, monitor, children, camera_topic)
        summary = _finish(options, monitor, children, window, camera_topic, size, weights, meta, labels, out)
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


def _measure(options: DemoOptions, monitor: Monitor, children: list[Child], camera_topic: str) -> _Window:
    """Wait for the first labels, then measure for ``options.seconds`` with a live progress bar.

    Measured as a planner consumes the node: labels (and stats, and ground truth here; every output with
    ``all_outputs``).  The node computes color and overlay only while someone subscribes.
    """
    start = time.monotonic()
    if not monitor.wait_for(lambda: len(monitor.label_times) > 0, options.startup_timeout, children):
        hint = ("the camera may still be rendering or loading its frames, or the node loading" if options.own_camera else
                f"is {camera_topic} publishing sensor_msgs/Image? (check its type and QoS)")
        raise DemoError(
            f"no labels on {OUTPUT_TOPICS['labels']} within {options.startup_timeout:g} s ({hint}); "
            f"last lines of the node's log:\n{indent_log(children[-1].tail(15))}")
    startup_s = time.monotonic() - start
    if options.own_camera:  # its 1 Hz diagnostics give the rate it really sends: have one before measuring
        monitor.wait_for(lambda: monitor.camera_published_at() is not None, 3.0, children)
    monitor.reset()
    t0 = time.monotonic()
    node_start, camera_start = monitor.counters(), monitor.camera_published_at()
    _progress(options, monitor, children, t0)
    seconds = time.monotonic() - t0
    monitor.recording = False
    return _Window(startup_s, seconds, node_start, monitor.counters(), camera_start, monitor.camera_published_at())


def _progress(options: DemoOptions, monitor: Monitor, children: list[Child], t0: float) -> None:
    """Spin for the window, showing frames, processed/camera FPS, latency and mIoU so far."""
    from tqdm import tqdm

    camera_start = monitor.camera_published_at()
    with tqdm(total=round(options.seconds), unit="s", desc="esnet demo", dynamic_ncols=True, file=sys.stderr,
              bar_format="{desc}: {n:.0f}/{total:.0f} s |{bar}| {postfix}") as bar:
        while (now := time.monotonic()) < t0 + options.seconds:
            monitor.spin(min(0.5, t0 + options.seconds - now))
            for child in children:
                child.check_alive()
            elapsed = time.monotonic() - t0
            frames = len(monitor.stats)
            recent = [ms for _, ms in monitor.latencies_ms[-30:]]
            camera_fps = _rate(camera_start, monitor.camera_published_at())
            postfix = (f"frames {frames}  FPS {frames / elapsed:.1f}"
                       + (f"/{camera_fps:.1f}" if camera_fps is not None else "")
                       + f"  latency {_fmt(np.median(recent) if recent else None, ' ms', 0)}")
            quality = monitor.quality()
            if monitor.scores is not None:
                postfix += f"  mIoU {_fmt(quality['miou'] * 100 if quality else None, '%')}"
            bar.set_postfix_str(postfix, refresh=False)
            bar.n = min(round(elapsed), bar.total)
            bar.refresh()


def _finish(options: DemoOptions, monitor: Monitor, children: list[Child], window: _Window, camera_topic: str,
            size, weights, meta, labels, out: pathlib.Path) -> dict[str, Any]:
    """Pictures, then stop the camera (so the node's counters settle), then the node; the summary."""
    saved, triple = _take_pictures(monitor, options.save_frames, children, out,
                                   camera=options.own_camera or options.camera_transport == "raw")
    video = None
    if options.video_seconds > 0 and triple is not None and triple[0] is not None:  # while the camera still runs
        video = record_video(monitor, out / "side_by_side.mp4", options.video_seconds, options.rate_hz, labels,
                             children)
    exit_codes: dict[str, int] = {}
    published = None
    if options.own_camera:
        cam_status = monitor.camera_status()
        exit_codes["camera"] = children[0].stop()
        published = camera_published(children[0], cam_status)
    counters, identity = drain_and_count(monitor, 10.0 if options.own_camera else 3.0)
    exit_codes["node"] = children[-1].stop()

    files: dict[str, Any] = {"overlays": [p.name for p in saved], "logs": [str(c.log_path.relative_to(out)) for c in children],
                             "video": {"file": video.path.name, "frames": video.frames} if video and video.frames else None}
    if triple is not None:
        inp, color, overlay = triple
        color_bgr = message_array(color)
        picture = side_by_side(message_array(inp) if inp is not None else None, color_bgr, message_array(overlay),
                               labels, visible_classes(color_bgr, labels))
        files["side_by_side"] = save_png(out / "side_by_side.png", picture).name
    summary = _summary(options, monitor, window, camera_topic, size, weights, meta, labels)
    summary.update(node_counters=counters, counter_identity_holds=identity, exit_codes=exit_codes, files=files,
                   problems_in_logs={c.name: c.problems()[:5] for c in children if c.problems()})
    if options.own_camera:
        summary["camera"]["frames_published"] = published
    summary = json_safe(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["_output"] = str(out)
    return summary


def _quality(monitor: Monitor, options: DemoOptions) -> dict[str, Any]:
    quality = monitor.quality()
    if quality is not None:
        truth = "the synthetic camera's ground truth" if options.synthetic else f"the labels in {options.labels}"
        quality["note"] = f"labels matched to {truth} by header stamp, at input resolution"
        return quality
    return {"miou": None, "per_class_iou": None, "pixel_accuracy": None, "frames_scored": 0,
            "note": ("no mIoU: a live camera, or images without --labels, has no ground truth" if not options.ground_truth
                     else "no mIoU: no labels could be matched to ground truth")}


def _summary(options: DemoOptions, monitor: Monitor, window: _Window, camera_topic: str, size, weights, meta,
             labels) -> dict[str, Any]:
    """The figures of the measuring window (the caller adds counters, exit codes and files)."""
    frames = len(monitor.stats)  # one stats message per processed frame
    fps = frames / window.seconds if window.seconds > 0 else None
    in_window = {k: (window.node_end[k] - window.node_start[k])
                 if window.node_end.get(k) is not None and window.node_start.get(k) is not None else None
                 for k in COUNTERS}
    if options.own_camera:
        camera_fps = _rate(window.camera_start, window.camera_end)
        w, h = options.frame_size
        camera = {"width": w or None, "height": h or None, "encoding": "bgr8", "rate_hz": options.rate_hz}
        if options.images is not None:
            camera.update(images=str(options.images), labels=options.labels)
    else:  # a real camera: what reached the node
        received = in_window["received"]
        camera_fps = received / window.seconds if received is not None and window.seconds > 0 else None
        camera = {"topic": camera_topic}
    quality = _quality(monitor, options)
    return {
        "mode": "synthetic" if options.synthetic else ("images" if options.images is not None else "camera"),
        "camera_topic": camera_topic,
        "seconds": round(window.seconds, 2),
        "startup_seconds": round(window.startup_s, 2),
        "weights": str(weights),
        "model": {"name": meta.extra.get("name") or meta.extra.get("model_name") or weights.stem, "dataset": labels.name,
                  "num_classes": labels.num_classes, "trained_input_size": list(meta.input_size)},
        "network_input": list(size),
        "camera": camera,
        "frames": frames,
        "fps": round(fps, 3) if fps is not None else None,
        "camera_fps": round(camera_fps, 3) if camera_fps is not None else None,
        "keeps_up": (fps >= KEEPS_UP_SHARE * camera_fps) if fps is not None and camera_fps else None,
        "labels_received": len(monitor.label_times),
        "measured_with": ("subscribers to every output: labels, color, overlay, confidence and stats"
                          if options.all_outputs else "subscribers to esnet/labels and esnet/stats only (color and "
                          "overlay are computed only while subscribed; the pictures are taken after the measurement)"),
        "outputs_received": dict(monitor.outputs_received),
        "background_load_cores": options.background_load,
        "latency_ms": percentiles([ms for _, ms in monitor.latencies_ms], (50, 90, 99)),
        "node_timing_ms": {key: percentiles([getattr(s, key) for s in monitor.stats], (50, 90))
                           for key in NODE_STAGES if monitor.stats},
        "label_shapes": sorted(list(s) for s in monitor.label_shapes),
        "miou": quality["miou"],
        "quality": quality,
        "node_counters_in_window": in_window,
    }


def _take_pictures(monitor: Monitor, count: int, children: list[Child], out: pathlib.Path, camera: bool,
                   timeout_s: float = 15.0):
    """Subscribe to color/overlay (and the camera); save ``count`` overlays; return ``(paths, triple)``.

    The side-by-side needs the camera frame, the class colors and the overlay of one stamp; under
    load the monitor may miss some messages, so this waits (bounded) for a complete triple.
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
        triple = monitor.latest_triple()
        return len(saved) >= count and triple is not None and (triple[0] is not None or not camera)

    if not monitor.wait_for(done, timeout_s, children):
        log.warning("pictures: %d of %d overlays and %s side-by-side within %.0f s", len(saved), count,
                    "a" if monitor.latest_triple() else "no", timeout_s)
    return saved, monitor.latest_triple()
