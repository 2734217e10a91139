"""Seeded generators of fixture archives in the real LEVIR-CD and CDD layouts and file names.

The images are low-entropy (a flat background, a few flat rectangles as "buildings", new
rectangles in B as the change), so they compress to almost nothing and are fast to write, but
every 256x256 tile carries a stamp of (split, index, tile) in its first pixels, so no two tiles
are equal unless a test copies them on purpose (the cross-split duplicate check).

- LEVIR-CD: `train.zip`, `val.zip`, `test.zip`, either layout `levircd.detect_layout` knows: `flat`
  (`A/train_1.png` ...) or `nested` (`train/A/train_1.png` ...). Labels: single-channel PNG 0/255.
- CDD: `ChangeDetectionDataset/Real/subset/{train,val,test}/{A,B,OUT}/NNNNN.jpg` plus a
  `ChangeDetectionDataset/Model/with_shift/...` decoy with colliding names, written as a ZIP
  named `ChangeDetectionDataset.rar` (no free tool writes RAR; `prepare` reads the format from
  the first bytes). Labels are RGB JPEG with grey values near 0 (0..40) and near 255 (215..255),
  so they test binarisation (value >= 128 is change) rather than `== 255`.

Command line (real counts: 637 LEVIR-CD images of 1024x1024, or the 10000 / 2998 / 3000 pairs
of CDD's real subset; `--size 16` makes CDD's images 16x16, so the full archive is quick to
write and to prepare):

    python -m tests.data.archives levir-cd --full OUT_DIR
    python -m tests.data.archives cdd --full [--size 16] OUT_DIR
"""

from __future__ import annotations

