"""esnet_ros.ros.sync: exact and approximate stamp matching (message_filters' rules) and the counters.

Messages are plain objects with a real ``builtin_interfaces/Time`` stamp (what message_filters reads); no DDS.
Each behaviour runs on our implementation and, where it imports, on message_filters itself.
"""

from __future__ import annotations

import random
import types

import pytest
from builtin_interfaces.msg import Time

from esnet_ros.ros.sync import StampSync, message_filters_available, stamp_ns

BACKENDS = [
    "builtin",
    pytest.param(
        "message_filters",
        marks=pytest.mark.skipif(
            not message_filters_available(), reason="ROS 2 message_filters not installed (not on PyPI)"
        ),
    ),
]


def msg(name: str, seconds: float):
    ns = round(seconds * 1e9)
    stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
    return types.SimpleNamespace(name=name, header=types.SimpleNamespace(stamp=stamp))


class Recorder:
    def __init__(self, n_inputs: int, **kwargs) -> None:
        self.sets: list[tuple[str, ...]] = []
        self.sync = StampSync(n_inputs, self.on_set, **kwargs)

    def on_set(self, *msgs) -> None:
        self.sets.append(tuple(m.name for m in msgs))
        _ = self.sync.stats  # the callback runs outside the lock: reading the counters from it must not deadlock

    def add(self, index: int, name: str, seconds: float) -> None:
        self.sync.add(index, msg(name, seconds))


def assert_balanced(sync: StampSync) -> None:
    s = sync.stats
    for i in range(sync.n_inputs):
        assert s.received[i] == s.emitted + s.dropped[i] + s.pending[i], (i, s)


def test_stamp_ns_reads_builtin_and_rclpy_times():
    from rclpy.time import Time as RclpyTime

    assert stamp_ns(msg("a", 12.5)) == 12_500_000_000
    assert stamp_ns(types.SimpleNamespace(header=types.SimpleNamespace(stamp=RclpyTime(nanoseconds=7)))) == 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_matches_identical_stamps_in_any_arrival_order(backend):
    r = Recorder(3, backend=backend)
    assert r.sync.backend == backend and r.sync.slop_s is None
    for t in (1, 2, 3):
        r.add(0, f"img{t}", t)
    r.add(1, "depth2", 2)
    r.add(2, "info2", 2)  # set 2 complete first, though image 1 came first
    r.add(2, "info1", 1)
    r.add(1, "depth1", 1.0)
    r.add(1, "depth3", 3.000000001)  # 1 ns off: never matches exactly
    assert r.sets == [("img2", "depth2", "info2"), ("img1", "depth1", "info1")]
    s = r.sync.stats
    assert s.emitted == 2 and s.received == (3, 3, 2) and s.pending == (1, 1, 0) and s.dropped == (0, 0, 0)
    assert s.offsets_s[0] is None and s.offsets_s[1] == pytest.approx(1e-9) and s.offsets_s[2] == pytest.approx(-1.0)
    assert_balanced(r.sync)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_queue_overflow_drops_the_oldest_stamp(backend):
    r = Recorder(2, queue_size=3, backend=backend)
    for name, t in (("img5", 5), ("img1", 1), ("img2", 2), ("img3", 3)):  # img1 is the oldest stamp: it goes
        r.add(0, name, t)
    s = r.sync.stats
    assert s.dropped == (1, 0) and s.pending == (3, 0)
    r.add(1, "depth1", 1)  # its image was pushed out: waits in vain
    r.add(1, "depth5", 5)
    assert r.sets == [("img5", "depth5")]
    r.add(0, "img2b", 2)  # same stamp as a queued image: replaces it, which counts as a drop
    r.add(1, "depth2", 2)
    assert r.sets[-1] == ("img2b", "depth2")
    assert r.sync.stats.dropped == (2, 0)
    assert_balanced(r.sync)


@pytest.mark.parametrize("backend", BACKENDS)
def test_approximate_matches_within_the_slop_and_refuses_beyond(backend):
    r = Recorder(2, slop_s=0.05, backend=backend)
    r.add(0, "img1", 1.000)
    r.add(1, "depth1", 1.030)
    assert r.sets == [("img1", "depth1")]
    r.add(0, "img2", 2.000)
    r.add(1, "depth2", 2.060)  # 60 ms > 50 ms
    r.add(1, "depth2b", 2.050)  # exactly the slop: the spread must be strictly below it
    assert r.sets == [("img1", "depth1")]
    r.add(1, "depth2c", 1.951)
    assert r.sets[-1] == ("img2", "depth2c")
    assert_balanced(r.sync)


@pytest.mark.parametrize("backend", BACKENDS)
def test_approximate_takes_the_nearest_partner_and_leaves_the_rest(backend):
    r = Recorder(2, slop_s=0.05, backend=backend)
    r.add(1, "depth_a", 0.970)
    r.add(1, "depth_b", 1.010)
    r.add(0, "img", 1.000)
    assert r.sets == [("img", "depth_b")]
    assert r.sync.stats.pending == (0, 1)  # depth_a stays queued (the Python policy does not prune)


