"""Decoded pairs of a split in one memory-mapped uint8 array, so training never decodes PNGs.

`write_cache(folder)` (run by `cdbench prepare` and `cdbench synth` for every split they write)
decodes every pair of `folder` once, through `ChangeDetectionDataset` (so with its checks),
into `folder/pairs.npy`: uint8 of shape (pairs, 7, H, W) — date A's RGB, date B's RGB, the
label in {0, 1} — with `folder/pairs.json` naming the pairs in order. `PairsCache` reads
them back with `numpy.load(mmap_mode="r")`: a pair is one contiguous 7·H·W read from the page
cache (0.46 MB at 256 x 256) instead of three PNG decodes (about 10 ms), and the sample is the
same tensor for tensor (tests/test_cache.py).

The PNGs stay the dataset of record (the manifest hashes them); the cache is derived and is
keyed to them: `pairs.json` records the size and modification time (ns) of each of its source
PNGs, read before the pair was decoded, and `PairsCache.find` checks them all (a stat per file,
no reading) when a dataset is opened. A cache that does not name exactly the split's pairs (a
split edited by hand), whose sources changed since (a label edited after prepare), or that an
older version wrote without the sources, is ignored with a warning naming the first changed
file: the samples are decoded from the PNGs, correct but slower, until `cdbench prepare` (or
`cdbench synth`) rewrites the dataset. (A copy that does not keep modification times, e.g.
`cp -r` without `-p`, reads as changed too: the safe side.) No cache is written when the split's
images differ in size (a `--allow-partial` LEVIR-CD with non-1024 images). Disk: about as much
again as the PNGs (CDD 4.6 GB, LEVIR-CD 3.3 GB tiles + 3.3 GB whole images).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmark.data.layout import PARTS, SPLITS, WHOLE
from benchmark.progress import progress_bar

ARRAY = "pairs.npy"
INDEX = "pairs.json"
CHANNELS = 7
"""A (3), B (3), label (1)."""


def source_stats(folder: Path, name: str) -> list[int]:
    """[size, mtime_ns] of each of pair `name`'s PNGs (A, B, label, in PARTS order): what a
    cache entry is keyed to. A missing file gives [-1, -1] (never equal to a recorded stat)."""
    stats: list[int] = []
    for part in PARTS:
        try:
            stat = (folder / part / f"{name}.png").stat()
        except FileNotFoundError:
            stats += [-1, -1]
        else:
            stats += [stat.st_size, stat.st_mtime_ns]
    return stats


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
    # no index while the array is replaced: a run killed in between leaves a cache that is ignored
    (folder / INDEX).unlink(missing_ok=True)
    scratch = folder / f".{ARRAY}.partial-{os.getpid()}"
    array = np.lib.format.open_memmap(
        scratch, mode="w+", dtype=np.uint8, shape=(len(dataset), CHANNELS, height, width)
    )
    sources: list[list[int]] = []
    try:
        indices = range(len(dataset))
        for index in progress_bar(indices, desc=f"cache {folder}", unit="pair", enabled=progress):
            # stat before decoding: a file changed while it is read is recorded as the old one
            sources.append(source_stats(folder, dataset.names[index]))
            sample = dataset[index]
            if sample["image"].shape[-2:] != (height, width):
                del array
                scratch.unlink()
                (folder / ARRAY).unlink(missing_ok=True)  # an older cache, now without an index
                return None
            array[index, :6] = sample["image"].reshape(6, height, width).numpy()
            array[index, 6] = sample["mask"][0].numpy()
        array.flush()
        del array
        os.replace(scratch, folder / ARRAY)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    index_text = json.dumps({"names": dataset.names, "shape": [height, width], "sources": sources})
    scratch_index = folder / f".{INDEX}.partial-{os.getpid()}"
    scratch_index.write_text(index_text)
    os.replace(scratch_index, folder / INDEX)
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
        shape: every pair's (height, width).
    """

    def __init__(self, folder: Path, names: list[str], shape: tuple[int, int]) -> None:
        self.folder = folder
        self.names = names
        self.shape = shape
        self._array: np.ndarray | None = None
        self._pid = -1

    @staticmethod
    def find(folder: Path, names: list[str]) -> PairsCache | None:
        """The cache of `folder` when it exists, names exactly `names` and its source PNGs are
        unchanged since it was written (size and mtime_ns of each); else None, with a warning
        when a cache is there but cannot be used."""
        index = folder / INDEX
        if not (folder / ARRAY).exists() or not index.exists():
            return None
        fix = "the samples are decoded from the PNGs; re-run `cdbench prepare` (or `cdbench synth`)"
        try:
            recorded = json.loads(index.read_text())
            listed, sources = recorded["names"], recorded.get("sources")
            height, width = (int(side) for side in recorded["shape"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            _warn(f"{index}: unreadable ({exc!r}); {fix} to rewrite the cache")
            return None
        if listed != names:
            _warn(f"{index}: lists other pairs than {folder}; {fix} to rewrite the cache")
            return None
        if (
            not isinstance(sources, list)
            or len(sources) != len(names)
            or not all(
                isinstance(entry, list) and len(entry) == 2 * len(PARTS) for entry in sources
            )
        ):
            _warn(
                f"{index}: written without its sources' sizes and times (an older version); {fix}"
            )
            return None
        changed = _changed_files(folder, names, sources)
        if changed:
            more = f" and {len(changed) - 1} more file(s)" if len(changed) > 1 else ""
            _warn(
                f"{changed[0]}{more} changed since the decoded-pairs cache {folder / ARRAY} was "
                f"written (size or modification time); {fix} to rewrite it"
            )
            return None
        expected = (len(names), CHANNELS, height, width)
        try:
            shape = np.load(folder / ARRAY, mmap_mode="r").shape
        except (OSError, ValueError) as exc:
            _warn(f"{folder / ARRAY}: unreadable ({exc}); {fix} to rewrite it")
            return None
        if shape != expected:
            _warn(f"{folder / ARRAY}: shape {shape}, {index} says {expected}; {fix} to rewrite it")
            return None
        return PairsCache(folder, names, (height, width))

    def _open(self) -> np.ndarray:
        if self._array is None or self._pid != os.getpid():
            # a plain ndarray over the map: numpy.memmap's subclass hooks cost microseconds at
            # every slice, and the open-cd crops slice about ten times a pair
            self._array = np.asarray(np.load(self.folder / ARRAY, mmap_mode="r"))
            self._pid = os.getpid()
        return self._array

    def planes(self, index: int) -> np.ndarray:
        """Pair `index` as a read-only memory-mapped view (7, H, W): nothing is read yet."""
        planes: np.ndarray = self._open()[index]
        return planes

    def pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image uint8 (2, 3, H, W), mask uint8 (1, H, W)) of pair `index`, copied out."""
        row = np.array(self._open()[index])
        height, width = row.shape[-2:]
        image = torch.from_numpy(row[:6]).view(2, 3, height, width)
        return image, torch.from_numpy(row[6:])

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.update(_array=None, _pid=-1)
        return state


def _changed_files(folder: Path, names: list[str], sources: list[list[int]]) -> list[Path]:
    """The source PNGs of `folder` whose [size, mtime_ns] differ from the recorded `sources`."""
    changed = []
    for name, recorded in zip(names, sources, strict=True):
        now = source_stats(folder, name)
        if now != recorded:
            changed += [
                folder / part / f"{name}.png"
                for k, part in enumerate(PARTS)
                if now[2 * k : 2 * k + 2] != recorded[2 * k : 2 * k + 2]
            ]
    return changed


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)
