"""The process/monitor harness shared by ``esnet demo``, ``esnet soak`` and the node bench."""

from __future__ import annotations

import signal
import sys
import time

import pytest


def test_a_dead_child_is_reported_with_its_last_log_lines(tmp_path):
    from esnet_ros.tooling.harness import Child, DemoError

    child = Child(
        "segmentation node",
        [sys.executable, "-c", "print('loading model'); print('boom: bad weights'); raise SystemExit(3)"],
        tmp_path / "node.log",
    )
    end = time.monotonic() + 30
    while child.alive() and time.monotonic() < end:
        time.sleep(0.05)
    with pytest.raises(DemoError, match="segmentation node exited with code 3") as info:
        child.check_alive()
    assert "boom: bad weights" in str(info.value)
    assert child.stop() == 3


def test_child_stop_escalates_when_sigint_is_ignored(tmp_path):
    from esnet_ros.tooling.harness import Child

    code = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    child = Child("stubborn", [sys.executable, "-c", code], tmp_path / "stubborn.log")
    end = time.monotonic() + 30
    while "ready" not in child.log_text() and time.monotonic() < end:
        time.sleep(0.05)
    start = time.monotonic()
    assert child.stop(timeout_s=0.5) == -signal.SIGTERM
    assert time.monotonic() - start < 5


def test_parse_camera_size_names_the_fix():
    from esnet_ros.tooling.harness import parse_camera_size

    assert parse_camera_size("1280x720") == (1280, 720)
    with pytest.raises(ValueError, match=r"--camera-size '1280\*720' must look like WIDTHxHEIGHT, e.g. 1280x720"):
        parse_camera_size("1280*720")
    with pytest.raises(ValueError, match="too small; use at least 16x16"):
        parse_camera_size("8x8")


def test_argv_builders():
    from esnet_ros.tooling.harness import camera_argv, node_argv

    argv = camera_argv(width=320, height=240)
    assert argv[:3] == [sys.executable, "-m", "esnet_ros.tooling.synthetic_camera"]
    assert "rate_hz:=30.0" in argv and "width:=320" in argv and "height:=240" in argv
    argv = node_argv(weights="/w.pt", input_size=(512, 256), camera_topic="/cam/image", transport="compressed")
    assert argv[:3] == [sys.executable, "-m", "esnet_ros.ros"]
    for param in (
        "weights:=/w.pt",
        "input_width:=512",
        "input_height:=256",
        "image_topic:=/cam/image",
        "input_transport:=compressed",
    ):
        assert param in argv


def test_message_array_reads_labels_and_color_as_bgr():
    Image = pytest.importorskip("sensor_msgs.msg").Image
    from esnet_ros.tooling.monitor import message_array

    labels = Image(height=2, width=3, encoding="mono8", step=3, data=bytes(range(6)))
    assert message_array(labels).tolist() == [[0, 1, 2], [3, 4, 5]]
    rgb = Image(height=1, width=2, encoding="rgb8", step=6, data=bytes([1, 2, 3, 4, 5, 6]))
    assert message_array(rgb).tolist() == [[[3, 2, 1], [6, 5, 4]]]
    truncated = Image(height=2, width=3, encoding="mono8", step=3, data=bytes(4))
    assert message_array(truncated) is None
    assert message_array(Image(height=1, width=1, encoding="weird", step=1, data=b"x")) is None


def test_network_input_size_reads_the_checkpoint_unless_overridden(reference_checkpoint):
    from esnet_ros.tooling.harness import network_input_size

    size, meta, labels = network_input_size(reference_checkpoint, 256, 128)
    assert size == (256, 128) and labels.num_classes == 19 and meta is not None
    with pytest.raises(ValueError, match="--width 250 must be a positive multiple of 8"):
        network_input_size(reference_checkpoint, 250, 128)
