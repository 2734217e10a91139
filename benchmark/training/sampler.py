"""Resumable, rank-aware data order and per-sample seeded augmentation.

A run must end the same whether or not it was killed and resumed (checked by
tests/test_training.py), and the same data must be seen under DistributedDataParallel. So the
data order and the augmentation are pure functions of (seed, epoch, position), never of
process state:

- `epoch_indices(size, seed, epoch, ...)`: the epoch's permutation (a `torch.Generator`
  seeded from seed and epoch), cut into global batches of `global_batch` (drop_last), of which
  this rank takes its own contiguous share of every batch, starting at batch `start_batch`.
  A resumed run simply starts at the batch after its checkpoint.
- `sample_seed(seed, epoch, index)`: the seed of one item's augmentation.
- `SeededSamples`: wraps a dataset so that item `epoch * len(dataset) + index` is sample
  `index` transformed under a torch RNG seeded from (seed, epoch, index) inside
  `torch.random.fork_rng`, so the augmentation neither depends on which worker loads the item
  nor disturbs the main process's RNG (dropout).
- `SeededCrops`: the same for open-cd's augmentation (benchmark/data/opencd.py), which takes
  its own `torch.Generator` instead of the global one, so several threads may load at once.
  Its batches carry `colour`, the photometric distortion drawn for each pair, which the
  training loop applies on its device (benchmark/data/photometric.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.opencd import OpenCDAugment
from benchmark.data.photometric import COLOUR_PARAMS
from benchmark.data.transforms import Sample
from benchmark.errors import DataError

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
    if size < global_batch:
        raise DataError(
            f"{size} training samples cannot fill one batch of {global_batch} (an epoch drops "
            f"its last incomplete batch, so training would never take a step): lower the "
            f"recipe's batch_size to at most {size}, or prepare more training pairs"
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


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item (epoch, index)'s augmentation in a run seeded `seed`."""
    return (seed * _MIX + epoch) * _MIX + index


class SeededSamples(Dataset[Sample]):
    """`dataset` with `transform` applied under an RNG seeded by (seed, epoch, index)."""

    def __init__(
        self, dataset: Dataset[Sample], transform: Callable[[Sample], Sample], seed: int
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        # torch types Dataset without __len__; the datasets wrapped here all define it
        self.size = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: int) -> Sample:
        epoch, index = divmod(item, self.size)
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also (lazily) seeds CUDA, capturing a
            # stack trace each call, 1 ms a sample; transforms draw from the CPU generator
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self.transform(self.dataset[index])


class SeededCrops(Dataset[Sample]):
    """`pairs` under open-cd's augmentation: item `epoch * len(pairs) + index` is pair `index`
    augmented with a generator seeded by `sample_seed(seed, epoch, index)`, its crop window
    read from the split's memory-mapped cache (the pair is never copied whole). No global
    state: several threads may load items at once (`thread_safe`).

    Items are rotated, cropped and flipped; their photometric distortion is drawn, not
    applied: `colour` (2, COLOUR_PARAMS) for `photometric_distortion` on the training device."""

    thread_safe = True

    def __init__(self, pairs: ChangeDetectionDataset, augment: OpenCDAugment, seed: int) -> None:
        self.pairs = pairs
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: int) -> Sample:
        batch = self.batch([item])
        return {key: value[0] for key, value in batch.items()}

    def batch(self, items: list[int]) -> Sample:
        """Items `items` collated as torch's `default_collate` collates them, each augmented
        straight into its slot of the batch (no copy per item)."""
        where = [divmod(item, len(self.pairs)) for item in items]  # (epoch, index)
        planes = [self.pairs.planes(index) for _, index in where]  # map views, or decoded
        crop = self.augment.crop
        # a batch has one size: the crop's, or without a crop the first pair's
        crop_size = (crop, crop) if crop is not None else tuple(planes[0].shape[1:])
        image = torch.empty((len(items), 2, 3, *crop_size), dtype=torch.uint8)
        mask = torch.empty((len(items), 1, *crop_size), dtype=torch.uint8)
        colour = torch.empty((len(items), 2, COLOUR_PARAMS), dtype=torch.float32)
        for slot, (epoch, index) in enumerate(where):
            generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
            out = (image[slot].numpy(), mask[slot].numpy(), colour[slot].numpy())
            self.augment.planes(planes[slot], generator, out)
        names = [self.pairs.names[index] for _, index in where]
        return {"image": image, "mask": mask, "colour": colour, "name": names}
