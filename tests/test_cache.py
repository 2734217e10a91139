"""The decoded-pairs cache (benchmark/data/cache.py): written by synth, read transparently by
the dataset, the same samples as the PNGs, ignored when stale."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from benchmark.config import SynthConfig
from benchmark.data.cache import ARRAY, INDEX, write_cache
from benchmark.data.dataset import ChangeDetectionDataset, check_crop
from benchmark.data.layout import write_pair, write_png
from benchmark.data.synth import generate_synthetic
from benchmark.errors import DataError


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
    with pytest.warns(UserWarning, match="lists other pairs"):
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


# --- the cache is keyed to its source PNGs -----------------------------------------------------


def _small_split(root: Path, pairs: int = 3, size: int = 32) -> Path:
    """A split of `pairs` random pairs (no change anywhere) with its cache written."""
    rng = np.random.default_rng(1)
    for index in range(pairs):
        a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        write_pair(root / "train", f"p{index}", a, a, np.zeros((size, size), bool))
    assert write_cache(root / "train", progress=False) == root / "train" / ARRAY
    return root / "train"


def test_an_edited_label_is_read_from_its_png_not_the_stale_cache(tmp_path: Path) -> None:
    """Edit a label after prepare: the dataset returns the edited label, not the cached one."""
    folder = _small_split(tmp_path / "data")
    label = folder / "label" / "p1.png"
    before = label.stat()
    write_png(label, np.full((32, 32), 255, np.uint8))  # every pixel changed now
    assert (label.stat().st_size, label.stat().st_mtime_ns) != (before.st_size, before.st_mtime_ns)
    with pytest.warns(UserWarning, match=rf"{label}.* changed since the decoded-pairs cache"):
        dataset = ChangeDetectionDataset(tmp_path / "data", "train")
    assert dataset.cache is None
    assert int(dataset[1]["mask"].sum()) == 32 * 32
    assert int(dataset[0]["mask"].sum()) == 0
    # rewriting the cache (what prepare and synth do) makes it current again
    write_cache(folder, progress=False)
    dataset = ChangeDetectionDataset(tmp_path / "data", "train")
    assert dataset.cache is not None and int(dataset[1]["mask"].sum()) == 32 * 32


def test_a_changed_modification_time_alone_makes_the_cache_stale(tmp_path: Path) -> None:
    """Same size, other content is possible (a PNG re-encoded, a pixel flipped): the time counts."""
    folder = _small_split(tmp_path / "data")
    image = folder / "B" / "p2.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    with pytest.warns(UserWarning, match=rf"{image}.* changed since"):
        assert ChangeDetectionDataset(tmp_path / "data", "train").cache is None


def test_an_unchanged_cache_is_used_and_survives_a_copy_that_keeps_times(tmp_path: Path) -> None:
    folder = _small_split(tmp_path / "data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a current cache
        assert ChangeDetectionDataset(tmp_path / "data", "train").cache is not None
        shutil.copytree(tmp_path / "data", tmp_path / "copy")  # copy2: times kept
        assert ChangeDetectionDataset(tmp_path / "copy", "train").cache is not None
    index = json.loads((folder / INDEX).read_text())
    assert len(index["sources"]) == 3 and all(len(entry) == 6 for entry in index["sources"])
    assert not list(folder.glob(".*partial*"))


def test_a_cache_without_its_sources_is_not_trusted(tmp_path: Path) -> None:
    """An index written before the sources were recorded (or damaged) cannot be checked."""
    folder = _small_split(tmp_path / "data")
    index = json.loads((folder / INDEX).read_text())
    del index["sources"]
    (folder / INDEX).write_text(json.dumps(index))
    with pytest.warns(UserWarning, match="written without its sources"):
        assert ChangeDetectionDataset(tmp_path / "data", "train").cache is None
    (folder / INDEX).write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        assert ChangeDetectionDataset(tmp_path / "data", "train").cache is None


def test_smallest_size_with_and_without_a_cache(tmp_path: Path) -> None:
    _small_split(tmp_path / "data")
    assert ChangeDetectionDataset(tmp_path / "data", "train").smallest_size() == (32, 32)
    folder = tmp_path / "mixed" / "train"
    for name, (height, width) in (("p0", (64, 32)), ("p1", (32, 96))):
        image = np.zeros((height, width, 3), np.uint8)
        write_pair(folder, name, image, image, np.zeros((height, width), bool))
    dataset = ChangeDetectionDataset(tmp_path / "mixed", "train")
    assert dataset.cache is None and dataset.smallest_size() == (32, 32)
    check_crop(dataset, 32, "recipes.r.crop")
    with pytest.raises(DataError, match=r"recipes.r.crop: a crop of 64 x 64 does not fit"):
        check_crop(dataset, 64, "recipes.r.crop")
