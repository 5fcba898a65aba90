"""The node's topic names and output names, free of ROS imports (the tooling and ``esnet bag`` read them too)."""

from __future__ import annotations

__all__ = ["IMAGE_OUTPUTS", "OUTPUTS", "OUTPUT_TOPICS", "NODE_NAME", "CAMERA_TOPIC"]

NODE_NAME = "esnet_segmentation"
CAMERA_TOPIC = "/camera/image_raw"
#: the image outputs, in publishing order
IMAGE_OUTPUTS = ("labels", "color", "overlay", "confidence")
OUTPUTS = IMAGE_OUTPUTS + ("stats",)
#: the outputs' topics under their default (un-namespaced) names
OUTPUT_TOPICS = {name: f"/esnet/{name}" for name in OUTPUTS}