@pytest.mark.parametrize("backend", BACKENDS)
def test_approximate_with_three_inputs_checks_the_whole_spread(backend):
    r = Recorder(3, slop_s=0.05, backend=backend)
    r.add(1, "depth", 1.040)
    r.add(2, "info", 0.960)
    r.add(0, "img", 1.000)  # each partner within 40 ms of the image, but 80 ms apart
    assert r.sets == []
    r.add(2, "info2", 1.010)
    assert r.sets == [("img", "depth", "info2")]
    assert r.sync.stats.pending == (0, 0, 1)
    assert_balanced(r.sync)


@pytest.mark.parametrize("backend", BACKENDS)
def test_offsets_and_the_diagnostic_sentences(backend):
    r = Recorder(3, slop_s=0.05, backend=backend)
    assert r.sync.unmatched(["image", "depth", "camera_info"]) == []
    r.add(0, "img1", 1.0)
    r.add(1, "depth1", 1.12)
    s = r.sync.stats
    assert s.offsets_s[1] == pytest.approx(0.12) and s.offsets_s[2] is None
    assert r.sync.unmatched(["image", "depth", "camera_info"]) == [
        "depth never within sync_slop_s:=0.05 s of image: last offset +0.120 s",
        "no camera_info received while 1 image messages arrived",
    ]
    r.add(0, "img2", 1.1)  # a newer image: the offset is measured from it
    assert r.sync.stats.offsets_s[1] == pytest.approx(0.02)
    r.add(2, "info", 1.09)
    assert r.sets == [("img2", "depth1", "info")]
    r.add(0, "img3", 2.0)
    r.add(1, "depth3", 1.9)
    assert r.sync.unmatched(["image", "depth", "camera_info"], slop_parameter="depth_slop_s") == [
        "depth no longer (after 1 matched sets) within depth_slop_s:=0.05 s of image: last offset -0.100 s",
        "camera_info no longer (after 1 matched sets) within depth_slop_s:=0.05 s of image: last offset -0.910 s",
    ]


def test_exact_diagnostic_and_slop_zero_is_exact():
    r = Recorder(2, slop_s=0.0)
    assert r.sync.slop_s is None
    r.add(0, "img", 1.0)
    r.add(1, "depth", 1.25)
    assert r.sync.unmatched(["image", "depth"]) == [
        "depth never stamped exactly as image (exact sync, sync_slop_s:=0.0): last offset +0.250 s"
    ]


def test_arguments_are_checked():
    cb = print
    with pytest.raises(ValueError, match="n_inputs=1: a sync needs at least 2 inputs"):
        StampSync(1, cb)
    with pytest.raises(ValueError, match="queue_size=0 must be at least 1"):
        StampSync(2, cb, queue_size=0)
    with pytest.raises(ValueError, match=r"slop_s=-0.1 must be >= 0 seconds"):
        StampSync(2, cb, slop_s=-0.1)
    with pytest.raises(ValueError, match="backend='fast' must be one of auto, message_filters, builtin"):
        StampSync(2, cb, backend="fast")
    with pytest.raises(IndexError, match=r"index=2: this sync has inputs 0..1"):
        StampSync(2, cb).add(2, msg("x", 1))
    with pytest.raises(ValueError, match="must name each of the 2 inputs"):
        StampSync(2, cb).unmatched(["image"])
    auto = StampSync(2, cb)
    assert auto.backend == ("message_filters" if message_filters_available() else "builtin")
    if not message_filters_available():
        with pytest.raises(ImportError, match="backend='message_filters' needs the ROS 2 message_filters package"):
            StampSync(2, cb, backend="message_filters")


@pytest.mark.skipif(not message_filters_available(), reason="ROS 2 message_filters not installed (not on PyPI)")
@pytest.mark.parametrize("slop_s", [None, 0.02])
def test_builtin_and_message_filters_agree_on_a_jittery_stream(slop_s):
    rng = random.Random(5)
    events = []
    for k in range(200):
        jitter = 0.0 if slop_s is None else 0.01
        events.append((rng.random(), 0, f"img{k}", k / 30 + rng.uniform(-jitter, jitter)))
        if rng.random() < 0.8:
            events.append((rng.random(), 1, f"depth{k}", k / 30 + rng.uniform(-1.5 * jitter, 1.5 * jitter)))
    events.sort(key=lambda e: e[3] + e[0] * 0.2)  # arrival: roughly by stamp, up to 200 ms late
    ours, theirs = Recorder(2, slop_s=slop_s, backend="builtin"), Recorder(2, slop_s=slop_s, backend="message_filters")
    for _, index, name, t in events:
        ours.add(index, name, t)
        theirs.add(index, name, t)
    assert ours.sets == theirs.sets and len(ours.sets) > 50
    assert ours.sync.stats == theirs.sync.stats
