"""The package itself: ROS manifest, set-up, environment script, and the rclpy-free core."""

import logging
import os
import pathlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

CORE_MODULES = [
    "esnet_ros.core.model",
    "esnet_ros.core.checkpoint",
    "esnet_ros.core.labels",
    "esnet_ros.inference.segmenter",
    "esnet_ros.inference.backends",
    "esnet_ros.cli",
]

BLOCK_ROS = """
import importlib.abc, sys
class BlockROS(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split('.')[0]
        if top == 'rclpy' or top.endswith('_msgs') or top in ('rosidl_runtime_py', 'rclpy_message_converter'):
            raise ImportError(f'{name} blocked: simulating a machine without ROS')
sys.meta_path.insert(0, BlockROS())
"""


def run_bash(script: str, **kw) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "AMENT_PREFIX_PATH", "COLCON_PREFIX_PATH")
    }
    return subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, **kw)


def test_core_imports_and_runs_without_rclpy():
    code = (
        BLOCK_ROS
        + f"""
import numpy as np
for name in {CORE_MODULES!r}:
    __import__(name)
try:
    import rclpy
except ImportError:
    pass
else:
    raise SystemExit('rclpy was importable')
from esnet_ros.core.model import ESNet
from esnet_ros.core.checkpoint import make_metadata
from esnet_ros.core.labels import cityscapes
from esnet_ros.inference.segmenter import Segmenter
seg = Segmenter((ESNet(19), make_metadata(cityscapes(), input_size=(32, 16))), device='cpu')
out = seg(np.zeros((20, 30, 3), np.uint8), outputs=('labels', 'color'))
assert out.labels.shape == (20, 30) and out.color.shape == (20, 30, 3)
bad = [m for m in sys.modules if m.split('.')[0] == 'rclpy' or m.endswith('_msgs')]
assert not bad, bad
print('core-ok')
"""
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "core-ok" in proc.stdout


def test_core_sources_never_import_ros():
    ros_side = {"node.py", "camera.py", "ros_image.py", "demo.py", "soak.py", "bench.py"}
    for path in (REPO / "esnet_ros").glob("*.py"):
        if path.name in ros_side:
            continue
        text = path.read_text()
        for needle in ("import rclpy", "from rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs"):
            assert needle not in text, f"{path.name} imports ROS ({needle}); keep ROS in the node modules"


def test_package_xml_is_format3_ament_cmake_with_rosdep_keys():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "esnet_ros"
    assert root.find("export/build_type").text == "ament_cmake"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    for key in (
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "diagnostic_msgs",
        "rosidl_default_generators",
        "rosidl_default_runtime",
        "launch_ros",
        "python3-numpy",
        "python3-opencv",
        "python3-pytorch-pip",
    ):
        assert key in deps, key
    assert root.find("member_of_group").text == "rosidl_interface_packages"
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "rosidl_generate_interfaces" in cmake and "ament_python_install_package(" not in cmake


def test_package_xml_passes_catkin_pkg_validation():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    pkg = catkin_pkg.parse_package(str(REPO / "package.xml"))
    pkg.validate()
    assert pkg.get_build_type() == "ament_cmake"


@pytest.mark.ros
def test_env_script_gives_rclpy_messages_cli_and_node_module():
    proc = run_bash(
        ". tools/env.sh && echo RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE && "
        "python -c 'import rclpy, esnet_ros, esnet_ros.msg; "
        "from esnet_ros.msg import ClassMap, ClassInfo, SegmentationStats; "
        "print(\"SRC=\" + esnet_ros.__file__); print(\"MSG=\" + esnet_ros.msg.__file__); "
        "s = SegmentationStats(); print(\"FIELDS=\" + \",\".join(s.get_fields_and_field_types()))' && "
        "esnet --help && python -c 'import importlib.util as u; "
        "print(\"NODE=\", u.find_spec(\"esnet_ros.ros.node\") is not None)'"
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "RANGE=LOCALHOST" in out
    # live editing: the source tree's package, with the generated msg/ from the colcon install
    assert f"SRC={REPO}/esnet_ros/__init__.py" in out
    assert "/.colcon/install/esnet_ros/" in out.split("MSG=")[1].splitlines()[0]
    fields = out.split("FIELDS=")[1].splitlines()[0].split(",")
    for field in (
        "header",
        "input_width",
        "network_width",
        "inference_ms",
        "age_ms",
        "device",
        "class_ids",
        "class_fraction",
    ):
        assert field in fields
    assert "synth" in out and "train" in out and "bench" in out  # esnet subcommands
    assert "NODE= True" in out


@pytest.mark.ros
def test_env_script_puts_the_wheels_ament_index_on_the_prefix_path():
    """`ros2 interface show sensor_msgs/msg/Image` and launch's front ends find packages through it."""
    proc = run_bash(
        ". tools/env.sh && python -c 'import os; "
        "from ament_index_python.packages import get_package_share_directory as share; "
        "print(\"PREFIX=\" + os.environ[\"AMENT_PREFIX_PATH\"]); print(\"SENSOR=\" + share(\"sensor_msgs\")); "
        "print(\"ESNET=\" + share(\"esnet_ros\"))'"
    )
    assert proc.returncode == 0, proc.stderr
    prefixes = proc.stdout.split("PREFIX=")[1].splitlines()[0].split(":")
    assert str(REPO / ".venv") in prefixes and str(REPO / ".colcon" / "install" / "esnet_ros") in prefixes
    assert proc.stdout.split("SENSOR=")[1].splitlines()[0] == str(REPO / ".venv" / "share" / "sensor_msgs")
    assert proc.stdout.split("ESNET=")[1].splitlines()[0].endswith("/share/esnet_ros")


@pytest.mark.ros
def test_setup_is_idempotent_and_quick_when_nothing_changed():
    proc = run_bash("bash tools/setup.sh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ".venv is up to date" in proc.stdout
    assert "[setup] done" in proc.stdout


def test_setup_fails_loudly_naming_the_missing_tool(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", str(pathlib.Path(shutil.which("python3.11")).parent)):
        for tool in pathlib.Path(directory).iterdir():
            if tool.name != "cmake" and not (fake_bin / tool.name).exists():
                (fake_bin / tool.name).symlink_to(tool)
    env = dict(os.environ, PATH=str(fake_bin))
    proc = subprocess.run(["bash", "tools/setup.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "missing 'cmake'" in proc.stderr
    assert "FAILED at step: check build tools" in proc.stderr


def test_gitignore_covers_generated_trees():
    ignored = (REPO / ".gitignore").read_text().split()
    for entry in (".venv/", ".colcon/", "build/", "install/", "log/", "__pycache__/", "/demo_output/", "/datasets/"):
        assert entry in ignored
    # Data folders are ignored at the top only: the esnet_ros.data subpackage is source.
    proc = subprocess.run(["git", "check-ignore", "-q", "esnet_ros/data/datasets.py"], cwd=REPO)
    assert proc.returncode == 1, "esnet_ros/data/ must not be ignored"


def test_makefile_test_target_runs_setup_then_pytest():
    text = (REPO / "Makefile").read_text()
    assert "test: setup" in text and "pytest" in text
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")


def test_pip_wheel_carries_the_core_the_cli_and_the_demo_weights(tmp_path):
    import zipfile

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("esnet_ros-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        requires = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    sources = {
        p.relative_to(REPO).as_posix() for p in (REPO / "esnet_ros").rglob("*.py") if "__pycache__" not in p.parts
    }
    assert sources and sources <= names, sorted(sources - names)  # every subpackage, nothing left behind
    assert "esnet_ros/ros/dds/fastdds_large_messages.xml" in names
    assert "esnet = esnet_ros.cli:main" in entry_points
    assert "Requires-Dist: torch<3,>=2.1" in requires  # a range: CUDA/Jetson builds are kept
    if (REPO / "esnet_ros/weights/esnet_demo_synth.safetensors").exists():
        assert "esnet_ros/weights/esnet_demo_synth.safetensors" in names


class _LaunchLikeLogger(logging.Logger):
    """What ``import launch`` installs with logging.setLoggerClass: loggers that never propagate."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.propagate = False


_installed = logging.getLoggerClass()
logging.setLoggerClass(_LaunchLikeLogger)
_PROBE = logging.getLogger("esnet_ros.caplog_probe")  # created while the launch-like class is installed
logging.setLoggerClass(_installed)


def test_project_logs_reach_caplog_whatever_logger_class_was_installed(caplog):
    assert isinstance(_PROBE, _LaunchLikeLogger)
    with caplog.at_level(logging.INFO):
        _PROBE.warning("probe record")
        logging.getLogger("esnet_ros.caplog_probe_late").warning("late record")  # created during the test
    assert [r.getMessage() for r in caplog.records] == ["probe record", "late record"]
