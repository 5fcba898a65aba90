"""What Nav2's semantic_segmentation_layer needs, received as the layer receives it (over real DDS).

The node runs the bundled CamVid model with config/nav2_camvid_remap.yaml and a depth topic. The test
subscribes like the layer (ros-navigation/semantic_segmentation_layer): labels, confidence and points best
effort (sensor data QoS, depth 10) through a time synchronizer with the layer's policies (exact, Humble;
approximate with 0.1 s, Jazzy and later), the class list transient local, and checks the class names
against config/nav2_semantic_costmap.yaml.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import yaml
from node_harness import REPO, image_array, make_image, next_stamp, scene, set_stamp
from test_spatial import DEPTH_TOPIC, camera_info, decode, depth_image, plane_mm

pytestmark = pytest.mark.ros

H, W = 48, 64
NODE_PARAMS = {
    "weights": "camvid",
    "input_width": 64,
    "input_height": 48,
    "device": "cpu",
    "depth_topic": DEPTH_TOPIC,
    "class_remap": str(REPO / "config" / "nav2_camvid_remap.yaml"),
}
COSTMAP = yaml.safe_load((REPO / "config" / "nav2_semantic_costmap.yaml").read_text())
LAYER = COSTMAP["costmap"]["costmap"]["ros__parameters"]["semantic_segmentation_layer"]


def costed_classes() -> set[str]:
    source = LAYER[LAYER["observation_sources"]]
    return {name for group in source["class_types"] for name in source[group]["classes"]}


@pytest.mark.parametrize("slop", [None, 0.1], ids=["exact-humble", "approximate-jazzy"])
def test_layer_receives_synchronized_triples_with_its_class_names(client, slop):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from esnet_ros.msg import ClassMap
    from esnet_ros.ros.sync import StampSync

    source = LAYER[LAYER["observation_sources"]]
    triples = []
    sync = StampSync(3, lambda *msgs: triples.append(msgs), slop_s=slop, queue_size=LAYER["sensor_data_depth"])
    subs = [
        client.node.create_subscription(kind, source[key], lambda m, i=i: sync.add(i, m), qos_profile_sensor_data)
        for i, (kind, key) in enumerate(
            ((Image, "segmentation_topic"), (Image, "confidence_topic"), (PointCloud2, "pointcloud_topic"))
        )
    ]
    class_maps, sub = client.collect(ClassMap, "/esnet/class_map", latched=True)
    subs.append(sub)
    qos = client.qos(reliable=True, depth=5)
    pubs = [
        client.node.create_publisher(kind, topic, qos)
        for kind, topic in ((Image, "/camera/image_raw"), (Image, DEPTH_TOPIC), (CameraInfo, "/camera/camera_info"))
    ]
    try:
        client.spin_until(lambda: all(p.get_subscription_count() > 0 for p in pubs), 60, "the node's subscriptions")
        image, depth, info = make_image(scene(H, W, seed=8), "rgb8"), depth_image(plane_mm(), "16UC1"), camera_info()
        end = time.monotonic() + 60
        while len(triples) < 3 and time.monotonic() < end:
            set_stamp(image, next_stamp())
            depth.header.stamp = info.header.stamp = image.header.stamp
            for pub, msg in zip(reversed(pubs), (info, depth, image), strict=True):
                pub.publish(msg)
            client.spin_for(0.3)
        assert len(triples) >= 3, f"{len(triples)} synchronized triples in 60 s"
        names = client.spin_until(
            lambda: class_maps.messages and [c.name for c in class_maps.messages[-1].classes],
            10,
            "the latched class map",
        )
        assert names == ["traversable", "caution", "obstacle"] and set(names) == costed_classes()
        ids = {c.id for c in class_maps.messages[-1].classes}
        for labels_msg, conf_msg, cloud in triples:
            assert labels_msg.header == conf_msg.header == cloud.header
            assert (labels_msg.encoding, conf_msg.encoding) == ("mono8", "mono8")
            assert labels_msg.step == labels_msg.width and conf_msg.step == conf_msg.width  # the layer reads bytes
            assert (cloud.height, cloud.width) == (labels_msg.height, labels_msg.width) == (H, W)
            labels = image_array(labels_msg)
            assert set(np.unique(labels)) <= ids | {255}
            np.testing.assert_array_equal(decode(cloud)["label"], labels)
    finally:
        for sub in subs:
            client.node.destroy_subscription(sub)
        for pub in pubs:
            client.node.destroy_publisher(pub)
