"""``esnet soak``: the 1-minute soak of issue 7 in the suite, its JSON checked.

ESNET_SOAK_MINUTES overrides the length (e.g. 0.5 on a slow CI runner, 10 for the release figure).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MINUTES = float(os.environ.get("ESNET_SOAK_MINUTES", "1"))
SAMPLE_S = 1.0


def _weights_args(reference_checkpoint) -> list[str]:
    from esnet_ros.core.checkpoint import demo_weights_path

    return [] if demo_weights_path().is_file() else ["--weights", str(reference_checkpoint)]


@pytest.fixture(scope="module")
def soak_report(tmp_path_factory, reference_checkpoint):
    out = tmp_path_factory.mktemp("soak")
    argv = [
        sys.executable,
        "-m",
        "esnet_ros.cli",
        "soak",
        "--minutes",
        str(MINUTES),
        "--rate-hz",
        "30",
        "--width",
        "256",
        "--height",
        "128",
        "--pool-size",
        "3",
        "--sample-s",
        str(SAMPLE_S),
        "--json",
        str(out / "soak.json"),
        "--log-dir",
        str(out / "logs"),
        *_weights_args(reference_checkpoint),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=MINUTES * 60 + 180, cwd=REPO)
    assert (out / "soak.json").is_file(), f"no JSON ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return json.loads((out / "soak.json").read_text()), result


@pytest.mark.ros
@pytest.mark.slow
def test_soak_passes_its_targets(soak_report):
    report, result = soak_report
    assert report["failure"] is None, report["failure"]
    assert report["passed"], f"targets not met: {report['targets']}\n{result.stdout}"
    assert result.returncode == 0
    assert "targets  all met" in result.stdout


@pytest.mark.ros
@pytest.mark.slow
def test_soak_counters_add_up(soak_report):
    report, _ = soak_report
    c = report["counters"]
    assert c["received"] > 0 and c["processed"] > 0
    assert c["received"] == c["processed"] + c["dropped"] + c["rejected"]
    assert report["counter_identity_holds"] is True
    assert c["rejected"] == 0, "the synthetic camera sends only valid frames"
    assert c["dropped"] == c["dropped.superseded"] + c["dropped.no_subscriber"]
    # the camera published at least what the node received, and about rate x duration
    assert report["camera_published"] >= c["received"]
    assert report["camera_published"] >= 0.6 * 30 * report["seconds"]
    assert report["labels_received"] <= c["processed"]


@pytest.mark.ros
@pytest.mark.slow
def test_soak_rss_samples_and_growth(soak_report):
    report, _ = soak_report
    rss = report["rss_mb"]
    samples = rss["samples"]
    assert len(samples) >= 0.8 * MINUTES * 60 / SAMPLE_S
    times = [t for t, _ in samples]
    assert times == sorted(times) and times[-1] >= 0.8 * MINUTES * 60
    assert all(50 < mb < 8000 for _, mb in samples), "node RSS in MB: a python+torch process"
    assert rss["warmup_s"] == pytest.approx(min(60.0, MINUTES * 60 / 4))
    assert rss["growth_mb"] is not None and rss["growth_mb"] <= 20.0
    assert rss["baseline_mb"] <= rss["max_mb"] and rss["final_mb"] <= rss["max_mb"]
    assert len(report["counter_samples"]) == len(samples)


@pytest.mark.ros
@pytest.mark.slow
def test_soak_latency_and_log(soak_report):
    report, _ = soak_report
    lat = report["latency_ms"]
    assert lat["count"] == report["labels_received"] > 0
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert report["node_timing_ms"]["inference_ms"]["median"] > 0
    assert report["node_log"]["exceptions"] == []
    assert report["node_exit_code"] == 0 and report["node_stop_s"] < 5
    assert pathlib.Path(report["node_log"]["path"]).is_file()


def test_rss_growth_uses_the_samples_after_warm_up():
    from esnet_ros.tooling.soak import rss_growth

    samples = [(0, 100.0), (2, 300.0), (4, 310.0), (6, 311.0), (8, 309.0), (10, 330.0), (12, 331.0), (14, 329.0)]
    r = rss_growth(samples, warmup_s=4)
    assert r["baseline_mb"] == 310.0 and r["final_mb"] == 330.0 and r["growth_mb"] == 20.0
    assert r["growth_max_mb"] == 21.0 and r["max_mb"] == 331.0
    assert rss_growth([(0, 1.0)], warmup_s=4)["growth_mb"] is None


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--minutes", "0"], "--minutes 0.0 must be > 0"),
        (["--rate-hz", "-1"], "--rate-hz -1.0 must be in (0, 1000]"),
        (["--minutes", "1", "--warmup-s", "90"], "--warmup-s 90.0 must be in 0..60"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(args, expected):
    result = subprocess.run(
        [sys.executable, "-m", "esnet_ros.cli", "soak", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 2
    assert expected in result.stderr
