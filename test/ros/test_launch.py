"""Launch files, with ROS 2's launch_pytest (needs a ROS 2 install: launch is not on PyPI; skips here).

Checks that the launch files load with described arguments, and that segmentation.launch.py starts a
LifecycleNode that launch configures and activates (the transitions seen by launch's own event handlers
and the state over the node's get_state service), that publishes the class map and answers camera frames,
and that exits with code 0 within 2 s of launch's shutdown, leaving the ROS graph.
"""

from __future__ import annotations

import importlib.util
import pathlib
import time

import numpy as np
import pytest

# Not "launch": that is launch_pytest's own marker (it would demand a fixture= argument and skip the test).
pytestmark = [pytest.mark.ros_launch, pytest.mark.ros]

# launch_ros first: the repository's own launch/ folder makes a bare "import launch" succeed
pytest.importorskip("launch_ros", reason="launch_ros not installed (not on PyPI; needs a ROS 2 distro)")
launch_pytest = pytest.importorskip("launch_pytest", reason="launch_pytest not installed (needs a ROS 2 distro)")
launch = pytest.importorskip("launch", reason="ROS 2 'launch' not installed (needs a ROS 2 distro)")

from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
REFERENCE = REPO / "test" / "fixtures" / "esnet_reference_c19_seed1.pt"


def _declared(path: pathlib.Path) -> dict[str, DeclareLaunchArgument]:
    description = PythonLaunchDescriptionSource(str(path)).try_get_launch_description_without_context()
    return {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), LAUNCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _context(**values: str) -> launch.LaunchContext:
    context = launch.LaunchContext()
    defaults = {
        "image_topic": "camera/image_raw",
        "namespace": "",
        "params_file": "/dev/null",
        "weights": "",
        "device": "",
        "backend": "",
        "precision": "",
        "input_width": "",
        "input_height": "",
        "use_sim_time": "false",
        "rviz": "false",
        "autostart": "true",
        "cameras": "front,rear",
        "class_remap": "",
        "depth_topic": "",
        "camera_info_topic": "",
        "min_confidence": "",
        "sync_slop_s": "",
        "costmap": "false",
    }
    context.launch_configurations.update({**defaults, **values})
    return context


def test_overrides_take_only_the_given_arguments_typed():
    segmentation = _module("segmentation.launch")
    overrides = segmentation.node_overrides(_context(device="cpu", input_width="512", input_height="0"))
    assert overrides == {
        "image_topic": "camera/image_raw",
        "use_sim_time": False,
        "device": "cpu",
        "input_width": 512,
        "input_height": 0,
    }
    with pytest.raises(ValueError, match=r"input_width:='wide' must be a non-negative integer, a multiple of 8"):
        segmentation.node_overrides(_context(input_width="wide"))
    spatial = segmentation.node_overrides(_context(depth_topic="depth", class_remap="/r.yaml", min_confidence="0.4"))
    assert (spatial["depth_topic"], spatial["class_remap"], spatial["min_confidence"]) == ("depth", "/r.yaml", 0.4)
    with pytest.raises(ValueError, match=r"min_confidence:='high' must be a number"):
        segmentation.node_overrides(_context(min_confidence="high"))


def test_nav2_launch_declares_its_arguments_and_refuses_a_costmap_without_nav2():
    declared = _declared(LAUNCH / "nav2_semantic.launch.py")
    assert {"image_topic", "depth_topic", "class_remap", "weights", "costmap", "costmap_params"} <= set(declared)
    nav2 = _module("nav2_semantic.launch")
    assert nav2._costmap(_context(costmap="false")) == []
    try:
        from ament_index_python.packages import get_package_share_directory

        get_package_share_directory("semantic_segmentation_layer")
    except Exception:
        with pytest.raises(RuntimeError, match=r"costmap:=true needs .* or launch with costmap:=false"):
            nav2._costmap(_context(costmap="true"))


