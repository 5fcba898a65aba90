"""Every process-wide setting esnet_ros makes, in one place: what it is, who makes it, and when.

Some knobs belong to the process, not to an object: changing them for one engine changes them for every
other one in the same process. esnet_ros makes each of them here (or, for the two that need ROS, in the
one ROS module named below), once, when the process starts its work:

- PyTorch intra-op threads: :func:`torch_threads` (the ``num_threads`` option), when a torch backend is built
  (:func:`torch_threads_during` for the span of a measurement, e.g. ``esnet bench``'s GEMM peak);
- inductor ``freezing`` (constant weights): :func:`inductor_freezing`, at ``torch.compile`` on the CPU;
- flushed denormals, seeds, training threads: :func:`training_process`, when ``esnet train`` starts;
- ``FASTDDS_DEFAULT_PROFILES_FILE``: :func:`esnet_ros.ros.dds.use_large_message_profile`, before the first DDS
  participant;
- the core's ``logging`` records -> rclpy: :func:`esnet_ros.ros.process.main`, when the node process starts;
- ``logging.basicConfig`` for the CLI: :func:`esnet_ros.cli.main`, when an ``esnet`` command starts.

ONNX Runtime and OpenVINO take their threads per session / compiled model (no process-wide state).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads", "torch_threads_during", "inductor_freezing", "training_process"]


def torch_threads(count: int) -> None:
    """PyTorch's intra-op thread pool (process-wide): ``count`` threads; 0 leaves PyTorch's default."""
    if count and torch.get_num_threads() != count:
        torch.set_num_threads(count)


@contextlib.contextmanager
def torch_threads_during(count: int) -> Iterator[None]:
    """PyTorch's intra-op pool at ``count`` threads for a measurement, then back to what it was."""
    previous = torch.get_num_threads()
    torch_threads(count)
    try:
        yield
    finally:
        torch_threads(previous)


def inductor_freezing() -> None:
    """Inductor treats weights as constants (prepacks them, fuses conv with ReLU/add); process-wide."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True


def training_process(threads: int, seed: int) -> None:
    """A training process: ``threads`` CPU threads, denormals flushed (a fine-tuning step here went from 1.5 s to
    0.7 s with them flushed: tiny gradients and Adam moments late in training), seeded RNGs."""
    import numpy as np

    if threads:
        torch_threads(threads)
        torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    np.random.seed(seed)
