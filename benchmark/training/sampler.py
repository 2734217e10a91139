"""Resumable, rank-aware data order and per-sample seeded augmentation.

A run must end the same whether or not it was killed and resumed (checked by
tests/test_training.py), and the same data must be seen under DistributedDataParallel. So the
data order and the augmentation are pure functions of (seed, epoch, position), never of
process state:

- `epoch_indices(size, seed, epoch, ...)`: the epoch's permutation (a `torch.Generator`
  seeded from seed and epoch), cut into global batches of `global_batch` (drop_last), of which
  this rank takes its own contiguous share of every batch, starting at batch `start_batch`.
  A resumed run simply starts at the batch after its checkpoint.
- `SeededSamples`: wraps a dataset so that item `epoch * len(dataset) + index` is sample
  `index` transformed under a torch RNG seeded from (seed, epoch, index) inside
  `torch.random.fork_rng`, so the augmentation neither depends on which worker loads the item
  nor disturbs the main process's RNG (dropout).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from benchmark.data.transforms import Sample

_MIX = 1_000_003


def epoch_indices(
    size: int,
    seed: int,
    epoch: int,
    global_batch: int,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> list[int]:
    """This rank's items for one epoch from batch `start_batch` on, encoded for `SeededSamples`.

    Args:
        size: number of samples in the training split.
        seed: the run's seed.
        epoch: the epoch (0-based); each epoch has its own permutation.
        global_batch: the recipe's batch size, summed over ranks.
        start_batch: the first global batch to yield (resume).
        rank, world_size: this process's share.

    Returns:
        `epoch * size + index` for each sample, `global_batch // world_size` per batch.
    """
    if global_batch % world_size:
        raise ValueError(
            f"batch size {global_batch} is not divisible by the number of processes {world_size}"
        )
    per_rank = global_batch // world_size
    generator = torch.Generator().manual_seed(seed * _MIX + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    batches = size // global_batch
    items: list[int] = []
    for batch in range(start_batch, batches):
        first = batch * global_batch + rank * per_rank
        items += [epoch * size + index for index in order[first : first + per_rank]]
    return items


class SeededSamples(Dataset[Sample]):
    """`dataset` with `transform` applied under an RNG seeded by (seed, epoch, index)."""

    def __init__(
        self, dataset: Dataset[Sample], transform: Callable[[Sample], Sample], seed: int
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.size = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: int) -> Sample:
        epoch, index = divmod(item, self.size)
        sample = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also (lazily) seeds CUDA, capturing a
            # stack trace each call, 1 ms a sample; transforms draw from the CPU generator
            torch.default_generator.manual_seed((self.seed * _MIX + epoch) * _MIX + index)
            return self.transform(sample)