def test_rviz_without_rviz2_fails_before_the_node_starts(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no rviz2 anywhere
    segmentation = _module("segmentation.launch")
    with pytest.raises(RuntimeError, match="rviz:=true but rviz2 is not installed"):
        segmentation._actions(_context(rviz="true"))  # raised before any Node action exists
    from launch_ros.actions import LifecycleNode

    actions = segmentation._actions(_context(rviz="false", autostart="true"))
    (node,) = [a for a in actions if isinstance(a, LifecycleNode)]
    assert node.node_executable == "segmentation_node" and len(actions) == 3  # + configure, activate handlers
    manual = segmentation._actions(_context(rviz="false", autostart="false"))  # for a lifecycle manager
    assert len(manual) == 1 and isinstance(manual[0], LifecycleNode)


def test_multi_camera_includes_segmentation_once_per_namespace():
    from launch_ros.actions import PushRosNamespace

    multi = _module("multi_camera.launch")
    groups = multi._cameras(_context(cameras="front, rear"))
    assert [type(g) for g in groups] == [GroupAction, GroupAction]
    for camera, group in zip(("front", "rear"), groups, strict=True):
        entities = group.get_sub_entities()  # scoped: configurations/environment pushed and popped around
        (push,) = [e for e in entities if isinstance(e, PushRosNamespace)]
        (include,) = [e for e in entities if isinstance(e, IncludeLaunchDescription)]
        assert "".join(s.perform(_context()) for s in push.namespace) == camera
        assert entities.index(push) < entities.index(include)  # the namespace applies to the include
        source = include.launch_description_source
        source.get_launch_description(_context())  # expands the location's substitutions
        assert source.location == str(LAUNCH / "segmentation.launch.py")
    with pytest.raises(ValueError, match="not valid ROS namespaces"):
        multi._cameras(_context(cameras="front,9rear"))


def test_segmentation_launch_arguments_are_described():
    args = _declared(LAUNCH / "segmentation.launch.py")
    expected = {
        "image_topic",
        "namespace",
        "params_file",
        "weights",
        "device",
        "backend",
        "precision",
        "input_width",
        "input_height",
        "use_sim_time",
        "rviz",
    }
    assert expected <= set(args)
    for name, arg in args.items():
        assert len(arg.description) > 20, f"{name} needs a description"


def test_multi_camera_launch_arguments_are_described():
    args = _declared(LAUNCH / "multi_camera.launch.py")
    assert {
        "cameras",
        "image_topic",
        "params_file",
        "weights",
        "device",
        "backend",
        "precision",
        "input_width",
        "input_height",
        "use_sim_time",
    } <= set(args)
    assert all(len(a.description) > 20 for a in args.values())


# What launch itself saw of the launched node, filled by the event handlers of the fixture below.
SEEN: dict[str, list] = {"transitions": [], "exit_codes": [], "shutdown_at": [], "exit_at": [], "observers": []}


def _on_transition(context) -> None:
    event = context.locals.event
    SEEN["transitions"].append((event.start_state, event.goal_state))


def _on_exit(event, context) -> None:
    SEEN["exit_codes"].append(event.returncode)
    SEEN["exit_at"].append(time.monotonic())


@launch_pytest.fixture(scope="module")
def segmentation_launch():
    from launch.actions import OpaqueFunction, RegisterEventHandler
    from launch.event_handlers import OnProcessExit, OnShutdown
    from launch_ros.event_handlers import OnStateTransition

    for seen in SEEN.values():
        seen.clear()
    return launch.LaunchDescription(
        [
            RegisterEventHandler(OnStateTransition(entities=[OpaqueFunction(function=_on_transition)])),
            RegisterEventHandler(OnProcessExit(on_exit=_on_exit)),
            RegisterEventHandler(
                OnShutdown(on_shutdown=lambda event, context: SEEN["shutdown_at"].append(time.monotonic()))
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(LAUNCH / "segmentation.launch.py")),
                launch_arguments={
                    "weights": str(REFERENCE),
                    "device": "cpu",
                    "input_width": "128",
                    "input_height": "64",
                    "namespace": "launch_test",
                    "rviz": "false",
                }.items(),
            ),
            launch_pytest.actions.ReadyToTest(),
        ]
    )


