"""The decoded-pairs cache (benchmark/data/cache.py): written by synth, read transparently by
the dataset, the same samples as the PNGs, ignored when stale."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from benchmark.config import SynthConfig
from benchmark.data.cache import ARRAY, INDEX, write_cache
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.synth import generate_synthetic


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "synthetic"
    generate_synthetic(root, SynthConfig(seed=0, size=64, train=5, val=3, test=3), workers=1)
    return root


def test_synth_writes_a_cache_per_split_and_lists_it(synthetic: Path) -> None:
    manifest = json.loads((synthetic / "manifest.json").read_text())
    assert sorted(manifest["caches"]) == [f"{s}/{ARRAY}" for s in ("test", "train", "val")]
    array = np.load(synthetic / "train" / ARRAY, mmap_mode="r")
    assert array.shape == (5, 7, 64, 64) and array.dtype == np.uint8
    assert set(np.unique(array[:, 6])) <= {0, 1}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_cached_samples_equal_the_decoded_pngs(synthetic: Path, split: str) -> None:
    cached = ChangeDetectionDataset(synthetic, split)
    decoded = ChangeDetectionDataset(synthetic, split, use_cache=False)
    assert cached.cache is not None and decoded.cache is None
    for index in range(len(decoded)):
        a, b = cached[index], decoded[index]
        assert a["name"] == b["name"]
        assert a["image"].dtype == b["image"].dtype == torch.uint8
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_workers_read_the_cache_after_pickling(synthetic: Path) -> None:
    dataset = ChangeDetectionDataset(synthetic, "train")
    dataset[0]  # opens the memory map in this process
    copy = pickle.loads(pickle.dumps(dataset))  # what a spawned worker gets: no array inside
    assert len(pickle.dumps(dataset)) < 10_000 and copy.cache._array is None
    assert torch.equal(copy[1]["image"], dataset[1]["image"])
    batches = list(DataLoader(dataset, batch_size=5, num_workers=2))
    reference = ChangeDetectionDataset(synthetic, "train", use_cache=False)
    expected = torch.stack([reference[i]["image"] for i in range(5)])
    assert torch.equal(batches[0]["image"], expected)


def test_a_stale_cache_is_ignored(synthetic: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic, root)
    for part in ("A", "B", "label"):
        (root / "train" / part / "train_0000.png").unlink()
    dataset = ChangeDetectionDataset(root, "train")
    assert dataset.cache is None and len(dataset) == 4
    reference = ChangeDetectionDataset(synthetic, "train", use_cache=False)
    assert torch.equal(dataset[0]["image"], reference[1]["image"])


def test_pairs_of_different_sizes_get_no_cache(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "train"
    for index, size in enumerate((32, 64)):
        for part, mode in (("A", "RGB"), ("B", "RGB"), ("label", "L")):
            (folder / part).mkdir(parents=True, exist_ok=True)
            Image.new(mode, (size, size)).save(folder / part / f"p{index}.png")
    assert write_cache(folder, progress=False) is None
    assert not (folder / ARRAY).exists() and not (folder / INDEX).exists()
    assert not list(folder.glob(".*partial*"))
