"""LEVIR-CD (Chen & Shi, "A Spatial-Temporal Attention-Based Method and a New Dataset for Remote
Sensing Image Change Detection", Remote Sensing 12(10):1662, 2020).

Archives: `train.zip`, `val.zip`, `test.zip`, with the md5s pinned by torchgeo
(`torchgeo/datasets/levircd.py`, class `LEVIRCD`), fetched from the Hugging Face mirror torchgeo
uses (pinned to a commit, so the files cannot change) and then from the Google Drive ids of the
same zips behind the official page. Their published sizes in bytes bound each download, so one
that passes them is stopped (a wrong size fails only the download, never silently passes it).
torchgeo lists one URL per split and checks the md5 only when asked; here every archive has an
ordered list of sources and its md5 is always checked.

Each zip holds either `A/ B/ label/` at the top (file names carry the split, `train_1.png`; what
torchgeo reads) or `{split}/{A,B,label}/` (STANet, open-cd, CDLab). 445 / 64 / 128 images of
1024 x 1024, each cut into 16 non-overlapping 256 x 256 tiles -> 7120 / 1024 / 2048, named as
the LEVIR-CD-256 copy of BIT_CD / ChangeFormer (`benchmark.data.images.tile_name`). The whole
images are kept as well: whole-image evaluation differs from tile evaluation (open-cd issue
#148).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from benchmark.data.datasets.base import (
    ROLES,
    Dataset,
    Member,
    RawPair,
    found_summary,
    image_names,
    pairs_from_roles,
)
from benchmark.data.sources import Archive, ManualPage, google_drive_url
from benchmark.errors import DataError

NAME = "levir-cd"
TILE = 256
SIDE = 1024
IMAGES = {"train": 445, "val": 64, "test": 128}
"""Whole images per split in the official archives."""
FLAT = "levir-cd: A/ B/ label/ at the top of each split archive"
NESTED = "levir-cd: {split}/{A,B,label}/ in each split archive"

MIRROR = (
    "https://huggingface.co/datasets/satellite-image-deep-learning/LEVIR-CD/resolve/"
    "6a6bb0a5b389403d81c05e33bf08bc0b9e5f13a6"
)
"""The Hugging Face mirror used by torchgeo, pinned to a commit so the files cannot change."""

ARCHIVES = (
    Archive(
        filename="train.zip",
        md5="a638e71f480628652dea78d8544307e4",
        size=1_721_956_862,
        urls=(f"{MIRROR}/train.zip", google_drive_url("18GuoCuBn48oZKAlEo-LrNwABrFhVALU-")),
    ),
    Archive(
        filename="val.zip",
        md5="f7b857978524f9aa8c3bf7f94e3047a4",
        size=246_152_048,
        urls=(f"{MIRROR}/val.zip", google_drive_url("1BqSt4ueO7XAyQ_84mUjswUSJt13ZBuzG")),
    ),
    Archive(
        filename="test.zip",
        md5="07d5dd89e46f5c1359e2eca746989ed9",
        size=496_305_323,
        urls=(f"{MIRROR}/test.zip", google_drive_url("1jj3qJD_grJlgIhUWO09zibRGJe0R4Tn0")),
    ),
)

MANUAL_PAGES = (
    ManualPage(
        "official page",
        "https://justchenhao.github.io/LEVIR/",
        "Google Drive folder 1dLuzldMRmbBNKPpUkX8Z53hi6NHLrWim",
    ),
    ManualPage("Baidu Netdisk", "https://pan.baidu.com/s/1fzNiOE7elGRmIo2h6MIhZw", "code l7iv"),
    ManualPage(
        "Hugging Face mirror (same md5s)",
        "https://huggingface.co/datasets/satellite-image-deep-learning/LEVIR-CD",
    ),
)


def detect_layout(
    archive: Path, split: str, members: Sequence[Member]
) -> tuple[str, list[RawPair]]:
    """Detect which of the two known layouts one LEVIR-CD split archive has.

    Returns:
        The layout description and the archive's pairs.

    Raises:
        DataError: an unknown layout (listing what was found and what was expected), or an
            incomplete pair.
    """
    names = image_names(members)
    patterns = {
        # [0-9], not \d: \d matches any Unicode digit (train_\u0661 would be an extra pair)
        FLAT: re.compile(rf"^(A|B|label)/({split}_[0-9]+)\.png$"),
        NESTED: re.compile(rf"^{split}/(A|B|label)/({split}_[0-9]+)\.png$"),
    }
    for layout_name, pattern in patterns.items():
        matches = [pattern.match(n) for n in names]
        if names and all(matches):
            by_role: dict[str, dict[str, str]] = {role: {} for role in ROLES}
            for match in matches:
                assert match is not None
                by_role[match.group(1)][match.group(2)] = match.group(0)
            prefix = "" if layout_name == FLAT else f"{split}/"
            folder = {role: prefix + role for role in ROLES}
            return layout_name, pairs_from_roles(archive, split, by_role, folder)
    # the images that fit neither layout (of the layout most of them fit), named in the error
    best = max(patterns.values(), key=lambda pattern: sum(bool(pattern.match(n)) for n in names))
    odd = [n for n in names if not best.match(n)]
    unfit = (
        f" ({odd[0]}" + (f" and {len(odd) - 1} more" if len(odd) > 1 else "") + " do not fit)"
        if 0 < len(odd) < len(names)
        else ""
    )
    raise DataError(
        f"{archive}: unknown layout; found {found_summary(names)}{unfit}; expected PNG files "
        f"A/{split}_N.png, B/{split}_N.png, label/{split}_N.png (N in ASCII digits 0-9), "
        f"either at the top of the archive or under {split}/ (e.g. {split}/A/{split}_1.png)"
    )


LEVIR_CD = Dataset(
    name=NAME,
    title="LEVIR-CD",
    stage=f"prepare@{NAME}",
    archives=ARCHIVES,
    manual_pages=MANUAL_PAGES,
    split_archives={split: f"{split}.zip" for split in IMAGES},
    official_pairs=IMAGES,
    unit="images",
    find_pairs=detect_layout,
    tile=TILE,
    side=SIDE,
)
