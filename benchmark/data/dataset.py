"""A PyTorch dataset over the prepared layout (`benchmark.data.layout`), for every dataset.

Samples are dicts in torchgeo's style:

    {"image": uint8 tensor (2, 3, H, W)   dates A and B, RGB,
     "mask":  uint8 tensor (1, H, W)      1 = change, 0 = no change,
     "name":  str                         the pair's file name without `.png`}

`transforms`, if given, takes and returns such a dict (see `benchmark.data.transforms`).

Checked against torchgeo's `torchgeo/datasets/levircd.py` (class `LEVIRCDBase`): the same
constructor shape `(root, split, transforms)` and the same sample layout (`image` stacks the two
dates on a leading time axis, `mask` has one channel). Departures, deliberate:
- no `download` argument: downloading and preparing are separate stages here
  (`cdbench download`, `cdbench prepare`); a missing folder raises a `DataError` that names it
  and the command to run;
- the image stays uint8 (torchgeo returns float); conversion happens in
  `transforms.PairNormalize`. PNGs are decoded with PIL, as torchgeo does: torchvision's
  `decode_png` is no faster here (about 3.5 ms per 256x256 tile either way) and is deprecated
  since torchvision 0.29 in favour of TorchCodec, which the suite does not depend on;
- labels must be exactly 0 or 255 (the prepared layout's contract); anything else raises a
  `DataError` naming the file, where torchgeo clamps silently;
- `mask` is uint8 in {0, 1} (torchgeo: int64) and the sample carries the pair's `name`, which
  the evaluation needs to save per-image predictions;
- `whole=True` reads `root/whole/<split>`, LEVIR-CD's uncut 1024x1024 images, for
  whole-image evaluation;
- when the split has a cache of its decoded pairs (`pairs.npy`, written by `cdbench prepare`
  and `cdbench synth`; benchmark/data/cache.py), samples are read from it instead of the
  PNGs: the same tensors, without decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from benchmark.data.cache import PairsCache
from benchmark.data.layout import SPLITS, WHOLE, list_pairs
from benchmark.errors import DataError

Sample = dict[str, Any]


def read_png(path: Path, mode: str) -> torch.Tensor:
    """Decode one PNG to a uint8 (C, H, W) tensor in PIL `mode` ("RGB" or "L").

    Raises:
        DataError: If the file is missing or cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            array = np.array(image.convert(mode))
    except FileNotFoundError as exc:
        raise DataError(
            f"{path}: missing; re-run `cdbench prepare` (or `cdbench synth`) to rewrite the dataset"
        ) from exc
    except OSError as exc:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise DataError(
            f"{path}: not a readable PNG ({exc}); re-run `cdbench prepare` "
            f"(or `cdbench synth`) to rewrite the dataset"
        ) from exc
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1)


class ChangeDetectionDataset(Dataset[Sample]):
    """The pairs of one split of a prepared dataset.

    Args:
        root: The prepared dataset's folder, e.g. `data/prepared/levir-cd`.
        split: "train", "val" or "test".
        transforms: Called on each sample dict; returns the transformed dict.
        whole: Read the uncut images under `root/whole/<split>` (LEVIR-CD only).
        use_cache: Read the split's decoded-pairs cache when it has one (see above).

    Raises:
        DataError: If the split folder is missing, or a pair lacks a counterpart.
    """

    def __init__(
        self,
        root: Path,
        split: str,
        transforms: Callable[[Sample], Sample] | None = None,
        whole: bool = False,
        use_cache: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        self.whole = whole
        if whole:
            self.folder = self.root / WHOLE / split
            if not self.folder.is_dir():
                raise DataError(
                    f"{self.folder}: no whole-image folder; whole-image evaluation needs a "
                    f"dataset prepared with its uncut images (LEVIR-CD: `cdbench prepare levir-cd`)"
                )
        else:
            self.folder = self.root / split
        self.names = list_pairs(self.folder)
        self.cache = PairsCache.find(self.folder, self.names) if use_cache else None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        if self.cache is not None:  # checked when the cache was written
            image, mask = self.cache.pair(index)
        else:
            image, mask = self._decode(index)
        sample: Sample = {"image": image, "mask": mask, "name": name}
        return self.transforms(sample) if self.transforms is not None else sample

    def planes(self, index: int) -> np.ndarray:
        """Pair `index` untransformed as uint8 planes (7, H, W): A's RGB, B's RGB, the mask.
        With a cache, a memory-mapped view that reads only the pixels used (a crop window)."""
        if self.cache is not None:
            return self.cache.planes(index)
        image, mask = self._decode(index)
        height, width = mask.shape[-2:]
        return torch.cat([image.reshape(6, height, width), mask]).numpy()

    def smallest_size(self) -> tuple[int, int]:
        """The smallest height and the smallest width over the split's pairs: the cache's shape
        (written only when every pair has one size), else read from every A image's PNG header
        (no decoding; the A, B and label sizes of a pair are checked when it is decoded).

        Raises:
            DataError: If the split has no pairs.
        """
        if not self.names:
            raise DataError(f"{self.folder}: no pairs; run `cdbench prepare` (or `cdbench synth`)")
        if self.cache is not None:
            height, width = self.cache.shape
            return height, width
        heights, widths = [], []
        for name in self.names:
            path = self.folder / "A" / f"{name}.png"
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except OSError as exc:
                raise DataError(
                    f"{path}: not a readable PNG ({exc}); re-run `cdbench prepare` "
                    f"(or `cdbench synth`) to rewrite the dataset"
                ) from exc
            heights.append(height)
            widths.append(width)
        return min(heights), min(widths)

    def _decode(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (2, 3, H, W), mask (1, H, W) in {0, 1}) of pair `index` from its PNGs."""
        name = self.names[index]
        a = read_png(self.folder / "A" / f"{name}.png", "RGB")
        b = read_png(self.folder / "B" / f"{name}.png", "RGB")
        label_path = self.folder / "label" / f"{name}.png"
        label = read_png(label_path, "L")
        if a.shape != b.shape or a.shape[1:] != label.shape[1:]:
            raise DataError(
                f"{self.folder}: pair {name!r} has A {tuple(a.shape[1:])}, "
                f"B {tuple(b.shape[1:])} and label {tuple(label.shape[1:])} (H, W); "
                f"expected one size for all three"
            )
        if not bool(((label == 0) | (label == 255)).all()):
            found = sorted(set(torch.unique(label).tolist()) - {0, 255})
            shown = ", ".join(map(str, found[:5])) + (", ..." if len(found) > 5 else "")
            raise DataError(
                f"{label_path}: label values must be 0 or 255, found {shown}; "
                f"re-run `cdbench prepare` (which binarises labels) to rewrite it"
            )
        return torch.stack([a, b]), label // 255


def check_crop(pairs: ChangeDetectionDataset, crop: int | None, where: str) -> None:
    """Raise a DataError, before any training, when the random crop of side `crop` (`where`
    names the setting, e.g. `recipes.demo.crop`) does not fit in every pair of `pairs`: the
    augmentation would otherwise fail inside a data-loading worker, mid-run.

    Raises:
        DataError: naming the crop, the smallest image size and the folder.
    """
    if crop is None:
        return
    height, width = pairs.smallest_size()
    if crop > height or crop > width:
        raise DataError(
            f"{where}: a crop of {crop} x {crop} does not fit the images of {pairs.folder} "
            f"(smallest {height} x {width}, H x W); expected a crop of at most "
            f"{min(height, width)}: lower {where}, or prepare larger images"
        )
