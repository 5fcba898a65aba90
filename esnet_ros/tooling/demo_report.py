"""The terminal report of ``esnet demo`` (every figure is also in its ``summary.json``)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["fmt", "print_summary"]


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
    print(f"esnet demo: {s['frames']} frames segmented in {s['seconds']:.1f} s on {s['camera_topic']}  "
          f"(network input {s['network_input'][0]}x{s['network_input'][1]}, start-up {s['startup_seconds']:.1f} s)")
    print(f"  FPS        {_rate_line(s)}")
    print(f"  latency    median {fmt(lat['median'], ' ms')}, p90 {fmt(lat['p90'], ' ms')}  (camera stamp -> labels received)")
    if s["miou"] is not None:
        print(f"  mIoU       {s['miou'] * 100:.1f}%  over {s['quality']['frames_scored']} frames "
              f"({s['quality']['note'].split(' by header')[0].replace('labels matched to ', 'against ')})")
    else:
        print(f"  mIoU       n/a ({s['quality']['note']})")
    c = s["node_counters"]
    print(f"  node       received {c['received']}, processed {c['processed']}, dropped {c['dropped']}, rejected {c['rejected']}")
    if s["problems_in_logs"]:
        print(f"  WARNING    tracebacks or exceptions in the logs: {s['problems_in_logs']}")
    video = s["files"].get("video")
    written = (s["files"].get("overlays", []) + [s["files"].get("side_by_side")]
               + [f"{video['file']} ({video['frames']} frames)" if video else None] + ["summary.json"])
    print(f"  wrote      {', '.join(name for name in written if name)} "
          f"to {s['_output']}/")
