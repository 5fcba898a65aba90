"""esnet_ros feeding Nav2's semantic_segmentation_layer: the node with depth, the CamVid model remapped
to traversable / caution / obstacle, and (``costmap:=true``) a standalone local costmap using the layer.

    ros2 launch esnet_ros nav2_semantic.launch.py image_topic:=/camera/color/image_raw \\
        depth_topic:=/camera/aligned_depth_to_color/image_raw

The node publishes /esnet/labels, /esnet/confidence, /esnet/points (organized, pixel-aligned) and the
latched /esnet/label_info with the remap's class names, which config/nav2_semantic_costmap.yaml costs.
``costmap:=true`` needs nav2_costmap_2d, nav2_lifecycle_manager and semantic_segmentation_layer installed.
"""

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

SHARE = FindPackageShare("esnet_ros")
ARGUMENTS = (
    ("image_topic", "camera/image_raw", "Color camera topic (sensor_msgs/Image)."),
    ("depth_topic", "camera/depth/image_raw", "Depth registered to the color camera (16UC1 mm or 32FC1 m)."),
    ("camera_info_topic", "", "The color camera's CameraInfo; empty: camera_info beside image_topic."),
    (
        "class_remap",
        PathJoinSubstitution([SHARE, "config", "nav2_camvid_remap.yaml"]),
        "Class remap whose names the costmap YAML costs.",
    ),
    ("weights", "camvid", "The model (its classes must be those the remap maps)."),
    ("min_confidence", "0.0", "Pixels below this confidence become unknown (skipped by the layer)."),
    ("sync_slop_s", "0.0", "0: exact image/depth/camera_info stamps; > 0: approximate within this many seconds."),
    ("costmap", "false", "Also start a local costmap (nav2_costmap_2d) with config/nav2_semantic_costmap.yaml."),
    ("costmap_params", PathJoinSubstitution([SHARE, "config", "nav2_semantic_costmap.yaml"]), "The costmap's YAML."),
    ("use_sim_time", "false", "Use /clock."),
)
NODE_ARGUMENTS = (
    "image_topic",
    "depth_topic",
    "camera_info_topic",
    "class_remap",
    "weights",
    "min_confidence",
    "sync_slop_s",
    "use_sim_time",
)


def _costmap(context):
    if LaunchConfiguration("costmap").perform(context).strip().lower() not in ("true", "1", "yes", "on"):
        return []
    for package in ("nav2_costmap_2d", "nav2_lifecycle_manager", "semantic_segmentation_layer"):
        try:
            get_package_share_directory(package)
        except PackageNotFoundError:
            raise RuntimeError(
                f"costmap:=true needs {package} (apt install ros-$ROS_DISTRO-"
                f"{package.replace('_', '-')}), or launch with costmap:=false"
            ) from None
    sim = LaunchConfiguration("use_sim_time").perform(context).strip().lower() in ("true", "1", "yes", "on")
    return [
        Node(
            package="nav2_costmap_2d",
            executable="nav2_costmap_2d",
            namespace="costmap",
            name="costmap",
            output="screen",
            parameters=[LaunchConfiguration("costmap_params"), {"use_sim_time": sim}],
        ),
        Node(
            package="nav2_lifecycle_manager",
            executable="lifecycle_manager",
            name="lifecycle_manager_costmap",
            output="screen",
            parameters=[{"autostart": True, "node_names": ["costmap/costmap"], "use_sim_time": sim}],
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "segmentation.launch.py"])),
        launch_arguments={name: LaunchConfiguration(name) for name in NODE_ARGUMENTS}.items(),
    )
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [segmentation, OpaqueFunction(function=_costmap)]
    )