import argparse
import io
import stat
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")
SPLIT_ID = {"train": 1, "val": 2, "test": 3}
LEVIR_FULL = {"train": 445, "val": 64, "test": 128}
LEVIR_SMALL = {"train": 3, "val": 2, "test": 2}
CDD_FULL = {"train": 10000, "val": 2998, "test": 3000}
"""The real archive's `Real/subset` (benchmark/data/datasets/cdd.py): val has 2998 pairs, not the
3000 papers quote."""
CDD_SMALL = {"train": 4, "val": 2, "test": 2}
CDD_ROOT = "ChangeDetectionDataset/Real/subset"
CDD_DECOY = "ChangeDetectionDataset/Model/with_shift"
TILE = 256


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def jpeg_bytes(array: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _rectangles(rng: np.random.Generator, size: int, count: int) -> list[tuple[int, int, int, int]]:
    """`count` random (top, left, bottom, right) boxes inside a size x size image."""
    boxes = []
    for _ in range(count):
        h, w = rng.integers(size // 16, size // 4, size=2)
        top, left = rng.integers(0, size - h), rng.integers(0, size - w)
        boxes.append((int(top), int(left), int(top + h), int(left + w)))
    return boxes


def change_pair(
    seed: int, split: str, index: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One low-entropy pair: A, B (size x size x 3 uint8) and the change mask (bool).

    Args:
        seed: fixture seed.
        split: train, val or test (part of the stamp).
        index: the pair's number (part of the stamp; < 65536).
        size: image side in pixels.
    """
    rng = np.random.default_rng([seed, SPLIT_ID[split], index])
    a = np.empty((size, size, 3), np.uint8)
    a[:] = rng.integers(40, 120, size=3, dtype=np.uint8)
    for top, left, bottom, right in _rectangles(rng, size, 4):
        a[top:bottom, left:right] = rng.integers(120, 200, size=3, dtype=np.uint8)
    b = a.copy()
    change = np.zeros((size, size), bool)
    for top, left, bottom, right in _rectangles(rng, size, 2):
        b[top:bottom, left:right] = rng.integers(200, 255, size=3, dtype=np.uint8)
        change[top:bottom, left:right] = True
    for number, (row, col) in enumerate(
        (r, c) for r in range(0, size - 3, TILE) for c in range(0, size - 3, TILE)
    ):
        a[row, col : col + 4, 0] = (SPLIT_ID[split], index >> 8, index & 255, number)
    return a, b, change


def levir_members(
    split: str, count: int, *, size: int = 512, layout: str = "flat", seed: int = 0
) -> dict[str, bytes]:
    """The members of one LEVIR-CD split archive: name -> bytes.

    Args:
        split: train, val or test.
        count: number of image pairs (`{split}_1` ... `{split}_{count}`).
        size: image side (1024 in the real dataset).
        layout: `flat` (`A/train_1.png`) or `nested` (`train/A/train_1.png`).
        seed: fixture seed.
    """
    if layout not in ("flat", "nested"):
        raise ValueError(f"layout {layout!r}: expected 'flat' or 'nested'")
    prefix = "" if layout == "flat" else f"{split}/"
    members: dict[str, bytes] = {}
    for index in range(1, count + 1):
        a, b, change = change_pair(seed, split, index, size)
        name = f"{split}_{index}.png"
        members[f"{prefix}A/{name}"] = png_bytes(a)
        members[f"{prefix}B/{name}"] = png_bytes(b)
        members[f"{prefix}label/{name}"] = png_bytes(np.where(change, 255, 0).astype(np.uint8))
    return members


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    """A zip entry with a fixed date and a Unix mode, so the same members give the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = mode << 16
    if stat.S_ISDIR(mode):
        info.external_attr |= 0x10  # MS-DOS directory flag
    else:
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_zip(
    path: Path, members: Mapping[str, bytes], *, links: Mapping[str, str] | None = None
) -> Path:
    """Write a zip of `members` (name -> bytes), with parent folder entries as real zips have.

    Args:
        path: the zip to write.
        members: regular files.
        links: name -> target, written as Unix symbolic-link entries (for the safety tests).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    folders = sorted(
        {name.rsplit("/", i)[0] + "/" for name in members for i in range(1, name.count("/") + 1)}
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for folder in folders:
            zf.writestr(_entry(folder, stat.S_IFDIR | 0o755), b"")
        for name, data in members.items():
            zf.writestr(_entry(name, stat.S_IFREG | 0o644), data, compresslevel=1)
        for name, target in (links or {}).items():
            zf.writestr(_entry(name, stat.S_IFLNK | 0o777), target)
    return path


def write_levir_archives(
    raw_dir: Path,
    counts: Mapping[str, int] = LEVIR_SMALL,
    *,
    size: int = 512,
    layout: str = "flat",
    seed: int = 0,
) -> dict[str, Path]:
    """Write `train.zip`, `val.zip`, `test.zip` into `raw_dir`; return split -> path."""
    return {
        split: write_zip(
            Path(raw_dir) / f"{split}.zip",
            levir_members(split, counts[split], size=size, layout=layout, seed=seed),
        )
        for split in SPLITS
    }


def cdd_label(rng: np.random.Generator, change: np.ndarray) -> np.ndarray:
    """A JPEG-like grey label: 0..40 where unchanged, 215..255 where changed, as RGB."""
    low = rng.integers(0, 41, size=change.shape)
    high = rng.integers(215, 256, size=change.shape)
    grey = np.where(change, high, low).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def cdd_members(
    counts: Mapping[str, int] = CDD_SMALL, *, size: int = 256, seed: int = 0, decoy: bool = True
) -> dict[str, bytes]:
    """The members of a CDD archive (real subset + `Model/` decoy): name -> bytes.

    Pair `index` of a split is `NNNNN.jpg` (from 00000) in `A/`, `B/` and `OUT/`; `cdd_mask`
    gives the change mask drawn for it. The decoy has two more pairs per split, with the same
    names as the real ones and different content.
    """
    members: dict[str, bytes] = {}
    for split in SPLITS:
        for index in range(counts[split]):
            a, b, change = change_pair(seed, split, index, size)
            rng = np.random.default_rng([seed, SPLIT_ID[split], index, 1])
            stem = f"{index:05d}"
            members[f"{CDD_ROOT}/{split}/A/{stem}.jpg"] = jpeg_bytes(a)
            members[f"{CDD_ROOT}/{split}/B/{stem}.jpg"] = jpeg_bytes(b)
            members[f"{CDD_ROOT}/{split}/OUT/{stem}.jpg"] = jpeg_bytes(cdd_label(rng, change))
    if decoy:
        for split in SPLITS:
            for index in range(counts[split] + 2):
                a, b, change = change_pair(seed + 1000, split, index, size)
                stem = f"{index:05d}"
                members[f"{CDD_DECOY}/{split}/A/{stem}.jpg"] = jpeg_bytes(a)
                members[f"{CDD_DECOY}/{split}/B/{stem}.jpg"] = jpeg_bytes(b)
                members[f"{CDD_DECOY}/{split}/OUT/{stem}.jpg"] = jpeg_bytes(
                    np.where(change, 255, 0).astype(np.uint8)
                )
    return members


def cdd_mask(split: str, index: int, *, size: int = 256, seed: int = 0) -> np.ndarray:
    """The change mask drawn for CDD pair `index` of `split` (what prepare must recover)."""
    return change_pair(seed, split, index, size)[2]


def write_cdd_archive(
    raw_dir: Path,
    counts: Mapping[str, int] = CDD_SMALL,
    *,
    size: int = 256,
    seed: int = 0,
    decoy: bool = True,
) -> Path:
    """Write `ChangeDetectionDataset.rar` (a zip inside) into `raw_dir`; return its path."""
    members = cdd_members(counts, size=size, seed=seed, decoy=decoy)
    return write_zip(Path(raw_dir) / "ChangeDetectionDataset.rar", members)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.data.archives", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("dataset", choices=("levir-cd", "cdd"))
    parser.add_argument("out", type=Path, help="folder to write the archive(s) into")
    parser.add_argument("--full", action="store_true", help="the published split sizes")
    parser.add_argument("--layout", choices=("flat", "nested"), default="flat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--size", type=int, default=256, help="CDD image side in pixels (256 in the real dataset)"
    )
    args = parser.parse_args(argv)
    if args.dataset == "levir-cd":
        counts = LEVIR_FULL if args.full else LEVIR_SMALL
        size = 1024 if args.full else 512
        paths = list(
            write_levir_archives(
                args.out, counts, size=size, layout=args.layout, seed=args.seed
            ).values()
        )
    else:
        counts = CDD_FULL if args.full else CDD_SMALL
        paths = [write_cdd_archive(args.out, counts, size=args.size, seed=args.seed)]
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
