"""CDD, the Change Detection Dataset (Lebedev et al., "Change Detection in Remote Sensing Images
Using Conditional Adversarial Networks", ISPRS Archives XLII-2, 2018).

Archive: `ChangeDetectionDataset.rar`, from the Google Drive file id cited by the CDLab, open-cd
and SNUNet READMEs. No checksum is published anywhere, so its md5 is None and
`cdbench download` records the md5 of the first verified copy in a sidecar file.

Only `ChangeDetectionDataset/Real/subset/{train,val,test}/{A,B,OUT}/NNNNN.jpg` is used (10000 /
2998 / 3000 pairs of 256 x 256), stored as PNG under the same names; `Model/` (the synthetic
part) is never extracted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from benchmark.data.datasets.base import (
    ROLES,
    SPLITS,
    Dataset,
    Member,
    RawPair,
    found_summary,
    image_names,
    pairs_from_roles,
)
from benchmark.data.sources import Archive, ManualPage, google_drive_url
from benchmark.errors import DataError

NAME = "cdd"
ARCHIVE = "ChangeDetectionDataset.rar"
ROOT = "ChangeDetectionDataset/Real/subset"
PAIRS = {"train": 10000, "val": 2998, "test": 3000}
"""The only split sizes accepted without --allow-partial: those of the real archive.

The rounded 10000 / 3000 / 3000 that papers quote is not accepted: no copy of the archive
(the Google Drive RAR, the Zenodo copy) has 3000 val pairs, so an archive that does is not the
official one (repacked, or with pairs added), and preparing it silently would benchmark other
data under CDD's name. `--allow-partial` still prepares it, and the manifest records the counts.
"""
LAYOUT = "cdd: ChangeDetectionDataset/Real/subset/{split}/{A,B,OUT}/NNNNN.jpg"

DRIVE_ID = "1GX656JqqOyBi_Ef0w65kDGVto-nHrNs9"

ARCHIVES = (Archive(filename=ARCHIVE, md5=None, urls=(google_drive_url(DRIVE_ID),)),)

MANUAL_PAGES = (
    ManualPage("Google Drive", f"https://drive.google.com/file/d/{DRIVE_ID}/view"),
    ManualPage("AI Studio mirror", "https://aistudio.baidu.com/datasetdetail/78676"),
)


def detect_layout(archive: Path, members: Sequence[Member]) -> list[RawPair]:
    """Find the pairs of CDD's real subset, ignoring `Model/` (the synthetic part).

    Raises:
        DataError: no real subset where it should be, an image inside it that does not fit the
            layout, or an incomplete pair.
    """
    names = image_names(members)
    pattern = re.compile(rf"^{ROOT}/(train|val|test)/(A|B|OUT)/([0-9]+)\.jpg$")
    inside = [n for n in names if n.startswith(ROOT + "/")]
    expected = f"expected {ROOT}/{{train,val,test}}/{{A,B,OUT}}/NNNNN.jpg"
    if not inside:
        raise DataError(f"{archive}: unknown layout; found {found_summary(names)}; {expected}")
    odd = [n for n in inside if not pattern.match(n)]
    if odd:
        raise DataError(
            f"{archive}: unknown layout; found {odd[0]}"
            + (f" (and {len(odd) - 1} more)" if len(odd) > 1 else "")
            + f"; {expected}"
        )
    by_split: dict[str, dict[str, dict[str, str]]] = {
        split: {role: {} for role in ROLES} for split in SPLITS
    }
    for name in inside:
        match = pattern.match(name)
        assert match is not None
        split, folder, stem = match.groups()
        by_split[split]["label" if folder == "OUT" else folder][stem] = name
    pairs = []
    for split in SPLITS:
        folder = {role: f"{ROOT}/{split}/{'OUT' if role == 'label' else role}" for role in ROLES}
        pairs += pairs_from_roles(archive, split, by_split[split], folder)
    return pairs


def find_pairs(archive: Path, split: str, members: Sequence[Member]) -> tuple[str, list[RawPair]]:
    """`detect_layout` as every dataset's `find_pairs`: the one archive holds every split."""
    return LAYOUT, detect_layout(archive, members)


CDD = Dataset(
    name=NAME,
    title="CDD",
    stage=f"prepare@{NAME}",
    archives=ARCHIVES,
    manual_pages=MANUAL_PAGES,
    split_archives=dict.fromkeys(SPLITS, ARCHIVE),
    official_pairs=PAIRS,
    unit="pairs",
    find_pairs=find_pairs,
    extract_prefix=ROOT,
)
