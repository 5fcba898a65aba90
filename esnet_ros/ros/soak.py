"""``esnet soak``: the segmentation node against the synthetic camera for minutes, watched.

``esnet soak --minutes N --rate-hz R [--json out.json] [--width W --height H]``

Starts the synthetic camera (1280x720 bgr8 at ``R`` Hz, reliable) and the segmentation node
(network input ``W x H``, default 512x256) as child processes over real DDS, subscribes to the
node's labels and stats, and reports:

- the node's counters from ``/diagnostics`` (received, processed, dropped, rejected, by cause)
  after the camera has stopped and the node has finished its last frame, and whether
  ``received == processed + dropped + rejected``; also the camera's published count;
- the node process's RSS over time (psutil, every ``--sample-s``), and its growth after a warm-up
  (the median of the last three samples minus the median of the first three after warm-up);
- latency percentiles (camera stamp -> labels received by this process) and the node's own
  stage timings from ``esnet/stats``;
- whether a traceback or an exception appeared in the node's log, and how it exited.

It exits 0 when the targets of issue 7 hold (counter identity, RSS growth <= ``--max-rss-growth-mb``,
no exception in the log, a clean exit), else 1; the JSON records every figure either way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import re
import sys
import tempfile
import time
from typing import Any

import numpy as np

from esnet_ros.ros.dds import use_large_message_profile
from esnet_ros.ros.harness import (
    COUNTERS,
    Child,
    DemoError,
    Monitor,
    _indent,
    _json_safe,
    camera_argv,
    camera_published,
    network_input_size,
    node_argv,
    percentiles,
    drain_and_count,
    interruptible,
)

__all__ = ["add_arguments", "run", "rss_growth", "soak"]

log = logging.getLogger(__name__)

ERROR_LINE_RE = re.compile(r"^\[ERROR\].*$", re.MULTILINE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration in minutes, fractions allowed (default 10)")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="camera frame rate (default 30)")
    parser.add_argument("--json", default=None, help="write the report here as JSON")
    parser.add_argument("--width", type=int, default=512, help="network input width (default 512)")
    parser.add_argument("--height", type=int, default=256, help="network input height (default 256)")
    parser.add_argument("--weights", default=None, help="checkpoint (default: the bundled demo model)")
    parser.add_argument("--camera-size", default="1280x720", help="camera image size WxH (default 1280x720)")
    parser.add_argument("--pool-size", type=int, default=6, help="distinct scenes the camera cycles through (default 6)")
    parser.add_argument("--sample-s", type=float, default=2.0, help="seconds between RSS samples (default 2)")
    parser.add_argument("--warmup-s", type=float, default=None,
                        help="warm-up excluded from the RSS growth (default: a quarter of the run, at most 60 s)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=20.0, help="RSS growth target after warm-up (default 20)")
    parser.add_argument("--log-dir", default=None, help="folder for the camera's and node's logs (default: a temporary folder)")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for the first labels (default 120)")


def rss_growth(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, Any]:
    """RSS figures (MB) from ``[(seconds since start, MB)]``: baseline after warm-up, final, growth."""
    after = [mb for t, mb in samples if t >= warmup_s]
    if len(after) < 2:
        return {"warmup_s": warmup_s, "baseline_mb": None, "final_mb": samples[-1][1] if samples else None,
                "max_mb": max((mb for _, mb in samples), default=None), "growth_mb": None, "growth_max_mb": None,
                "note": "too few samples after the warm-up; run longer or sample more often"}
    k = min(3, len(after) // 2)
    baseline = float(np.median(after[:k]))
    final = float(np.median(after[-k:]))
    return {"warmup_s": warmup_s, "baseline_mb": round(baseline, 2), "final_mb": round(final, 2),
            "max_mb": round(max(mb for _, mb in samples), 2), "growth_mb": round(final - baseline, 2),
            "growth_max_mb": round(max(after) - baseline, 2)}


def _check_args(args: argparse.Namespace) -> None:
    if not args.minutes > 0:
        raise ValueError(f"--minutes {args.minutes} must be > 0 (fractions allowed, e.g. --minutes 0.5)")
    if not 0 < args.rate_hz <= 1000:
        raise ValueError(f"--rate-hz {args.rate_hz} must be in (0, 1000], e.g. --rate-hz 30")
    if not 0.1 <= args.sample_s <= 60:
        raise ValueError(f"--sample-s {args.sample_s} must be in 0.1..60")
    if args.warmup_s is not None and not 0 <= args.warmup_s < args.minutes * 60:
        raise ValueError(f"--warmup-s {args.warmup_s} must be in 0..{args.minutes * 60:g} (shorter than the run)")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    with interruptible():
        report = soak(args)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
    _print_report(report, args.json)
    return 0 if report["passed"] else 1


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak described by ``args`` (see :func:`add_arguments`); returns the report."""
    import psutil
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    from tqdm import tqdm

    from esnet_ros.core.checkpoint import resolve_weights
    from esnet_ros.ros.harness import _parse_size

    weights = resolve_weights(args.weights)
    if not args.weights and not weights.is_file():
        raise FileNotFoundError(f"the bundled demo model {weights} is missing; pass --weights PATH to a checkpoint")
    size, meta, labels = network_input_size(weights, args.width, args.height)
    cam_w, cam_h = _parse_size(args.camera_size)
    duration = args.minutes * 60.0
    warmup_s = args.warmup_s if args.warmup_s is not None else min(60.0, duration / 4)
    log_dir = pathlib.Path(args.log_dir) if args.log_dir else pathlib.Path(tempfile.mkdtemp(prefix="esnet_soak_"))

    report: dict[str, Any] = {
        "minutes": args.minutes, "rate_hz": args.rate_hz, "network_input": list(size),
        "camera": {"width": cam_w, "height": cam_h, "encoding": "bgr8", "reliability": "reliable", "pool_size": args.pool_size},
        "weights": str(weights), "log_dir": str(log_dir),
        "machine": {"cpus": os.cpu_count(), "loadavg_1_5_15_at_start": [round(v, 2) for v in os.getloadavg()]},
    }
    context = rclpy.Context()
    use_large_message_profile()  # also inherited by the processes started here
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    camera = node = monitor = None
    samples: list[tuple[float, float]] = []
    camera_samples: list[tuple[float, float]] = []
    counter_samples: list[dict[str, Any]] = []
    failure = None
    try:
        camera = Child("synthetic camera", camera_argv(width=cam_w, height=cam_h, rate_hz=args.rate_hz,
                                                       pool_size=args.pool_size), log_dir / "camera.log")
        node = Child("segmentation node", node_argv(weights=weights, input_size=size), log_dir / "node.log")
        node_proc, camera_proc = psutil.Process(node.pid), psutil.Process(camera.pid)
        print(f"esnet soak: {args.minutes:g} min, camera {cam_w}x{cam_h} at {args.rate_hz:g} Hz -> node "
              f"(network input {size[0]}x{size[1]}, pid {node.pid}); logs in {log_dir}", flush=True)
        monitor = Monitor(context, ground_truth=False, stats=True, name="esnet_soak_monitor")
        start = time.monotonic()
        if not monitor.wait_for(lambda: len(monitor.label_times) > 0, args.startup_timeout, (camera, node)):
            raise DemoError(f"no labels within {args.startup_timeout:g} s; last lines of the node's log:\n"
                            + _indent(node.tail(15)))
        report["startup_seconds"] = round(time.monotonic() - start, 2)
        monitor.label_times.clear()
        monitor.latencies_ms.clear()
        monitor.stats.clear()
        t0 = time.monotonic()
        next_sample = t0
        with tqdm(total=round(duration), unit="s", desc="esnet soak", dynamic_ncols=True, file=sys.stderr,
                  mininterval=1.0, bar_format="{desc}: {n:.0f}/{total:.0f} s |{bar}| {postfix}") as bar:
            while (now := time.monotonic()) < t0 + duration:
                monitor.spin(min(0.25, t0 + duration - now))
                camera.check_alive()
                node.check_alive()
                if time.monotonic() >= next_sample:
                    t = time.monotonic() - t0
                    samples.append((round(t, 2), node_proc.memory_info().rss / 2**20))
                    camera_samples.append((round(t, 2), camera_proc.memory_info().rss / 2**20))
                    counter_samples.append({"t": round(t, 2), **monitor.counters()})
                    next_sample += args.sample_s
                    c = counter_samples[-1]
                    recent = [ms for _, ms in monitor.latencies_ms[-60:]]
                    bar.set_postfix_str(
                        f"recv {c['received']} proc {c['processed']} drop {c['dropped']} rej {c['rejected']}  "
                        f"RSS {samples[-1][1]:.0f} MB  latency {np.median(recent) if recent else float('nan'):.0f} ms",
                        refresh=False)
                    bar.n = min(round(t), bar.total)
                    bar.refresh()
        window_s = time.monotonic() - t0
        monitor.recording = False
        cam_status = monitor.camera_status() or {}
        report["camera_exit_code"] = camera.stop()
        counters, identity = drain_and_count(monitor, 10.0)
        full = dict(monitor.node_status() or {})
        stop_start = time.monotonic()
        report["node_exit_code"] = node.stop()
        report["node_stop_s"] = round(time.monotonic() - stop_start, 2)
        published = camera_published(camera, cam_status)
        frames = len(monitor.label_times)
        report.update({
            "seconds": round(window_s, 1),
            "counters": {**counters, **{k: int(float(v)) for k, v in full.items()
                                        if k.startswith(("dropped.", "rejected.", "warnings.")) and _is_number(v)}},
            "counter_identity_holds": identity,
            "camera_published": published,
            "not_received_by_node": (published - counters["received"]) if published is not None and counters["received"] is not None else None,
            "labels_received": frames,
            "labels_fps": round(frames / window_s, 2),
            "latency_ms": percentiles([ms for _, ms in monitor.latencies_ms], (50, 90, 95, 99)),
            "node_timing_ms": {key: percentiles([getattr(s, key) for s in monitor.stats], (50, 90, 99))
                               for key in ("inference_ms", "total_ms", "age_ms")},
        })
    except DemoError as exc:
        failure = str(exc)
    finally:
        for child in (camera, node):
            if child is not None and child.alive():
                child.stop()
        if monitor is not None:
            monitor.destroy()
        context.try_shutdown()

    report["machine"]["loadavg_1_5_15_at_end"] = [round(v, 2) for v in os.getloadavg()]
    node_text = node.log_text() if node is not None else ""
    report["rss_mb"] = {**rss_growth(samples, warmup_s), "samples": [[t, round(mb, 2)] for t, mb in samples]}
    report["camera_rss_mb"] = rss_growth(camera_samples, warmup_s)
    report["counter_samples"] = counter_samples
    report["node_log"] = {
        "path": str(node.log_path) if node is not None else None,
        "exceptions": node.problems() if node is not None else [],
        "error_lines": ERROR_LINE_RE.findall(node_text)[:20],
    }
    growth = report["rss_mb"]["growth_mb"]
    targets = {
        "completed": failure is None,
        "counter_identity": bool(report.get("counter_identity_holds")),
        "rss_growth_ok": growth is not None and growth <= args.max_rss_growth_mb,
        "no_exceptions": not report["node_log"]["exceptions"],
        "clean_exit": report.get("node_exit_code") == 0,
    }
    report["failure"] = failure
    report["targets"] = targets
    report["passed"] = all(targets.values())
    return _json_safe(report)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _print_report(r: dict[str, Any], json_path: str | None) -> None:
    print()
    if r.get("failure"):
        print(f"esnet soak: FAILED: {r['failure']}")
    c = r.get("counters") or {k: None for k in COUNTERS}
    lat = r.get("latency_ms") or {}
    rss = r["rss_mb"]
    print(f"esnet soak: {r.get('seconds', 0):.0f} s at {r['rate_hz']:g} Hz, network input {r['network_input'][0]}x{r['network_input'][1]}")
    print(f"  camera published {r.get('camera_published')}; node received {c['received']}, processed {c['processed']}, "
          f"dropped {c['dropped']}, rejected {c['rejected']}  (identity {'holds' if r.get('counter_identity_holds') else 'BROKEN'})")
    print(f"  RSS  baseline {rss['baseline_mb']} MB after {rss['warmup_s']:.0f} s warm-up, final {rss['final_mb']} MB, "
          f"growth {rss['growth_mb']} MB (max {rss['growth_max_mb']} MB)")
    if lat:
        print(f"  latency  median {lat.get('median')} ms, p90 {lat.get('p90')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms"
              f"  ({r.get('labels_fps')} labels/s)")
    exc = r["node_log"]["exceptions"]
    print(f"  node log  {'no exceptions' if not exc else f'{len(exc)} exception(s): {exc[:3]}'}; exit code {r.get('node_exit_code')}"
          f" after {r.get('node_stop_s')} s")
    failed = [k for k, ok in r["targets"].items() if not ok]
    print(f"  targets  {'all met' if not failed else 'NOT met: ' + ', '.join(failed)}" + (f"; JSON in {json_path}" if json_path else ""))
