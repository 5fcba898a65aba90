"""Launch the ESNet segmentation node (and optionally rviz2 showing input, color mask and overlay).

    ros2 launch esnet_ros segmentation.launch.py image_topic:=/camera/color/image_raw \\
        weights:=/path/to/esnet.safetensors device:=cuda rviz:=true

Parameters come from ``params_file`` (default: config/esnet.yaml of the package); the
``weights``, ``device``, ``input_width`` and ``input_height`` arguments override it only when
given (empty means "keep the file's value").
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ("image_topic", "camera/image_raw",
     "Camera topic (sensor_msgs/Image); relative names resolve in `namespace`. With "
     "input_transport=compressed in the params file the node reads <image_topic>/compressed."),
    ("namespace", "", "Namespace of the node and its outputs (e.g. front: /front/esnet/labels)."),
    ("params_file", PathJoinSubstitution([FindPackageShare("esnet_ros"), "config", "esnet.yaml"]),
     "YAML with the node's parameters (every parameter is documented in config/esnet.yaml)."),
    ("weights", "", "ESNet checkpoint (.safetensors/.pt); empty keeps the params file's value "
                    "(empty there means the bundled demo model, not for real cameras)."),
    ("device", "", "auto, cpu, cuda or cuda:N; empty keeps the params file's value (auto)."),
    ("input_width", "", "Network input width, a multiple of 8; empty keeps the params file's value (1024)."),
    ("input_height", "", "Network input height, a multiple of 8; empty keeps the params file's value (512)."),
    ("use_sim_time", "false", "Use /clock (simulation or bag playback) for stamps and stats.age_ms."),
    ("rviz", "false", "Also start rviz2 with config/esnet.rviz (camera image, color mask and overlay)."),
)


def _overrides(context):
    """Only the arguments that were given override the params file (types checked here)."""
    values = {"image_topic": LaunchConfiguration("image_topic").perform(context),
              "use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1", "yes")}
    for name in ("weights", "device"):
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            values[name] = value
    for name in ("input_width", "input_height"):
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            if not value.isdigit():
                raise ValueError(f"{name}:={value!r} must be a positive integer, a multiple of 8 (e.g. 1024)")
            values[name] = int(value)
    return values


def _nodes(context):
    return [Node(
        package="esnet_ros",
        executable="segmentation_node",
        name="esnet_segmentation",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), _overrides(context)],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description() -> LaunchDescription:
    rviz_config = PathJoinSubstitution([FindPackageShare("esnet_ros"), "config", "esnet.rviz"])
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, default, description in ARGUMENTS),
        OpaqueFunction(function=_nodes),
        Node(
            package="rviz2",
            executable="rviz2",
            name="esnet_rviz",
            arguments=["-d", rviz_config],
            parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
            condition=IfCondition(LaunchConfiguration("rviz")),
            output="screen",
        ),
    ])
