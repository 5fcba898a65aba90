"""Launch the ESNet segmentation node (and optionally rviz2 showing input, color mask and overlay).

    ros2 launch esnet_ros segmentation.launch.py image_topic:=/camera/color/image_raw \\
        weights:=/path/to/esnet.safetensors device:=cuda rviz:=true

Parameters come from ``params_file`` (default: config/esnet.yaml of the package); the model and
engine arguments below override it only when given (empty means "keep the file's value").
``multi_camera.launch.py`` includes this file once per camera namespace.
"""

import shutil
import sys

from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessStart
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription

PARAMS_FILE = PathJoinSubstitution([FindPackageShare("esnet_ros"), "config", "esnet.yaml"])

# (name, default, description); the string/integer ones below override the params file when not empty.
ARGUMENTS = (
    (
        "image_topic",
        "camera/image_raw",
        "Camera topic (sensor_msgs/Image); relative names resolve in `namespace`. With "
        "input_transport=compressed in the params file the node reads <image_topic>/compressed.",
    ),
    ("namespace", "", "Namespace of the node and its outputs (e.g. front: /front/esnet/labels)."),
    (
        "params_file",
        PARAMS_FILE,
        "YAML with the node's parameters (every parameter is documented in config/esnet.yaml).",
    ),
    (
        "weights",
        "",
        "A bundled model by name (camvid: real streets; synthetic: the synthetic demo's) or a "
        "checkpoint path (.safetensors/.pt/.onnx); empty keeps the params file's value (empty "
        "there means camvid).",
    ),
    ("device", "", "auto, cpu, cuda or cuda:N; empty keeps the params file's value (auto)."),
    ("backend", "", "auto, torch, onnxruntime or openvino; empty keeps the params file's value."),
    ("precision", "", "auto, fp32, fp16, bf16 or int8; empty keeps the params file's value."),
    (
        "input_width",
        "",
        "Network input width, a multiple of 8; empty keeps the params file's value "
        "(0: the checkpoint's own input size).",
    ),
    (
        "input_height",
        "",
        "Network input height, a multiple of 8; empty keeps the params file's value "
        "(0: the checkpoint's own input size).",
    ),
    (
        "class_remap",
        "",
        "YAML mapping the model's classes onto a planner's (e.g. config/nav2_camvid_remap.yaml); "
        "empty keeps the params file's value (empty there: the model's classes).",
    ),
    (
        "depth_topic",
        "",
        "Depth image registered to the camera: publishes esnet/points; empty keeps the params file's "
        "value (empty there: no points).",
    ),
    (
        "camera_info_topic",
        "",
        "The camera's CameraInfo; empty keeps the params file's value (empty there: camera_info beside image_topic).",
    ),
    ("min_confidence", "", "Confidence 0..1 below which pixels become unknown_label; empty keeps the params file's."),
    (
        "sync_slop_s",
        "",
        "0: exact image/depth/camera_info stamps; > 0: approximate within this many seconds; "
        "empty keeps the params file's.",
    ),
    ("use_sim_time", "false", "Use /clock (simulation or bag playback) for stamps and stats.age_ms."),
    ("rviz", "false", "Also start rviz2 with config/esnet.rviz (camera image, color mask and overlay)."),
    (
        "autostart",
        "true",
        "Launch configures and activates the node (true), or leaves it unconfigured for a lifecycle manager (false).",
    ),
)
STRING_OVERRIDES = ("weights", "device", "backend", "precision", "class_remap", "depth_topic", "camera_info_topic")
INTEGER_OVERRIDES = ("input_width", "input_height")
FLOAT_OVERRIDES = ("min_confidence", "sync_slop_s")
TRUE = ("true", "1", "yes", "on")


def _value(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context).strip()


def node_overrides(context) -> dict:
    """The launch arguments that were given, typed, as parameter overrides on top of the params file."""
    values = {
        "image_topic": _value(context, "image_topic"),
        "use_sim_time": _value(context, "use_sim_time").lower() in TRUE,
    }
    values.update({name: _value(context, name) for name in STRING_OVERRIDES if _value(context, name)})
    for name in INTEGER_OVERRIDES:
        value = _value(context, name)
        if value and not value.isdigit():
            raise ValueError(
                f"{name}:={value!r} must be a non-negative integer, a multiple of 8 (e.g. 512), "
                "or 0 for the checkpoint's own input size"
            )
        if value:
            values[name] = int(value)
    for name in FLOAT_OVERRIDES:
        value = _value(context, name)
        if value:
            try:
                values[name] = float(value)
            except ValueError:
                raise ValueError(f"{name}:={value!r} must be a number (e.g. 0.5)") from None
    return values


def _actions(context):
    """Checked before anything starts: rviz:=true without rviz2 fails here, not after the node is up."""
    rviz = _value(context, "rviz").lower() in TRUE
    if rviz and shutil.which("rviz2") is None:
        raise RuntimeError(
            "rviz:=true but rviz2 is not installed (install ros-<distro>-rviz2, "
            "or launch with rviz:=false and run rviz2 on another machine)"
        )
    tty = sys.stdout.isatty()  # colour codes only on a terminal, never into redirected logs
    # A LifecycleNode driven by launch: the node's own autostart is off, and launch asks for configure
    # once the process runs and for activate once it is inactive. When the node configured itself,
    # launch missed its transitions whenever discovery of the (volatile) transition_event topic was
    # slower than the model loading: OnStateTransition handlers then never fired.
    node = LifecycleNode(
        package="esnet_ros",
        executable="segmentation_node",
        name="esnet_segmentation",
        namespace=_value(context, "namespace"),
        parameters=[LaunchConfiguration("params_file"), {**node_overrides(context), "autostart": False}],
        output="screen",
        emulate_tty=tty,
    )
    actions = [node]
    if _value(context, "autostart").lower() in TRUE:
        actions = [
            RegisterEventHandler(OnProcessStart(target_action=node, on_start=[_transition(node, "configure")])),
            RegisterEventHandler(
                OnStateTransition(
                    target_lifecycle_node=node,
                    start_state="configuring",
                    goal_state="inactive",
                    entities=[_transition(node, "activate")],
                )
            ),
            node,
        ]
    if rviz:
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="esnet_rviz",
                namespace=_value(context, "namespace"),
                arguments=["-d", PathJoinSubstitution([FindPackageShare("esnet_ros"), "config", "esnet.rviz"])],
                parameters=[{"use_sim_time": _value(context, "use_sim_time").lower() in TRUE}],
                output="screen",
                emulate_tty=tty,
            )
        )
    return actions


def _transition(node: LifecycleNode, name: str) -> EmitEvent:
    transition = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE}[name]
    return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition))


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in ARGUMENTS
            ),
            OpaqueFunction(function=_actions),
        ]
    )
