"""What ``esnet demo`` reports: the figures of its measuring window (:func:`window_figures`, the bulk of
``summary.json``) and the terminal report (:func:`print_summary`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from esnet_ros.core.summary import percentiles
from esnet_ros.tooling.demo_setup import DemoModel, DemoRun
from esnet_ros.tooling.harness import COUNTERS
from esnet_ros.tooling.monitor import NODE_STAGES, CameraCount, Monitor

__all__ = ["KEEPS_UP_SHARE", "MeasuringWindow", "rate", "window_figures", "fmt", "print_summary"]

KEEPS_UP_SHARE = 0.95  # processed / camera FPS at or above which the node "keeps up"


@dataclasses.dataclass(frozen=True)
class MeasuringWindow:
    """What the measuring window saw: its length and the counters at its ends."""

    startup_s: float  # from the node's start to its first labels
    seconds: float
    node_start: dict[str, int | None]  # the node's diagnostics counters
    node_end: dict[str, int | None]
    camera_start: CameraCount | None  # the demo's own camera's published count (None: a live camera)
    camera_end: CameraCount | None


def rate(start: CameraCount | None, end: CameraCount | None) -> float | None:
    """Frames per second between two camera counts (``None`` if unknown or under half a second apart)."""
    if start is None or end is None or end.time - start.time < 0.5:
        return None
    return (end.published - start.published) / (end.time - start.time)


def _quality(monitor: Monitor, run: DemoRun) -> dict[str, Any]:
    options = run.options
    quality = monitor.quality()
    if quality is not None:
        truth = "the synthetic camera's ground truth" if options.synthetic else f"the labels in {options.labels}"
        quality["note"] = f"labels matched to {truth} by header stamp, at input resolution"
        return quality
    return {
        "miou": None,
        "per_class_iou": None,
        "pixel_accuracy": None,
        "frames_scored": 0,
        "note": (
            "no mIoU: a live camera, or images without --labels, has no ground truth"
            if not options.ground_truth
            else "no mIoU: no labels could be matched to ground truth"
        ),
    }


def _camera(run: DemoRun, window: MeasuringWindow, in_window: dict[str, int | None]) -> tuple[dict, float | None]:
    """What the summary says of the camera, and its frame rate in the window."""
    options = run.options
    if options.own_camera:
        w, h = options.frame_size
        camera = {"width": w or None, "height": h or None, "encoding": "bgr8", "rate_hz": options.rate_hz}
        if options.images is not None:
            camera.update(images=str(options.images), labels=options.labels)
        return camera, rate(window.camera_start, window.camera_end)
    received = in_window["received"]  # a real camera: what reached the node
    camera_fps = received / window.seconds if received is not None and window.seconds > 0 else None
    return {"topic": options.camera_topic}, camera_fps


def _model_figures(model: DemoModel) -> dict[str, Any]:
    meta, labels = model.meta, model.labels
    return {
        "name": meta.extra.get("name") or meta.extra.get("model_name") or model.weights.stem,
        "dataset": labels.name,
        "num_classes": labels.num_classes,
        "trained_input_size": list(meta.input_size),
    }


def window_figures(run: DemoRun, monitor: Monitor, window: MeasuringWindow) -> dict[str, Any]:
    """The figures of the measuring window (the caller adds counters, exit codes and files)."""
    options, model = run.options, run.model
    frames = len(monitor.stats)  # one stats message per processed frame
    fps = frames / window.seconds if window.seconds > 0 else None
    in_window = {
        k: (window.node_end[k] - window.node_start[k])
        if window.node_end.get(k) is not None and window.node_start.get(k) is not None
        else None
        for k in COUNTERS
    }
    camera, camera_fps = _camera(run, window, in_window)
    quality = _quality(monitor, run)
    return {
        "mode": "synthetic" if options.synthetic else ("images" if options.images is not None else "camera"),
        "camera_topic": options.camera_topic,
        "seconds": round(window.seconds, 2),
        "startup_seconds": round(window.startup_s, 2),
        "weights": str(model.weights),
        "model": _model_figures(model),
        "network_input": list(model.size),
        "camera": camera,
        "frames": frames,
        "fps": round(fps, 3) if fps is not None else None,
        "camera_fps": round(camera_fps, 3) if camera_fps is not None else None,
        "keeps_up": (fps >= KEEPS_UP_SHARE * camera_fps) if fps is not None and camera_fps else None,
        "labels_received": len(monitor.label_times),
        "measured_with": (
            "subscribers to every output: labels, color, overlay, confidence and stats"
            if options.all_outputs
            else "subscribers to esnet/labels and esnet/stats only (color and "
            "overlay are computed only while subscribed; the pictures are taken after the measurement)"
        ),
        "outputs_received": dict(monitor.outputs_received),
        "background_load_cores": options.background_load,
        "latency_ms": percentiles([ms for _, ms in monitor.latencies_ms], (50, 90, 99)),
        "node_timing_ms": {
            key: percentiles([getattr(s, key) for s in monitor.stats], (50, 90)) for key in NODE_STAGES if monitor.stats
        },
        "label_shapes": sorted(list(s) for s in monitor.label_shapes),
        "miou": quality["miou"],
        "quality": quality,
        "node_counters_in_window": in_window,
    }


def fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}{unit}"


def _rate_line(s: dict[str, Any]) -> str:
    """``9.84 processed of 30.0 camera frames/s (33%; ...)``: the rate the node sustains."""
    fps, camera_fps = s["fps"], s.get("camera_fps")
    if not camera_fps:
        return f"{fmt(fps, '', 2)} processed"
    share = 100 * fps / camera_fps if fps is not None else 0.0
    verdict = "keeps up" if s.get("keeps_up") else "the node skips frames that a newer one superseded"
    return f"{fmt(fps, '', 2)} processed of {camera_fps:.2f} camera frames/s ({share:.0f}%: {verdict})"


def print_summary(s: dict[str, Any]) -> None:
    """The demo's terminal report (every figure is also in summary.json)."""
    lat = s["latency_ms"]
    print()
    print(
        f"esnet demo: {s['frames']} frames segmented in {s['seconds']:.1f} s on {s['camera_topic']}  "
        f"(network input {s['network_input'][0]}x{s['network_input'][1]}, start-up {s['startup_seconds']:.1f} s)"
    )
    print(f"  FPS        {_rate_line(s)}")
    print(
        f"  latency    median {fmt(lat['median'], ' ms')}, p90 {fmt(lat['p90'], ' ms')}  "
        "(camera stamp -> labels received)"
    )
    if s["miou"] is not None:
        print(
            f"  mIoU       {s['miou'] * 100:.1f}%  over {s['quality']['frames_scored']} frames "
            f"({s['quality']['note'].split(' by header')[0].replace('labels matched to ', 'against ')})"
        )
    else:
        print(f"  mIoU       n/a ({s['quality']['note']})")
    c = s["node_counters"]
    print(
        f"  node       received {c['received']}, processed {c['processed']}, dropped {c['dropped']}, "
        f"rejected {c['rejected']}"
    )
    if s["problems_in_logs"]:
        print(f"  WARNING    tracebacks or exceptions in the logs: {s['problems_in_logs']}")
    video = s["files"].get("video")
    written = (
        s["files"].get("overlays", [])
        + [s["files"].get("side_by_side")]
        + [f"{video['file']} ({video['frames']} frames)" if video else None]
        + ["summary.json"]
    )
    print(f"  wrote      {', '.join(name for name in written if name)} to {s['_output']}/")