@pytest.mark.launch(fixture=segmentation_launch)
def test_launched_node_serves_a_frame(rclpy_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from esnet_ros.msg import ClassMap

    node = rclpy.create_node("launch_test_client", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    got: dict[str, object] = {}
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(
        ClassMap, "/launch_test/esnet/class_map", lambda m: got.setdefault("class_map", m), latched
    )
    node.create_subscription(Image, "/launch_test/esnet/labels", lambda m: got.setdefault("labels", m), reliable)
    pub = node.create_publisher(Image, "/launch_test/camera/image_raw", reliable)
    frame = Image(height=24, width=32, encoding="bgr8", step=96, data=np.full((24, 32, 3), 90, np.uint8).tobytes())
    frame.header.frame_id = "launch_cam"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(got) < 2:
            pub.publish(frame)
            executor.spin_once(timeout_sec=0.5)
        assert len(got["class_map"].classes) == 19
        labels = got["labels"]
        assert (labels.width, labels.height, labels.encoding, labels.header.frame_id) == (32, 24, "mono8", "launch_cam")
    finally:
        executor.shutdown()
        node.destroy_node()


def _node_names(node) -> set[str]:
    return {f"{ns.rstrip('/')}/{name}" for name, ns in node.get_node_names_and_namespaces()}


@pytest.mark.launch(fixture=segmentation_launch)
def test_launch_configured_and_activated_the_lifecycle_node(rclpy_context):
    import rclpy
    from lifecycle_msgs.srv import GetState
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("launch_state_client", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    client = node.create_client(GetState, "/launch_test/esnet_segmentation/get_state")
    try:
        assert client.wait_for_service(timeout_sec=60), "no /launch_test/esnet_segmentation/get_state service"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and ("activating", "active") not in SEEN["transitions"]:
            executor.spin_once(timeout_sec=0.2)
        future = client.call_async(GetState.Request())
        executor.spin_until_future_complete(future, timeout_sec=10)
        assert future.result().current_state.label == "active"
        # launch drove both transitions itself (the node's own autostart is off under launch)
        assert SEEN["transitions"][:4] == [
            ("unconfigured", "configuring"),
            ("configuring", "inactive"),
            ("inactive", "activating"),
            ("activating", "active"),
        ], SEEN["transitions"]
        assert SEEN["exit_codes"] == []
        # an observer that has discovered the node while it runs, for the shutdown test to watch
        observer = rclpy.create_node("launch_graph_observer", context=rclpy_context)
        SEEN["observers"].append(observer)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "/launch_test/esnet_segmentation" not in _node_names(observer):
            time.sleep(0.1)
        assert "/launch_test/esnet_segmentation" in _node_names(observer)
    finally:
        executor.shutdown()
        node.destroy_node()


@pytest.mark.launch(fixture=segmentation_launch, shutdown=True)
def test_launch_shutdown_ends_the_node_cleanly(rclpy_context):
    """After launch's shutdown (what Ctrl-C to ros2 launch does): exit code 0 within 2 s, out of the graph
    within 2 s more, as seen by a participant that saw it while it ran."""

    assert SEEN["exit_codes"] == [0], SEEN
    assert SEEN["exit_at"][0] - SEEN["shutdown_at"][0] < 2.0, SEEN
    assert SEEN["observers"], "the activation test did not run first"
    observer = SEEN["observers"].pop()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and "/launch_test/esnet_segmentation" in _node_names(observer):
            time.sleep(0.1)
        assert "/launch_test/esnet_segmentation" not in _node_names(observer)
    finally:
        observer.destroy_node()
