"""The training loader: batches in DataLoader worker processes, or in threads of this process.

`training_batches(dataset, items, batch_size, workers, pin_memory)` yields the batches of
`dataset[item]` for `items` in order, collated as torch's DataLoader collates them:

- a dataset that says `thread_safe = True` (`SeededCrops`: its own generator per item, its
  time spent in OpenCV, which releases the GIL) is loaded by `ThreadedBatches`, `workers`
  threads of the training process. DataLoader worker processes hand every batch over through
  shared memory: on 2 CPU cores that alone caps delivery at about 1,200-1,500 256 x 256 pairs
  per second, with no work done at all (`cdbench bench`, reports/perf.md); threads hand it
  over for free.
- any other dataset goes through torch's `DataLoader` with `workers` processes: torchvision's
  transforms draw from torch's global generator, which threads would share.

`workers == 0` loads in the calling thread either way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

Batch = dict[str, Any]


class ThreadedBatches:
    """Batches of `batch_size` items of `dataset` (the last one may be smaller), each made by
    one of `threads` threads, up to `2 * threads` batches ahead, yielded in order.

    The dataset must be safe to call from several threads at once (`thread_safe`)."""

    def __init__(
        self,
        dataset: Dataset[Batch],
        items: Sequence[int],
        batch_size: int,
        threads: int,
        pin_memory: bool = False,
    ) -> None:
        if threads < 1:
            raise ValueError(f"ThreadedBatches: expected at least one thread, got {threads}")
        self.dataset = dataset
        self.chunks = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
        self.threads = threads
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        return len(self.chunks)

    def _batch(self, chunk: list[int]) -> Batch:
        batch: Batch
        if hasattr(self.dataset, "batch"):  # collates as it loads (SeededCrops)
            batch = self.dataset.batch(chunk)
        else:
            batch = default_collate([self.dataset[item] for item in chunk])
        if self.pin_memory:
            batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
        return batch

    def __iter__(self) -> Iterator[Batch]:
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="cdbench-loader")
        pending: deque[Future[Batch]] = deque()
        chunks = iter(self.chunks)
        try:
            for chunk in chunks:
                pending.append(pool.submit(self._batch, chunk))
                if len(pending) >= 2 * self.threads:
                    break
            while pending:
                batch = pending.popleft().result()
                for chunk in chunks:
                    pending.append(pool.submit(self._batch, chunk))
                    break
                yield batch
        finally:  # also when the consumer stops early (an interrupt, the end of training)
            pool.shutdown(wait=True, cancel_futures=True)


def training_batches(
    dataset: Dataset[Batch],
    items: Sequence[int],
    batch_size: int,
    workers: int,
    pin_memory: bool = False,
) -> ThreadedBatches | DataLoader[Batch]:
    """The loader of the training loop (see the module docstring)."""
    if workers > 0 and getattr(dataset, "thread_safe", False):
        return ThreadedBatches(dataset, items, batch_size, workers, pin_memory)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=items,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
