"""Test infrastructure shared by the whole suite.

- Each test session gets its own random ROS_DOMAIN_ID (loopback-only discovery), so parallel
  runs on one machine never see each other's nodes; rclpy talks real DDS, nothing is mocked.
- Markers ``ros``, ``ros_launch``, ``vision_msgs`` and ``cuda`` skip (with the reason) where the
  dependency is missing.
- A session in which no test passed fails: "all skipped" is not green.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import random
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"

# Before anything imports rclpy: an isolated DDS domain on loopback for this session.
# (ESNET_TEST_DOMAIN_ID pins it for debugging; an exported ROS_DOMAIN_ID is deliberately not reused.)
os.environ["ROS_DOMAIN_ID"] = os.environ.get("ESNET_TEST_DOMAIN_ID") or str(random.SystemRandom().randint(1, 101))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


REQUIREMENTS = {
    "ros": (
        lambda: _importable("rclpy") and _importable("esnet_ros.msg"),
        "rclpy / built esnet_ros.msg not importable (run make setup and source tools/env.sh)",
    ),
    "ros_launch": (
        lambda: _importable("launch") and _importable("launch_ros"),
        "ROS 2 'launch'/'launch_ros' not installed (not on PyPI; needs a ROS 2 distro)",
    ),
    "vision_msgs": (
        lambda: _importable("vision_msgs"),
        "vision_msgs not installed (not on PyPI; needs a ROS 2 distro)",
    ),
    "cv_bridge": (
        lambda: _importable("cv_bridge"),
        "ROS 2 cv_bridge not installed (not on PyPI; needs a ROS 2 distro)",
    ),
    "cuda": (_cuda_available, "no CUDA device on this machine"),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ros: needs rclpy and the built esnet_ros messages (real DDS)")
    # Not "launch": launch_pytest registers that name for its own marker (with a required fixture=).
    config.addinivalue_line("markers", "ros_launch: needs ROS 2 launch / launch_ros / launch_pytest")
    config.addinivalue_line("markers", "vision_msgs: needs vision_msgs")
    config.addinivalue_line("markers", "cv_bridge: needs ROS 2's cv_bridge (compared with our conversion)")
    config.addinivalue_line("markers", "cuda: needs a CUDA device")
    config.addinivalue_line("markers", "slow: takes more than ~20 s")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache: dict[str, bool] = {}
    for item in items:
        for name, (check, reason) in REQUIREMENTS.items():
            if item.get_closest_marker(name) is None:
                continue
            if name not in cache:
                cache[name] = bool(check())
            if not cache[name]:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and passed == 0 and not session.config.option.collectonly:
        print("\nno test passed: failing the run (all skipped or none collected)", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(autouse=True)
def project_logs_reach_caplog():
    """``import launch`` installs a logger class that never propagates to the root logger, where caplog
    listens; loggers created after it (ours too) would then be invisible to tests. During each test the
    standard class is in force and the project's loggers propagate, whatever was imported before."""
    installed = logging.getLoggerClass()
    logging.setLoggerClass(logging.Logger)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (name == "esnet_ros" or name.startswith("esnet_ros.")) and isinstance(logger, logging.Logger):
            logger.propagate = True
    yield
    logging.setLoggerClass(installed)


@pytest.fixture(scope="session")
def reference_checkpoint() -> pathlib.Path:
    """The authors' 19-class state_dict with an input and the logits their model produced."""
    return FIXTURES / "esnet_reference_c19_seed1.pt"


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    return int(os.environ["ROS_DOMAIN_ID"])


@pytest.fixture(scope="session")
def rclpy_context():
    """An rclpy context for this test session (real DDS on the session's domain)."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()
