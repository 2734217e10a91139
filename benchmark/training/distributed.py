"""DistributedDataParallel under `torchrun`, and the single-process case as world size 1.

`torchrun --nproc_per_node N -m benchmark train <experiment>` sets RANK, LOCAL_RANK and
WORLD_SIZE; `Distributed.from_env` then starts the process group (NCCL on CUDA, gloo on CPU)
and every rank trains on its share of each global batch (benchmark/training/sampler.py). Rank
0 alone writes checkpoints, metrics and MLflow records. Checked against the PyTorch
"Getting started with DistributedDataParallel" tutorial and the torchrun documentation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_env(device_type: str) -> Distributed:
        """Join the process group when launched by torchrun, else a one-process world."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return Distributed()
        if not dist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
        return Distributed(
            rank=dist.get_rank(),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            world_size=dist.get_world_size(),
        )

    def all_reduce_(self, tensors: list[torch.Tensor]) -> None:
        """Sum `tensors` over ranks, in place."""
        if self.enabled:
            for tensor in tensors:
                dist.all_reduce(tensor)

    def broadcast_float(self, value: float, device: torch.device) -> float:
        """Rank 0's `value` on every rank."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
