"""rclpy's qos_overrides on the camera subscription: a reliability the user pins wins over input_qos's auto,
and the parameter shows what was pinned (declared read-only by the node, no private rclpy state read)."""

from __future__ import annotations

import pytest
from node_harness import BASE_PARAMS

pytestmark = pytest.mark.ros

TOPIC = "/camera/image_raw"
NODE_PARAMS = {
    **BASE_PARAMS,
    f"qos_overrides.{TOPIC}.subscription.reliability": "best_effort",
    f"qos_overrides.{TOPIC}.subscription.depth": 3,
}


def test_pinned_reliability_and_depth_win_over_auto(node_process, client, camera):
    line = node_process.wait_for(rf"subscribed to {TOPIC} \(Image, best_effort, depth 3\)", timeout=30)
    assert f"qos_overrides.{TOPIC}.subscription.reliability" in line
    # a reliable camera publisher (the fixture's) would make auto choose reliable: the pin keeps best effort
    client.spin_for(1.5)
    assert node_process.count(rf"subscribed to {TOPIC} \(Image, reliable") == 0
    assert client.get_parameters(
        f"qos_overrides.{TOPIC}.subscription.reliability",
        f"qos_overrides.{TOPIC}.subscription.depth",
        "input_qos.reliability",
    ) == ["best_effort", 3, "auto"]
    result = client.set_parameters(**{f"qos_overrides.{TOPIC}.subscription.depth": 5})[0]
    assert not result.successful and "read-only" in result.reason
