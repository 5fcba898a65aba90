"""Fixtures shared by the ROS tests: ``node_process`` starts one node for a module (its ``NODE_PARAMS``);
``client``, ``camera`` and ``outputs`` attach to it."""

from __future__ import annotations

import pytest
from node_harness import BASE_PARAMS, NET_H, NET_W, REFERENCE, Camera, Client, NodeProcess


@pytest.fixture(scope="module")
def node_process(request):
    """One node process for the module, with the module's ``NODE_PARAMS`` (default: BASE_PARAMS)."""
    proc = NodeProcess(getattr(request.module, "NODE_PARAMS", BASE_PARAMS))
    try:
        proc.wait_for(r"subscribed to /camera/image_raw", timeout=90)
        yield proc
    finally:
        proc.stop()
        assert "Traceback" not in proc.log, proc.log[-4000:]


@pytest.fixture(scope="module")
def client(request, rclpy_context, node_process):
    c = Client(rclpy_context, f"esnet_test_client_{request.module.__name__.rsplit('.', 1)[-1]}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def camera(client):
    cam = Camera(client)
    cam.wait_for_subscriber()
    yield cam
    cam.destroy()


@pytest.fixture(scope="module")
def outputs(client):
    """Subscriptions to every output for the module (tests that need none destroy their own)."""
    from sensor_msgs.msg import Image

    from esnet_ros.msg import SegmentationStats

    subs = {}
    cols = {}
    for name in ("labels", "color", "overlay", "confidence"):
        cols[name], subs[name] = client.collect(Image, f"/esnet/{name}")
    cols["stats"], subs["stats"] = client.collect(SegmentationStats, "/esnet/stats")
    yield cols
    for sub in subs.values():
        client.node.destroy_subscription(sub)


@pytest.fixture(scope="module")
def reference_segmenter():
    """The engine in this process, with the settings the test nodes use (backend and precision auto, as theirs)."""
    from esnet_ros.inference.segmenter import Segmenter

    return Segmenter(str(REFERENCE), device="cpu", backend="auto", precision="auto", input_size=(NET_W, NET_H))
