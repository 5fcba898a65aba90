"""Launch one segmentation node per camera, each in its own namespace.

    ros2 launch esnet_ros multi_camera.launch.py cameras:=front,rear weights:=/path/to/esnet.safetensors

Camera ``front`` is read from ``/front/camera/image_raw`` (``image_topic`` relative to the
namespace) and published on ``/front/esnet/labels``, ``/front/esnet/overlay``, ... Every
instance reads the same ``params_file``; its ``/**`` section applies to all of them.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ("cameras", "front,rear",
     "Comma-separated camera names; each becomes the namespace of one node (/<name>/esnet/labels)."),
    ("image_topic", "camera/image_raw",
     "Camera topic relative to each namespace (/<name>/camera/image_raw by default)."),
    ("params_file", PathJoinSubstitution([FindPackageShare("esnet_ros"), "config", "esnet.yaml"]),
     "YAML with the nodes' parameters (config/esnet.yaml documents them)."),
    ("weights", "", "ESNet checkpoint for all cameras; empty keeps the params file's value."),
    ("device", "", "auto, cpu, cuda or cuda:N for all cameras; empty keeps the params file's value."),
    ("use_sim_time", "false", "Use /clock (simulation or bag playback)."),
)


def _nodes(context):
    names = [n.strip().strip("/") for n in LaunchConfiguration("cameras").perform(context).split(",") if n.strip()]
    if not names:
        raise ValueError("cameras:= is empty; give comma-separated names, e.g. cameras:=front,rear")
    bad = [n for n in names if not n.replace("_", "").replace("/", "").isalnum() or n[0].isdigit()]
    if bad:
        raise ValueError(f"camera names {bad} are not valid ROS namespaces (letters, digits, _; not starting with a digit)")
    overrides = {"image_topic": LaunchConfiguration("image_topic").perform(context),
                 "use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1", "yes")}
    for name in ("weights", "device"):
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value
    return [Node(
        package="esnet_ros",
        executable="segmentation_node",
        name="esnet_segmentation",
        namespace=camera,
        parameters=[LaunchConfiguration("params_file"), overrides],
        output="screen",
        emulate_tty=True,
    ) for camera in names]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, default, description in ARGUMENTS),
        OpaqueFunction(function=_nodes),
    ])
