"""torchrun / DistributedDataParallel glue: process-group set-up and cross-rank agreement checks.

Launch with ``torchrun --nproc_per_node=N -m snfs.train ...``. NCCL is used on GPUs, gloo on CPU.
``batch_size`` stays the global batch; every rank takes its share of each batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from snfs.errors import RankMismatchError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device | None]:
    """Join the process group torchrun describes in the environment; no-op for a single process.

    Returns the rank info and, under torchrun with CUDA, the device of this rank.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    device = None
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank), device


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def assert_same_on_all_ranks(value: int, what: str, device: torch.device) -> None:
    """Raise if ``value`` differs between ranks (a cheap min/max all-reduce)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    t = torch.tensor([value, -value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if t[0].item() != value or -t[1].item() != value:
        raise RankMismatchError(
            f"{what} differs between ranks (rank {dist.get_rank()}: {value}, max {t[0].item()}, "
            f"min {-t[1].item()}); the sparse algorithm is not rank-deterministic"
        )


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
