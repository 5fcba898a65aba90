"""SIGINT/SIGTERM for the node's process (see :class:`ShutdownSignals`)."""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["ShutdownSignals"]


class ShutdownSignals:
    """SIGINT/SIGTERM for the node's process, handled here instead of by rclpy.

    rclpy's own handler shuts the context down at once, so the node and its participant are torn down
    after communication has ended. Here a signal only records the request: the entry point finishes
    the step it is in (building the node, loading the model, a lifecycle transition), skips the rest,
    stops and destroys the node while the context is up (the graph hears it leave), and only then
    shuts the context down. A signal never raises inside a step: a ``KeyboardInterrupt`` in the middle
    of a transition left worker threads and locks half set up, and the process hung instead of exiting.
    :func:`esnet_ros.ros.entry.run_node` installs it before the slow imports (torch), so that a signal
    then is kept too.
    """

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> ShutdownSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True
