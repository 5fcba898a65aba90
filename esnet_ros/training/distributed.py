"""Distributed training set-up from torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

``torchrun --nproc_per_node N -m esnet_ros.cli train ...``: gloo on the CPU, nccl on CUDA.
"""

from __future__ import annotations

import datetime
import os

import torch

__all__ = ["init_distributed", "barrier", "ShardSampler", "collate_eval"]


def init_distributed(device_arg: str) -> tuple[int, int, int, torch.device]:
    """``(rank, world_size, local_rank, device)`` from torchrun's variables (single process otherwise)."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    if device_arg.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device_arg}: CUDA is not available here; use --device cpu")
    if device_arg == "cuda" and world > 1:
        device_arg = f"cuda:{local}"
    device = torch.device(device_arg)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return rank, world, local, device


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class ShardSampler(torch.utils.data.Sampler):
    """Every ``world``-th index from ``rank``: each sample evaluated exactly once (no padding)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def collate_eval(batch):
    """Images stacked; targets kept as a list (full-resolution labels may differ in size)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]
