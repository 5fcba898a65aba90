"""Issue 22: after serving real traffic (raw or compressed, every output subscribed, 30 Hz), SIGINT and SIGTERM
end the node with exit code 0 within 2 s, and another process stops seeing it in the graph within 2 s after."""

from __future__ import annotations

import signal
import time

import cv2
import pytest
from node_harness import BASE_PARAMS, Camera, Client, NodeProcess, make_image, next_stamp, scene, set_stamp

pytestmark = [pytest.mark.ros]

OUTPUTS = ("labels", "color", "overlay", "confidence", "stats")


def _in_graph(client: Client, name: str, ns: str) -> bool:
    return (name, ns) in client.node.get_node_names_and_namespaces()


def _frame(transport: str):
    pixels = scene(240, 320)
    if transport == "raw":
        return make_image(pixels, "rgb8")
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    msg.header.frame_id = "camera_optical"
    msg.format = "jpeg"
    msg.data = cv2.imencode(".jpg", pixels[..., ::-1])[1].tobytes()
    return msg


@pytest.mark.parametrize(
    "transport, sig",
    [("raw", signal.SIGINT), ("compressed", signal.SIGTERM), ("raw", signal.SIGTERM), ("compressed", signal.SIGINT)],
)
def test_node_leaves_the_graph_after_serving_traffic(rclpy_context, transport, sig):
    from sensor_msgs.msg import CompressedImage, Image

    from esnet_ros.msg import SegmentationStats

    ns = f"/exit_{transport}_{sig.name.lower()}"
    params = {**BASE_PARAMS, "input_transport": transport}
    proc = NodeProcess(params, ros_args=("-r", f"__ns:={ns}"))
    client = Client(rclpy_context, f"esnet_test_exit_{transport}_{sig.name.lower()}")
    try:
        proc.wait_for(r"subscribed to", 90)
        collectors = {
            name: client.collect(SegmentationStats if name == "stats" else Image, f"{ns}/esnet/{name}")[0]
            for name in OUTPUTS
        }
        topic = f"{ns}/camera/image_raw" + ("/compressed" if transport == "compressed" else "")
        camera = Camera(client, topic, msg_type=CompressedImage if transport == "compressed" else None)
        camera.wait_for_subscriber()
        msg = _frame(transport)
        camera.roundtrip(msg, collectors, timeout=60)  # the node is warm and every output flows
        for _ in range(30):  # a second of camera traffic at 30 Hz
            set_stamp(msg, next_stamp())
            camera.send(msg)
            client.spin_for(1 / 30)
        client.spin_for(0.3)
        assert all(len(c.messages) >= 2 for c in collectors.values()), {
            k: len(c.messages) for k, c in collectors.items()
        }
        assert _in_graph(client, "esnet_segmentation", ns)
        rc, seconds = proc.stop(sig)
        exited = time.monotonic()
        assert rc == 0 and seconds < 2.0, (rc, seconds, proc.log[-3000:])
        client.spin_until(
            lambda: not _in_graph(client, "esnet_segmentation", ns),
            2.0 - (time.monotonic() - exited),
            "the node gone from get_node_names_and_namespaces() of another process",
        )
        assert "Traceback" not in proc.log, proc.log[-3000:]
    finally:
        client.close()
        proc.stop(signal.SIGKILL)
