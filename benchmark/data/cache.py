"""Decoded pairs of a split in one memory-mapped uint8 array, so training never decodes PNGs.

`write_cache(folder)` (run by `cdbench prepare` and `cdbench synth` for every split they write)
decodes every pair of `folder` once, through `ChangeDetectionDataset` (so with its checks),
into `folder/pairs.npy`: uint8 of shape (pairs, 7, H, W) — date A's RGB, date B's RGB, the
label in {0, 1} — with `folder/pairs.json` naming the pairs in order. `PairsCache` reads
them back with `numpy.load(mmap_mode="r")`: a pair is one contiguous 7·H·W read from the page
cache (0.46 MB at 256 x 256) instead of three PNG decodes (about 10 ms), and the sample is the
same tensor for tensor (tests/test_cache.py).

The PNGs stay the dataset of record (the manifest hashes them); the cache is derived and is
ignored when it does not name exactly the split's pairs (a split edited by hand), or when the
split's images differ in size (a `--allow-partial` LEVIR-CD with non-1024 images). Disk: about
as much again as the PNGs (CDD 4.6 GB, LEVIR-CD 3.3 GB tiles + 3.3 GB whole images).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmark.data.layout import SPLITS, WHOLE

ARRAY = "pairs.npy"
INDEX = "pairs.json"
CHANNELS = 7
"""A (3), B (3), label (1)."""


def write_cache(folder: Path, progress: bool = True) -> Path | None:
    """Decode every pair of the split `folder` into `folder/pairs.npy`; None (nothing written)
    when the pairs differ in size."""
    from benchmark.data.dataset import ChangeDetectionDataset  # the dataset reads caches too

    whole = folder.parent.name == WHOLE
    root = folder.parent.parent if whole else folder.parent
    dataset = ChangeDetectionDataset(root, folder.name, whole=whole, use_cache=False)
    if not dataset.names:
        return None
    first = dataset[0]["image"]
    height, width = first.shape[-2:]
    scratch = folder / f".{ARRAY}.partial-{os.getpid()}"
    array = np.lib.format.open_memmap(
        scratch, mode="w+", dtype=np.uint8, shape=(len(dataset), CHANNELS, height, width)
    )
    try:
        for index in tqdm(range(len(dataset)), desc=f"cache {folder}", disable=not progress):
            sample = dataset[index]
            if sample["image"].shape[-2:] != (height, width):
                del array
                scratch.unlink()
                return None
            array[index, :6] = sample["image"].reshape(6, height, width).numpy()
            array[index, 6] = sample["mask"][0].numpy()
        array.flush()
        del array
        os.replace(scratch, folder / ARRAY)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    (folder / INDEX).write_text(json.dumps({"names": dataset.names, "shape": [height, width]}))
    return folder / ARRAY


def write_caches(root: Path, progress: bool = True) -> list[Path]:
    """`write_cache` for every split of a prepared dataset (and its whole-image splits)."""
    written = []
    for base in (root, root / WHOLE):
        for split in SPLITS:
            if (base / split).is_dir():
                path = write_cache(base / split, progress)
                if path is not None:
                    written.append(path)
    return written


class PairsCache:
    """Read access to one split's cache; opened lazily in each process (DataLoader workers).

    Args:
        folder: the split folder holding `pairs.npy` and `pairs.json`.
        names: the split's pairs as listed from its PNGs (the cache must name the same).
    """

    def __init__(self, folder: Path, names: list[str]) -> None:
        self.folder = folder
        self.names = names
        self._array: np.ndarray | None = None
        self._pid = -1

    @staticmethod
    def find(folder: Path, names: list[str]) -> PairsCache | None:
        """The cache of `folder` when it exists and names exactly `names`, else None."""
        index = folder / INDEX
        if not (folder / ARRAY).exists() or not index.exists():
            return None
        try:
            listed = json.loads(index.read_text())["names"]
        except (json.JSONDecodeError, KeyError):
            return None
        return PairsCache(folder, names) if listed == names else None

    def _open(self) -> np.ndarray:
        if self._array is None or self._pid != os.getpid():
            # a plain ndarray over the map: numpy.memmap's subclass hooks cost microseconds at
            # every slice, and the open-cd crops slice about ten times a pair
            self._array = np.asarray(np.load(self.folder / ARRAY, mmap_mode="r"))
            self._pid = os.getpid()
        return self._array

    def planes(self, index: int) -> np.ndarray:
        """Pair `index` as a read-only memory-mapped view (7, H, W): nothing is read yet."""
        return self._open()[index]

    def pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image uint8 (2, 3, H, W), mask uint8 (1, H, W)) of pair `index`, copied out."""
        row = np.array(self._open()[index])
        height, width = row.shape[-2:]
        image = torch.from_numpy(row[:6]).view(2, 3, height, width)
        return image, torch.from_numpy(row[6:])

    def __getstate__(self) -> dict[str, object]:
        return {"folder": self.folder, "names": self.names, "_array": None, "_pid": -1}
