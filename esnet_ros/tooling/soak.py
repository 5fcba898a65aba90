"""``esnet soak``: the segmentation node against the synthetic camera for minutes, watched.

Starts the synthetic camera (1280x720 bgr8 at ``rate_hz``, reliable) and the segmentation node
(network input ``width x height``, default 512x256) as child processes over real DDS
(:mod:`esnet_ros.tooling.harness`), subscribes to the node's labels and stats, and reports:

- the node's counters from ``/diagnostics`` (received, processed, dropped, rejected, by cause)
  after the camera has stopped and the node has finished its last frame, and whether
  ``received == processed + dropped + rejected``; also the camera's published count;
- the node process's RSS over time (psutil, every ``sample_s``), and its growth after a warm-up
  (the median of the last three samples minus the median of the first three after warm-up);
- latency percentiles (camera stamp -> labels received by this process) and the node's own
  stage timings from ``esnet/stats``;
- whether a traceback or an exception appeared in the node's log, and how it exited.

It passes when the targets of issue 7 hold (counter identity, RSS growth <= ``max_rss_growth_mb``,
no exception in the log, a clean exit); the report records every figure either way.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
import sys
import tempfile
import time
from typing import Any

import numpy as np

from esnet_ros.core.summary import json_safe, percentiles
from esnet_ros.ros.dds import use_large_message_profile
from esnet_ros.tooling.harness import (
    COUNTERS,
    Child,
    DemoError,
    camera_argv,
    camera_published,
    indent_log,
    network_input_size,
    node_argv,
)
from esnet_ros.tooling.monitor import NODE_STAGES, Monitor, close_run, drain_and_count

__all__ = ["SoakOptions", "rss_growth", "soak", "print_report"]

log = logging.getLogger(__name__)

ERROR_LINE_RE = re.compile(r"^\[ERROR\].*$", re.MULTILINE)


@dataclasses.dataclass
class SoakOptions:
    """What ``esnet soak`` runs; the fields mirror its options (see :mod:`esnet_ros.cli.soak`)."""

    minutes: float = 10.0
    rate_hz: float = 30.0
    width: int = 512
    height: int = 256
    weights: str | None = None
    camera_size: tuple[int, int] = (1280, 720)
    pool_size: int = 6
    sample_s: float = 2.0
    warmup_s: float | None = None  # None: a quarter of the run, at most 60 s
    max_rss_growth_mb: float = 20.0
    log_dir: str | None = None  # None: a temporary folder
    startup_timeout: float = 120.0

    def check(self) -> None:
        """``ValueError`` naming the option and the fix for anything out of range."""
        if not self.minutes > 0:
            raise ValueError(f"--minutes {self.minutes} must be > 0 (fractions allowed, e.g. --minutes 0.5)")
        if not 0 < self.rate_hz <= 1000:
            raise ValueError(f"--rate-hz {self.rate_hz} must be in (0, 1000], e.g. --rate-hz 30")
        if not 0.1 <= self.sample_s <= 60:
            raise ValueError(f"--sample-s {self.sample_s} must be in 0.1..60")
        if self.warmup_s is not None and not 0 <= self.warmup_s < self.minutes * 60:
            raise ValueError(f"--warmup-s {self.warmup_s} must be in 0..{self.minutes * 60:g} (shorter than the run)")


def rss_growth(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, Any]:
    """RSS figures (MB) from ``[(seconds since start, MB)]``: baseline after warm-up, final, growth."""
    after = [mb for t, mb in samples if t >= warmup_s]
    if len(after) < 2:
        return {
            "warmup_s": warmup_s,
            "baseline_mb": None,
            "final_mb": samples[-1][1] if samples else None,
            "max_mb": max((mb for _, mb in samples), default=None),
            "growth_mb": None,
            "growth_max_mb": None,
            "note": "too few samples after the warm-up; run longer or sample more often",
        }
    k = min(3, len(after) // 2)
    baseline = float(np.median(after[:k]))
    final = float(np.median(after[-k:]))
    return {
        "warmup_s": warmup_s,
        "baseline_mb": round(baseline, 2),
        "final_mb": round(final, 2),
        "max_mb": round(max(mb for _, mb in samples), 2),
        "growth_mb": round(final - baseline, 2),
        "growth_max_mb": round(max(after) - baseline, 2),
    }


@dataclasses.dataclass
class _Samples:
    """What the watch loop collects every ``sample_s``."""

    node_rss: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    camera_rss: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    counters: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def soak(options: SoakOptions) -> dict[str, Any]:
    """Run the soak described by ``options``; returns the report (JSON-safe)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from esnet_ros.core.checkpoint import resolve_weights

    options.check()
    weights = resolve_weights(options.weights)
    if not options.weights and not weights.is_file():
        raise FileNotFoundError(
            f"the bundled model {weights} is missing (a partial install?); pass --weights PATH to a checkpoint"
        )
    size, _, _ = network_input_size(weights, options.width, options.height)
    duration = options.minutes * 60.0
    warmup_s = options.warmup_s if options.warmup_s is not None else min(60.0, duration / 4)
    log_dir = pathlib.Path(options.log_dir) if options.log_dir else pathlib.Path(tempfile.mkdtemp(prefix="esnet_soak_"))
    report = _report_head(options, size, weights, log_dir)
    context = rclpy.Context()
    use_large_message_profile()  # also inherited by the processes started here
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    children: list[Child] = []
    monitor = None
    samples = _Samples()
    failure = None
    try:
        _start_children(children, options, size=size, weights=weights, log_dir=log_dir)
        monitor = Monitor(context, ground_truth=False, stats=True, name="esnet_soak_monitor")
        report.update(_run(options, monitor, *children, samples=samples, duration=duration))
    except DemoError as exc:
        failure = str(exc)
    finally:
        close_run(children, monitor, context)
    node = children[1] if len(children) > 1 else None
    return _judge(options, report, samples, warmup_s=warmup_s, node=node, failure=failure)


