"""Launch one segmentation node per camera, each in its own namespace.

    ros2 launch esnet_ros multi_camera.launch.py cameras:=front,rear weights:=/path/to/esnet.safetensors

Camera ``front`` is read from ``/front/camera/image_raw`` (``image_topic`` relative to the
namespace) and published on ``/front/esnet/labels``, ``/front/esnet/overlay``, ... Each camera
includes ``segmentation.launch.py`` inside a ``GroupAction`` with ``PushRosNamespace``, so both
files share one definition of the node. Every instance reads the same ``params_file``; its
``/**`` section applies to all of them.
"""

import pathlib

from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import PushRosNamespace

from launch import LaunchDescription

SEGMENTATION = pathlib.Path(__file__).with_name("segmentation.launch.py")
SEGMENTATION_ARGUMENTS = (
    "image_topic",
    "params_file",
    "weights",
    "device",
    "backend",
    "precision",
    "input_width",
    "input_height",
    "use_sim_time",
    "autostart",
)


def _forwarded_arguments() -> list[DeclareLaunchArgument]:
    """segmentation.launch.py's own declarations of the forwarded arguments (defined once, there)."""
    description = PythonLaunchDescriptionSource(str(SEGMENTATION)).try_get_launch_description_without_context()
    declared = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    return [
        DeclareLaunchArgument(
            name,
            default_value=declared[name].default_value,
            description=f"{declared[name].description} Applies to every camera.",
        )
        for name in SEGMENTATION_ARGUMENTS
    ]


def camera_names(text: str) -> list[str]:
    names = [n.strip().strip("/") for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("cameras:= is empty; give comma-separated names, e.g. cameras:=front,rear")
    bad = [n for n in names if not n.replace("_", "").replace("/", "").isalnum() or n[0].isdigit()]
    if bad:
        raise ValueError(
            f"camera names {bad} are not valid ROS namespaces (letters, digits, _; not starting with a digit)"
        )
    return names


def _cameras(context):
    forwarded = {name: LaunchConfiguration(name) for name in SEGMENTATION_ARGUMENTS}
    return [
        GroupAction(
            [
                PushRosNamespace(camera),
                IncludeLaunchDescription(
                    PythonLaunchDescriptionSource(str(SEGMENTATION)),
                    launch_arguments={**forwarded, "rviz": "false"}.items(),
                ),
            ]
        )
        for camera in camera_names(LaunchConfiguration("cameras").perform(context))
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "cameras",
                default_value="front,rear",
                description="Comma-separated camera names; each becomes the namespace of one "
                "node (/<name>/esnet/labels).",
            ),
            *_forwarded_arguments(),
            OpaqueFunction(function=_cameras),
        ]
    )
