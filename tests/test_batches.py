"""Training batches made by threads or a DataLoader (benchmark/training/batches.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.opencd import OpenCDAugment
from benchmark.training.batches import ThreadedBatches, training_batches
from benchmark.training.sampler import SeededCrops, SeededSamples


def test_threaded_batches_equal_the_dataloader_in_order(whole_pairs: Path) -> None:
    pairs = ChangeDetectionDataset(whole_pairs, "train", whole=True)
    crops = SeededCrops(pairs, OpenCDAugment(), seed=0)
    items = [7, 1, 3, 0, 9, 4, 2]  # two epochs' items, 2 full batches and a partial one
    reference = list(DataLoader(crops, batch_size=3, sampler=items, num_workers=0))
    for threads in (1, 3):
        batches = list(ThreadedBatches(crops, items, 3, threads))
        assert len(batches) == len(reference) == 3
        for got, expected in zip(batches, reference, strict=True):
            assert got["name"] == expected["name"]
            assert torch.equal(got["image"], expected["image"])
            assert torch.equal(got["mask"], expected["mask"])
            assert torch.equal(got["colour"], expected["colour"])


def test_training_batches_uses_threads_only_for_thread_safe_datasets(whole_pairs: Path) -> None:
    pairs = ChangeDetectionDataset(whole_pairs, "train", whole=True)
    crops = SeededCrops(pairs, OpenCDAugment(), seed=0)
    assert isinstance(training_batches(crops, [0, 1], 2, workers=2), ThreadedBatches)
    assert isinstance(training_batches(crops, [0, 1], 2, workers=0), DataLoader)
    seeded = SeededSamples(pairs, OpenCDAugment(), seed=0)  # global generator: processes
    assert isinstance(training_batches(seeded, [0, 1], 2, workers=2), DataLoader)


def test_threaded_batches_stop_cleanly_when_the_consumer_stops(whole_pairs: Path) -> None:
    pairs = ChangeDetectionDataset(whole_pairs, "train", whole=True)
    crops = SeededCrops(pairs, OpenCDAugment(), seed=0)
    iterator = iter(ThreadedBatches(crops, list(range(40)), 2, threads=2))
    next(iterator)
    iterator.close()  # what a `for` loop left by an exception or a break does
    with pytest.raises(StopIteration):
        next(iterator)
    with pytest.raises(ValueError, match="at least one thread"):
        ThreadedBatches(crops, [0], 1, threads=0)