def _report_head(
    options: SoakOptions, size: tuple[int, int], weights: pathlib.Path, log_dir: pathlib.Path
) -> dict[str, Any]:
    """What the report says before the run: the settings, the model, the machine."""
    cam_w, cam_h = options.camera_size
    return {
        "minutes": options.minutes,
        "rate_hz": options.rate_hz,
        "network_input": list(size),
        "camera": {
            "width": cam_w,
            "height": cam_h,
            "encoding": "bgr8",
            "reliability": "reliable",
            "pool_size": options.pool_size,
        },
        "weights": str(weights),
        "log_dir": str(log_dir),
        "machine": {"cpus": os.cpu_count(), "loadavg_1_5_15_at_start": [round(v, 2) for v in os.getloadavg()]},
    }


def _start_children(
    children: list[Child], options: SoakOptions, *, size: tuple[int, int], weights: pathlib.Path, log_dir: pathlib.Path
) -> None:
    """Start the synthetic camera, then the node, into ``children`` (each as soon as it runs, so that a failed
    start still stops the one before)."""
    cam_w, cam_h = options.camera_size
    children.append(
        Child(
            "synthetic camera",
            camera_argv(width=cam_w, height=cam_h, rate_hz=options.rate_hz, pool_size=options.pool_size),
            log_dir / "camera.log",
        )
    )
    children.append(Child("segmentation node", node_argv(weights=weights, input_size=size), log_dir / "node.log"))
    print(
        f"esnet soak: {options.minutes:g} min, camera {cam_w}x{cam_h} at {options.rate_hz:g} Hz -> node "
        f"(network input {size[0]}x{size[1]}, pid {children[1].pid}); logs in {log_dir}",
        flush=True,
    )


def _run(
    options: SoakOptions, monitor: Monitor, camera: Child, node: Child, *, samples: _Samples, duration: float
) -> dict[str, Any]:
    """Wait for the first labels, watch for ``duration``, stop the camera, count, stop the node."""
    start = time.monotonic()
    if not monitor.wait_for(lambda: len(monitor.label_times) > 0, options.startup_timeout, (camera, node)):
        raise DemoError(
            f"no labels within {options.startup_timeout:g} s; last lines of the node's log:\n"
            + indent_log(node.tail(15))
        )
    startup_s = time.monotonic() - start
    monitor.reset()
    window_s = _watch(options, monitor, camera, node, samples=samples, duration=duration)
    monitor.recording = False
    cam_status = monitor.camera_status() or {}
    camera_exit = camera.stop()
    counters, identity = drain_and_count(monitor, 10.0)
    full = dict(monitor.node_status() or {})
    stop_start = time.monotonic()
    node_exit = node.stop()
    published = camera_published(camera, cam_status)
    frames = len(monitor.label_times)
    by_cause = {
        k: int(float(v))
        for k, v in full.items()
        if k.startswith(("dropped.", "rejected.", "warnings.")) and _is_number(v)
    }
    return {
        "startup_seconds": round(startup_s, 2),
        "camera_exit_code": camera_exit,
        "node_exit_code": node_exit,
        "node_stop_s": round(time.monotonic() - stop_start, 2),
        "seconds": round(window_s, 1),
        "counters": {**counters, **by_cause},
        "counter_identity_holds": identity,
        "camera_published": published,
        "not_received_by_node": (published - counters["received"])
        if published is not None and counters["received"] is not None
        else None,
        "labels_received": frames,
        "labels_fps": round(frames / window_s, 2),
        "latency_ms": percentiles([ms for _, ms in monitor.latencies_ms], (50, 90, 95, 99)),
        "node_timing_ms": {
            key: percentiles([getattr(s, key) for s in monitor.stats], (50, 90, 99)) for key in NODE_STAGES
        },
    }


