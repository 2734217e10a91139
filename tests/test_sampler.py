"""The resumable, seeded data order and samples of training (benchmark/training/sampler.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.opencd import OpenCDAugment
from benchmark.data.photometric import COLOUR_PARAMS
from benchmark.errors import DataError
from benchmark.training.recipe import train_transform
from benchmark.training.sampler import SeededCrops, SeededSamples, epoch_indices, sample_seed
from tests.conftest import small_recipe

SIZE, BATCH = 37, 4  # 9 full batches (36 items), one item dropped


def test_epoch_indices_two_ranks_interleave_to_the_single_process_order() -> None:
    full = epoch_indices(SIZE, seed=3, epoch=2, global_batch=BATCH)
    ranks = [
        epoch_indices(SIZE, seed=3, epoch=2, global_batch=BATCH, rank=r, world_size=2)
        for r in (0, 1)
    ]
    assert len(full) == 36 and all(len(r) == 18 for r in ranks)
    merged = []
    for batch in range(9):
        for rank in ranks:
            merged += rank[2 * batch : 2 * batch + 2]
    assert merged == full


def test_epoch_indices_resume_gives_the_suffix() -> None:
    full = epoch_indices(SIZE, seed=3, epoch=1, global_batch=BATCH)
    for k in (0, 1, 5, 8, 9):
        assert (
            epoch_indices(SIZE, seed=3, epoch=1, global_batch=BATCH, start_batch=k)
            == full[k * BATCH :]
        )
    rank1 = epoch_indices(SIZE, seed=3, epoch=1, global_batch=BATCH, rank=1, world_size=2)
    resumed = epoch_indices(
        SIZE, seed=3, epoch=1, global_batch=BATCH, start_batch=4, rank=1, world_size=2
    )
    assert resumed == rank1[4 * 2 :]


def test_epoch_indices_encoding_drop_last_and_determinism() -> None:
    epoch = 3
    items = epoch_indices(SIZE, seed=0, epoch=epoch, global_batch=BATCH)
    assert all(epoch * SIZE <= item < (epoch + 1) * SIZE for item in items)
    indices = [item - epoch * SIZE for item in items]
    assert len(indices) == SIZE - SIZE % BATCH == 36
    assert len(set(indices)) == 36 and set(indices) <= set(range(SIZE))
    assert epoch_indices(SIZE, seed=0, epoch=epoch, global_batch=BATCH) == items
    other_epoch = [i - 4 * SIZE for i in epoch_indices(SIZE, 0, 4, BATCH)]
    other_seed = [i - epoch * SIZE for i in epoch_indices(SIZE, 1, epoch, BATCH)]
    assert other_epoch != indices and other_seed != indices


def test_epoch_indices_refuses_a_batch_not_divisible_by_world_size() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        epoch_indices(SIZE, seed=0, epoch=0, global_batch=5, world_size=2)


def _random_sample(generator: torch.Generator, size: int = 96, name: str = "x") -> dict[str, Any]:
    image = torch.randint(0, 256, (2, 3, size, size), generator=generator, dtype=torch.uint8)
    mask = (torch.rand(1, size, size, generator=generator) > 0.7).to(torch.uint8)
    return {"image": image, "mask": mask, "name": name}


def _seeded_samples() -> SeededSamples:
    generator = torch.Generator().manual_seed(11)
    data = [_random_sample(generator, name=f"p{i}") for i in range(3)]
    transform = train_transform(small_recipe(crop=64, augment="flips"))
    return SeededSamples(data, transform, seed=7)  # type: ignore[arg-type]


def test_seeded_samples_ignore_and_keep_the_global_rng() -> None:
    samples = _seeded_samples()
    torch.manual_seed(1)
    first = samples[4]  # epoch 1, index 1
    torch.manual_seed(2)
    torch.rand(17)
    state = torch.get_rng_state()
    second = samples[4]
    assert torch.equal(torch.get_rng_state(), state)
    assert first["name"] == second["name"] == "p1"
    assert torch.equal(first["image"], second["image"])
    assert torch.equal(first["mask"], second["mask"])


def test_seeded_samples_differ_between_epochs() -> None:
    samples = _seeded_samples()
    assert len(samples) == 3
    epoch0, epoch1 = samples[1], samples[3 + 1]
    assert epoch0["name"] == epoch1["name"] == "p1"
    assert epoch0["image"].shape == epoch1["image"].shape == (2, 3, 64, 64)
    assert not torch.equal(epoch0["image"], epoch1["image"])


def test_a_training_split_smaller_than_one_batch_is_an_error_not_an_endless_loop() -> None:
    """Batches drop the last incomplete one: 8 pairs never fill a batch of 16, so every epoch
    would be empty and a loop asking for steps would spin forever."""
    assert len(epoch_indices(16, 0, 0, 16)) == 16
    with pytest.raises(DataError, match=r"8 training samples cannot fill one batch of 16"):
        epoch_indices(8, 0, 0, 16)


def test_seeded_crops_are_a_function_of_seed_epoch_and_pair(whole_pairs: Path) -> None:
    pairs = ChangeDetectionDataset(whole_pairs, "train", whole=True)
    assert pairs.cache is not None
    crops = SeededCrops(pairs, OpenCDAugment(), seed=3)
    first, again = crops[2], crops[2]
    assert first["name"] == pairs.names[2]
    assert torch.equal(first["image"], again["image"])
    assert torch.equal(first["mask"], again["mask"])
    assert not torch.equal(crops[2]["image"], crops[len(pairs) + 2]["image"])  # next epoch
    assert not torch.equal(first["image"], SeededCrops(pairs, OpenCDAugment(), 4)[2]["image"])
    # the memory-mapped cache and the PNGs give the same samples
    png = ChangeDetectionDataset(whole_pairs, "train", whole=True, use_cache=False)
    from_png = SeededCrops(png, OpenCDAugment(), seed=3)[2]
    assert torch.equal(first["image"], from_png["image"])
    assert torch.equal(first["mask"], from_png["mask"])


@pytest.mark.parametrize("rotate_prob", [0.0, 1.0])
def test_crops_written_into_batch_slots_equal_fresh_arrays(
    whole_pairs: Path, rotate_prob: float
) -> None:
    # the batch path reuses each thread's work arrays and writes into the batch: the same
    # crops as augmenting each pair into new arrays, whatever came before
    pairs = ChangeDetectionDataset(whole_pairs, "train", whole=True)
    augment = OpenCDAugment(rotate_prob=rotate_prob)
    items = [0, 4, 2, len(pairs) + 2, 0]
    batch = SeededCrops(pairs, augment, seed=5).batch(items)
    assert batch["image"].shape == (5, 2, 3, 256, 256) and batch["mask"].shape == (5, 1, 256, 256)
    for slot, item in enumerate(items):
        epoch, index = divmod(item, len(pairs))
        generator = torch.Generator().manual_seed(sample_seed(5, epoch, index))
        image, mask, colour = augment.planes(np.array(pairs.planes(index)), generator)  # no map
        assert np.array_equal(batch["image"][slot].numpy(), image)
        assert np.array_equal(batch["mask"][slot].numpy(), mask)
        assert np.array_equal(batch["colour"][slot].numpy(), colour)
    assert torch.equal(batch["image"][0], batch["image"][4])
    with pytest.raises(ValueError, match="expected out arrays"):
        wrong = (
            np.empty((2, 3, 8, 8), np.uint8),
            np.empty((1, 8, 8), np.uint8),
            np.empty((2, COLOUR_PARAMS), np.float32),
        )
        augment.planes(pairs.planes(0), torch.Generator(), wrong)
    right_size = (np.empty((2, 3, 256, 256), np.uint8), np.empty((1, 256, 256), np.uint8))
    with pytest.raises(ValueError, match=r"expected out arrays .* and \(2, 7\)"):
        augment.planes(pairs.planes(0), torch.Generator(), (*right_size, np.empty(7, np.float32)))
