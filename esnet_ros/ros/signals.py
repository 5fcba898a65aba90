"""SIGINT/SIGTERM for the node's process (see :class:`ShutdownSignals`)."""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["ShutdownSignals"]


class ShutdownSignals:
    """SIGINT/SIGTERM for the node's process, handled here instead of by rclpy.

    rclpy's own handler shuts the context down at once, so the node and its participant are torn down
    after communication has ended: after real traffic Fast DDS then never announces that they left, and
    the node stays in other processes' graphs until its lease runs out (~20 s). Here a signal only asks
    the spin loop to end; the node is stopped and destroyed while the context is up (the graph hears
    it leave), and only then is the context shut down. Before the node spins (imports, model loading)
    a signal raises ``KeyboardInterrupt`` as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self.spinning = False

    def install(self) -> "ShutdownSignals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True
        if not self.spinning:
            raise KeyboardInterrupt
