"""The node's process: rclpy set up, the node built and spun until a signal, everything torn down, exit.

:func:`main` is what ``ros2 run esnet_ros segmentation_node`` runs (through :func:`esnet_ros.ros.entry.run_node`,
which installs the signal handlers before the slow imports). Every process-wide setting the node makes is
made here, once, at start-up: the Fast DDS profile (:func:`esnet_ros.ros.dds.use_large_message_profile`,
before the first participant) and the routing of the core's ``logging`` records to the node's logger.
"""

from __future__ import annotations

import gc
import logging
import os
import sys

import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from esnet_ros.ros.dds import use_large_message_profile
from esnet_ros.ros.diagnostics import RosLogHandler
from esnet_ros.ros.node import NODE_NAME, SegmentationNode
from esnet_ros.ros.signals import ShutdownSignals

__all__ = ["main"]


def _spin(node: SegmentationNode, signals: ShutdownSignals) -> None:
    """Autostart (unless disabled), then spin until a signal; stops and destroys the node (context still up)."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value and not signals.requested and not node.start():
            node.get_logger().error(
                "autostart: the node stays unconfigured; fix the parameters, then "
                f"`ros2 lifecycle set {node.get_fully_qualified_name()} configure`"
            )
        while not signals.requested and node.context.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        node.stop()
        executor.shutdown(timeout_sec=0.5)
        node.destroy_node()


def _run(signals: ShutdownSignals) -> int:
    """Build the node, forward the core's log records to it, and spin (exit code 2 for a bad parameter)."""
    try:
        node = SegmentationNode()
    except InvalidParameterValueException as exc:
        print(
            f"{NODE_NAME}: {exc}; input_width/input_height take multiples of 8 (0: the checkpoint's size)",
            file=sys.stderr,
        )
        return 2
    core_log = logging.getLogger("esnet_ros")
    core_log.setLevel(logging.INFO)
    core_log.addHandler(RosLogHandler(node.get_logger()))
    core_log.propagate = False
    _spin(node, signals)
    return 0


def main(args: list[str] | None = None, *, signals: ShutdownSignals | None = None, fast_exit: bool = True) -> int:
    """``python -m esnet_ros.ros --ros-args -p name:=value``: run until SIGINT/SIGTERM (exit 0).

    A signal ends the spin loop; the node is destroyed, then the context shut down and destroyed, so
    that DDS tells the graph the node and its participant left (:class:`ShutdownSignals`). Then the process
    ends with ``os._exit`` (``fast_exit``): the interpreter's own teardown of torch takes over a second
    on a small CPU, which would break the promise of a clean exit within 2 s. Pass ``fast_exit=False``
    to get the return code instead.
    """
    use_large_message_profile()  # before the first participant: images over shared memory
    signals = signals or ShutdownSignals().install()
    if signals.requested:  # a signal while the modules loaded (run_node): nothing to tear down
        return _exit(0, fast_exit)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    context = rclpy.get_default_context()
    try:
        code = _run(signals)
    finally:
        gc.collect()  # the node's handles keep the context in use until they are freed
        context.try_shutdown()
        context.destroy()  # finalizes the participant: DDS announces that it left
    return _exit(code, fast_exit)


def _exit(code: int, fast: bool) -> int:
    if fast:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
