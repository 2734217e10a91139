"""Data-loader throughput of `cdbench bench`: the real training loader against plain PIL.

- `training_loader`: exactly what `cdbench train` iterates — `SeededSamples` over
  `ChangeDetectionDataset` (its decoded-pairs cache when the split has one) with the recipe's
  augmentation, uint8 batches of the recipe's size (the loop normalises them on the device),
  `runtime.workers` processes, the seeded epoch order (benchmark/training/loop.py).
- `plain_pil_loader`: the reference implementations' data path at its simplest — decode A, B
  and the label with PIL, stack, no checks, no augmentation — over the same files, with the
  same batch size and workers. The ratio of the two says what the suite's loader costs or
  saves.

- `device_augment_throughput`: the part of a recipe's augmentation that the training loop does
  on its device (open-cd's photometric distortion, benchmark/data/photometric.py), on batches
  of the recipe's size.

Both loaders read a prepared dataset: the real one when it exists, else a stand-in written by
`write_stand_in` (smooth random images with rectangular changes, PNG like the prepared
layout, the recipe's sizes: 256 x 256 tiles, 1024 x 1024 whole images for open-cd's crops).
Throughput is pairs per second after `warmup` batches (worker start-up, page cache).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from benchmark.config import RecipeConfig
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.layout import PARTS, WHOLE, list_pairs
from benchmark.data.photometric import COLOUR_PARAMS, photometric_distortion
from benchmark.run import loader_workers
from benchmark.training.batches import ThreadedBatches, training_batches
from benchmark.training.recipe import training_samples
from benchmark.training.sampler import epoch_indices


def write_stand_in(root: Path, size: int, pairs: int, whole: bool = False, seed: int = 0) -> Path:
    """`pairs` PNG pairs of `size` x `size` in `root/train` (or `root/whole/train`)."""
    folder = root / WHOLE / "train" if whole else root / "train"
    for part in PARTS:
        (folder / part).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(pairs):
        name = f"train_{index:04d}"
        if all((folder / part / f"{name}.png").exists() for part in PARTS):
            continue
        low = rng.integers(0, 256, size=(size // 16, size // 16, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BILINEAR))
        noise = rng.integers(-12, 13, size=base.shape)
        a = np.clip(base + noise, 0, 255).astype(np.uint8)
        b = np.clip(base + rng.integers(-12, 13, size=base.shape), 0, 255).astype(np.uint8)
        label = np.zeros((size, size), np.uint8)
        for _ in range(max(1, size // 64)):
            y, x = rng.integers(0, size - size // 8, size=2)
            h, w = rng.integers(size // 32, size // 8, size=2)
            label[y : y + h, x : x + w] = 255
            b[y : y + h, x : x + w] = rng.integers(0, 256, size=3, dtype=np.uint8)
        Image.fromarray(a).save(folder / "A" / f"{name}.png")
        Image.fromarray(b).save(folder / "B" / f"{name}.png")
        Image.fromarray(label).save(folder / "label" / f"{name}.png")
    return folder


class PlainPilPairs(Dataset[dict[str, Any]]):
    """A, B and label of every pair of `folder`, decoded with PIL: nothing else."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names = list_pairs(folder)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        parts = [np.array(Image.open(self.folder / part / f"{name}.png")) for part in ("A", "B")]
        label = np.array(Image.open(self.folder / "label" / f"{name}.png"))
        image = torch.from_numpy(np.stack(parts)).permute(0, 3, 1, 2)
        return {"image": image, "mask": torch.from_numpy(label)[None] // 255}


def training_loader(
    root: Path, recipe: RecipeConfig, workers: int, batches: int = 64, seed: int = 0
) -> DataLoader[dict[str, Any]] | ThreadedBatches:
    """The loader `cdbench train` builds for `recipe` on `root`: its first epochs, enough for
    `batches` batches (one process of one rank)."""
    pairs = ChangeDetectionDataset(root, "train", whole=recipe.train_on_whole)
    dataset = training_samples(recipe, pairs, seed)  # as the loop: normalised on the device
    items: list[int] = []
    epoch = 0
    while len(items) < batches * recipe.batch_size:
        items += epoch_indices(len(dataset), seed, epoch, recipe.batch_size, 0, 0, 1)
        epoch += 1
    workers = loader_workers(recipe, pairs, workers)
    return training_batches(dataset, items, recipe.batch_size, workers)


def workers_of(loader: DataLoader[dict[str, Any]] | ThreadedBatches) -> str:
    """Who makes the loader's batches, in words: "2 threads", "2 processes", "main process"."""
    if isinstance(loader, ThreadedBatches):
        return f"{loader.threads} threads"
    return f"{loader.num_workers} processes" if loader.num_workers else "main process"


def plain_pil_loader(
    root: Path, recipe: RecipeConfig, workers: int, batches: int = 64
) -> DataLoader[dict[str, Any]]:
    """PIL decoding of the same files, same batch size and workers, no augmentation; random
    order over as many epochs as `batches` batches need."""
    folder = root / WHOLE / "train" if recipe.train_on_whole else root / "train"
    dataset = PlainPilPairs(folder)
    order = RandomSampler(dataset, num_samples=batches * recipe.batch_size)
    return DataLoader(dataset, batch_size=recipe.batch_size, sampler=order, num_workers=workers)


def loader_throughput(
    loader: Iterable[dict[str, Any]], batches: int, warmup: int = 2, windows: int = 1
) -> list[float]:
    """Pairs per second delivered after `warmup` batches, in each of `windows` consecutive
    windows of `batches` batches (the loader must hold `warmup + windows * batches`)."""
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    rates = []
    for _ in range(windows):
        pairs, start = 0, time.perf_counter()
        for _, batch in zip(range(batches), iterator, strict=False):
            pairs += batch["image"].shape[0]
        seconds = time.perf_counter() - start
        if pairs == 0:
            raise ValueError("the loader ran out of batches: give it more pairs or epochs")
        rates.append(pairs / seconds)
    return rates


def device_augment_throughput(
    device: torch.device, batch_size: int, size: int, batches: int = 10, windows: int = 3
) -> list[float]:
    """Pairs per second of open-cd's photometric distortion as the training loop applies it
    on `device`: uint8 batches (batch_size, 2, 3, size, size) already there, after one warm-up
    batch, in each of `windows` windows of `batches` batches. Every step is computed for every
    date whatever was drawn (then selected), so random draws time it fully."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(
        0, 256, (batch_size, 2, 3, size, size), dtype=torch.uint8, generator=generator
    ).to(device)
    colour = torch.rand((batch_size, 2, COLOUR_PARAMS), generator=generator).to(device)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    photometric_distortion(image, colour)
    synchronize()
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(batches):
            photometric_distortion(image, colour)
        synchronize()
        rates.append(batches * batch_size / (time.perf_counter() - start))
    return rates
