"""What a dataset module declares (`Dataset`) and the helpers its layout detection shares.

A module per dataset, as torchgeo's `torchgeo/datasets/` has: the archives, the official split
sizes, how the archive entries are laid out, whether the prepared copy keeps whole images.
`benchmark.data.prepare` runs one pipeline over any of them. This module imports nothing heavy
(no numpy, no archive readers), so the registry can be read by `benchmark.config`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from benchmark.data.sources import Archive, ManualPage
from benchmark.errors import DataError

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
ROLES = ("A", "B", "label")


class Member(Protocol):
    """One archive entry as layout detection reads it (`benchmark.data.extract.Member`)."""

    @property
    def name(self) -> str: ...

    @property
    def is_dir(self) -> bool: ...


@dataclass(frozen=True)
class RawPair:
    """One pair as found in an archive.

    Attributes:
        split: train, val or test.
        stem: output name without extension (`train_1` for LEVIR-CD, `00000` for CDD).
        members: archive member names of A, B and label.
    """

    split: str
    stem: str
    members: tuple[str, str, str]


FindPairs = Callable[[Path, str, Sequence[Member]], tuple[str, list[RawPair]]]
"""(archive path, split or "" for an archive of every split, its entries) -> (a description
of the layout found, the pairs). Raises `DataError` naming the archive when the layout is
unknown or a pair is incomplete."""


@dataclass(frozen=True)
class Dataset:
    """One dataset: where its archives come from and how `cdbench prepare` reads them.

    Attributes:
        name: The name on the command line and in params.yaml (`levir-cd`).
        title: The name in messages (`LEVIR-CD`).
        stage: The DVC stage that writes the prepared copy (`prepare@levir-cd`, `synth`).
        archives: Every archive to download, with md5s and sources; empty for a generated
            dataset (which has no split_archives, official_pairs or find_pairs either).
        manual_pages: Where a person can fetch the archives by hand.
        split_archives: split -> the archive file holding it (the same file for every split
            when one archive holds them all).
        official_pairs: split -> the number of pairs in the official archives (whole images
            for a tiled dataset); only these are accepted without `--allow-partial`.
        unit: What `official_pairs` counts, in messages (`images`, `pairs`).
        find_pairs: Detects the layout of one archive and lists its pairs.
        extract_prefix: The folder inside each archive that holds every pair ("" for all).
        tile: 0: pairs are stored as they are; otherwise each image is cut into
            tile x tile tiles and also kept whole under `whole/`.
        side: The side of every image in the official archives (0: any size).
    """

    name: str
    title: str
    stage: str
    archives: tuple[Archive, ...] = ()
    manual_pages: tuple[ManualPage, ...] = ()
    split_archives: Mapping[str, str] = field(default_factory=dict)
    official_pairs: Mapping[str, int] = field(default_factory=dict)
    unit: str = "pairs"
    find_pairs: FindPairs | None = None
    extract_prefix: str = ""
    tile: int = 0
    side: int = 0

    @property
    def has_whole(self) -> bool:
        """Whether the prepared copy keeps the uncut images under `whole/` (tiled datasets)."""
        return self.tile > 0

    @property
    def archive_per_split(self) -> bool:
        """Whether each split has its own archive (LEVIR-CD), not one archive of all (CDD)."""
        return len(set(self.split_archives.values())) > 1

    def tile_pairs(self, split: str) -> int:
        """Pairs of `split` in the official archives, counted in tiles for a tiled dataset."""
        pairs = self.official_pairs[split]
        return pairs * (self.side // self.tile) ** 2 if self.tile else pairs


# --------------------------------------------------------------------------- layout detection


def is_mac_metadata(name: str) -> bool:
    """macOS zip artefacts: `__MACOSX/...` and AppleDouble `._name` files (not images)."""
    return name.startswith("__MACOSX/") or name.rsplit("/", 1)[-1].startswith("._")


def image_names(members: Sequence[Member]) -> list[str]:
    """The image entries of an archive (by suffix), without folders and macOS metadata."""
    return [
        m.name
        for m in members
        if not m.is_dir and m.name.lower().endswith(IMAGE_SUFFIXES) and not is_mac_metadata(m.name)
    ]


def found_summary(names: Sequence[str]) -> str:
    """What an archive holds, for layout errors: its folders (two levels deep) and an example."""
    folders = sorted({"/".join(n.split("/")[:-1][:2]) + "/" if "/" in n else n for n in names})
    if not folders:
        return "no image files"
    shown = ", ".join(folders[:8]) + (f" and {len(folders) - 8} more" if len(folders) > 8 else "")
    return f"{shown} (e.g. {sorted(names)[0]})"


def natural(stem: str) -> tuple[str, int]:
    """Sort key putting `train_2` before `train_10`."""
    match = re.match(r"^(.*?)([0-9]+)$", stem)
    return (match.group(1), int(match.group(2))) if match else (stem, -1)


def pairs_from_roles(
    archive: Path, split: str, by_role: dict[str, dict[str, str]], folder: dict[str, str]
) -> list[RawPair]:
    """Join the A, B and label entries of one split by stem, refusing incomplete pairs.

    Args:
        archive: The archive, named in errors.
        split: The split these entries belong to.
        by_role: role (A, B, label) -> stem -> archive entry name.
        folder: role -> the folder holding its entries, named in errors.
    """
    stems = set().union(*(set(entries) for entries in by_role.values()))
    for role in ROLES:
        missing = sorted(stems - set(by_role[role]), key=natural)
        if missing:
            other = next(r for r in ROLES if missing[0] in by_role[r])
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(
                f"{archive}: {by_role[other][missing[0]]} has no counterpart in "
                f"{folder[role]}/{more}; every pair needs files of the same name in "
                f"{', '.join(folder[r] + '/' for r in ROLES)}"
            )
    return [
        RawPair(split, stem, (by_role["A"][stem], by_role["B"][stem], by_role["label"][stem]))
        for stem in sorted(stems, key=natural)
    ]
