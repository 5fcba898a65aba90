"""``python -m esnet_ros.ros --ros-args ...``: the segmentation node (see :func:`esnet_ros.ros.entry.run_node`)."""

from esnet_ros.ros.entry import run_node

if __name__ == "__main__":
    run_node()
