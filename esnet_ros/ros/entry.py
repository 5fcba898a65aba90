"""The node's entry point: signal handlers first, then the slow imports, then the node."""

from __future__ import annotations

import sys

from esnet_ros.ros.signals import ShutdownSignals

__all__ = ["run_node"]


def run_node() -> None:
    """``ros2 run esnet_ros segmentation_node``, ``esnet-segmentation-node``, ``python -m esnet_ros.ros``.

    The handlers are installed before torch and the engine are imported (seconds on a small CPU), so a
    Ctrl-C at any moment is kept and ends the process cleanly with code 0 (see :class:`ShutdownSignals`).
    """
    signals = ShutdownSignals().install()
    from esnet_ros.ros.process import main

    sys.exit(main(signals=signals))
