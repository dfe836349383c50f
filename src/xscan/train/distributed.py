"""Distributed data parallel set-up from the ``torchrun`` environment.

``torchrun --nproc_per_node N scripts/train.py CONFIG`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; NCCL is used on CUDA and gloo on CPU. Without those variables everything runs
in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` fails clearly without a GPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("train.device: 'cuda' requested but no CUDA device is available")
        if preference == "cuda":
            return torch.device("cuda", local_rank)
    return torch.device(preference)


def init_distributed(device_preference: str = "auto") -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, device)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's ``value`` on every rank."""
    if not info.enabled:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=info.device)
    dist.broadcast(t, src=0)
    return int(t.item())


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