def _watch(
    options: SoakOptions, monitor: Monitor, camera: Child, node: Child, *, samples: _Samples, duration: float
) -> float:
    """Spin for ``duration``, sampling RSS and counters every ``sample_s``; returns the window's length."""
    import psutil
    from tqdm import tqdm

    node_proc, camera_proc = psutil.Process(node.pid), psutil.Process(camera.pid)
    t0 = time.monotonic()
    next_sample = t0
    with tqdm(
        total=round(duration),
        unit="s",
        desc="esnet soak",
        dynamic_ncols=True,
        file=sys.stderr,
        mininterval=1.0,
        bar_format="{desc}: {n:.0f}/{total:.0f} s |{bar}| {postfix}",
    ) as bar:
        while (now := time.monotonic()) < t0 + duration:
            monitor.spin(min(0.25, t0 + duration - now))
            camera.check_alive()
            node.check_alive()
            if time.monotonic() < next_sample:
                continue
            t = round(time.monotonic() - t0, 2)
            samples.node_rss.append((t, node_proc.memory_info().rss / 2**20))
            samples.camera_rss.append((t, camera_proc.memory_info().rss / 2**20))
            samples.counters.append({"t": t, **monitor.counters()})
            next_sample += options.sample_s
            c = samples.counters[-1]
            recent = [ms for _, ms in monitor.latencies_ms[-60:]]
            bar.set_postfix_str(
                f"recv {c['received']} proc {c['processed']} drop {c['dropped']} rej {c['rejected']}  "
                f"RSS {samples.node_rss[-1][1]:.0f} MB  latency {np.median(recent) if recent else float('nan'):.0f} ms",
                refresh=False,
            )
            bar.n = min(round(t), bar.total)
            bar.refresh()
    return time.monotonic() - t0


def _judge(
    options: SoakOptions,
    report: dict[str, Any],
    samples: _Samples,
    *,
    warmup_s: float,
    node: Child | None,
    failure: str | None,
) -> dict[str, Any]:
    """Add RSS growth, the node's log findings and the targets to ``report``."""
    report["machine"]["loadavg_1_5_15_at_end"] = [round(v, 2) for v in os.getloadavg()]
    node_text = node.log_text() if node is not None else ""
    report["rss_mb"] = {
        **rss_growth(samples.node_rss, warmup_s),
        "samples": [[t, round(mb, 2)] for t, mb in samples.node_rss],
    }
    report["camera_rss_mb"] = rss_growth(samples.camera_rss, warmup_s)
    report["counter_samples"] = samples.counters
    report["node_log"] = {
        "path": str(node.log_path) if node is not None else None,
        "exceptions": node.problems() if node is not None else [],
        "error_lines": ERROR_LINE_RE.findall(node_text)[:20],
    }
    growth = report["rss_mb"]["growth_mb"]
    targets = {
        "completed": failure is None,
        "counter_identity": bool(report.get("counter_identity_holds")),
        "rss_growth_ok": growth is not None and growth <= options.max_rss_growth_mb,
        "no_exceptions": not report["node_log"]["exceptions"],
        "clean_exit": report.get("node_exit_code") == 0,
    }
    report["failure"] = failure
    report["targets"] = targets
    report["passed"] = all(targets.values())
    return json_safe(report)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def print_report(r: dict[str, Any], json_path: str | None) -> None:
    """The soak's terminal report (every figure is also in the JSON)."""
    print()
    if r.get("failure"):
        print(f"esnet soak: FAILED: {r['failure']}")
    c = r.get("counters") or dict.fromkeys(COUNTERS)
    lat = r.get("latency_ms") or {}
    rss = r["rss_mb"]
    print(
        f"esnet soak: {r.get('seconds', 0):.0f} s at {r['rate_hz']:g} Hz, "
        f"network input {r['network_input'][0]}x{r['network_input'][1]}"
    )
    print(
        f"  camera published {r.get('camera_published')}; node received {c['received']}, processed {c['processed']}, "
        f"dropped {c['dropped']}, rejected {c['rejected']}  "
        f"(identity {'holds' if r.get('counter_identity_holds') else 'BROKEN'})"
    )
    print(
        f"  RSS  baseline {rss['baseline_mb']} MB after {rss['warmup_s']:.0f} s warm-up, final {rss['final_mb']} MB, "
        f"growth {rss['growth_mb']} MB (max {rss['growth_max_mb']} MB)"
    )
    if lat:
        print(
            f"  latency  median {lat.get('median')} ms, p90 {lat.get('p90')} ms, p99 {lat.get('p99')} ms, "
            f"max {lat.get('max')} ms"
            f"  ({r.get('labels_fps')} labels/s)"
        )
    exc = r["node_log"]["exceptions"]
    print(
        f"  node log  {'no exceptions' if not exc else f'{len(exc)} exception(s): {exc[:3]}'}; "
        f"exit code {r.get('node_exit_code')}"
        f" after {r.get('node_stop_s')} s"
    )
    failed = [k for k, ok in r["targets"].items() if not ok]
    print(
        f"  targets  {'all met' if not failed else 'NOT met: ' + ', '.join(failed)}"
        + (f"; JSON in {json_path}" if json_path else "")
    )
