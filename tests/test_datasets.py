"""The dataset modules and their registry (benchmark/data/datasets/): each dataset's archives,
official split sizes and layout detection, and the one registry every command reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.data.datasets import DATASETS, REAL_DATASETS, cdd, levircd
from benchmark.data.extract import Member
from benchmark.data.sources import Archive
from benchmark.errors import DataError

# --------------------------------------------------------------------------- the registry


def test_registry_names_every_dataset_in_table_order() -> None:
    assert list(DATASETS) == ["cdd", "levir-cd", "synthetic"]
    assert all(name == dataset.name for name, dataset in DATASETS.items())
    assert REAL_DATASETS == ("cdd", "levir-cd")
    assert {name: d.stage for name, d in DATASETS.items()} == {
        "cdd": "prepare@cdd",
        "levir-cd": "prepare@levir-cd",
        "synthetic": "synth",
    }


def test_only_levir_cd_keeps_whole_images() -> None:
    assert {name: d.has_whole for name, d in DATASETS.items()} == {
        "cdd": False,
        "levir-cd": True,
        "synthetic": False,
    }


def test_split_sizes_of_the_official_archives() -> None:
    """LEVIR-CD: 445 / 64 / 128 images of 1024, 16 tiles of 256 each; CDD: 2998 val pairs."""
    levir, cdd_ = DATASETS["levir-cd"], DATASETS["cdd"]
    assert dict(levir.official_pairs) == {"train": 445, "val": 64, "test": 128}
    assert [levir.tile_pairs(s) for s in ("train", "val", "test")] == [7120, 1024, 2048]
    assert dict(cdd_.official_pairs) == {"train": 10000, "val": 2998, "test": 3000}
    assert [cdd_.tile_pairs(s) for s in ("train", "val", "test")] == [10000, 2998, 3000]
    assert (levir.unit, cdd_.unit) == ("images", "pairs")


def test_every_split_has_an_archive_that_the_dataset_downloads() -> None:
    for name in REAL_DATASETS:
        dataset = DATASETS[name]
        assert set(dataset.split_archives) == {"train", "val", "test"}
        downloaded = {archive.filename for archive in dataset.archives}
        assert set(dataset.split_archives.values()) == downloaded
        assert dataset.find_pairs is not None and dataset.manual_pages


def test_registry_imports_nothing_heavy_and_not_the_config() -> None:
    """`benchmark.config` reads the names, so the registry must not import it back (a cycle)
    nor numpy or an archive reader (`cdbench --help` stays fast)."""
    code = (
        "import json, sys; import benchmark.data.datasets; print(json.dumps(sorted(sys.modules)))"
    )
    root = Path(__file__).resolve().parent.parent
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], cwd=root, check=True, capture_output=True, text=True
        ).stdout
    )
    for module in ("benchmark.config", "numpy", "PIL", "rarfile", "benchmark.data.extract"):
        assert module not in loaded


# --------------------------------------------------------------------------- archives


def test_sources_match_the_reference() -> None:
    levir = DATASETS["levir-cd"].archives
    assert [a.filename for a in levir] == ["train.zip", "val.zip", "test.zip"]
    assert [a.md5 for a in levir] == [
        "a638e71f480628652dea78d8544307e4",
        "f7b857978524f9aa8c3bf7f94e3047a4",
        "07d5dd89e46f5c1359e2eca746989ed9",
    ]
    for archive, drive_id in zip(
        levir,
        [
            "18GuoCuBn48oZKAlEo-LrNwABrFhVALU-",
            "1BqSt4ueO7XAyQ_84mUjswUSJt13ZBuzG",
            "1jj3qJD_grJlgIhUWO09zibRGJe0R4Tn0",
        ],
        strict=True,
    ):
        assert archive.urls[0] == f"{levircd.MIRROR}/{archive.filename}"
        assert "/resolve/6a6bb0a5b389403d81c05e33bf08bc0b9e5f13a6/" in archive.urls[0]
        assert archive.urls[1] == (
            f"https://drive.usercontent.google.com/download?id={drive_id}&export=download"
        )
    (cdd_archive,) = DATASETS["cdd"].archives
    assert cdd_archive == Archive(
        "ChangeDetectionDataset.rar",
        None,
        (
            "https://drive.usercontent.google.com/download"
            "?id=1GX656JqqOyBi_Ef0w65kDGVto-nHrNs9&export=download",
        ),
    )


def test_levir_archives_carry_their_known_sizes() -> None:
    """The sizes that bound each LEVIR-CD download; CDD's size is not known."""
    assert {a.filename: a.size for a in DATASETS["levir-cd"].archives} == {
        "train.zip": 1_721_956_862,
        "val.zip": 246_152_048,
        "test.zip": 496_305_323,
    }
    assert [a.size for a in DATASETS["cdd"].archives] == [None]


# --------------------------------------------------------------------------- layout detection


def _members(*names: str) -> list[Member]:
    return [Member(name, False, 10) for name in names]


def test_levir_find_pairs_reads_both_layouts_of_a_split_archive() -> None:
    parts = ("A", "B", "label")
    flat = _members(*(f"{p}/val_{i}.png" for i in (2, 10, 1) for p in parts), "Thumbs.db")
    nested = _members(*(f"val/{p}/val_{i}.png" for i in (2, 10, 1) for p in parts))
    find_pairs = DATASETS["levir-cd"].find_pairs
    assert find_pairs is not None
    for members, expected_layout, prefix in (
        (flat, levircd.FLAT, ""),
        (nested, levircd.NESTED, "val/"),
    ):
        layout, pairs = find_pairs(Path("val.zip"), "val", members)
        assert layout == expected_layout
        assert [p.stem for p in pairs] == ["val_1", "val_2", "val_10"]  # natural order
        assert pairs[0].members == tuple(f"{prefix}{p}/val_1.png" for p in parts)
        assert {p.split for p in pairs} == {"val"}


def test_cdd_find_pairs_reads_every_split_of_the_one_archive() -> None:
    names = [
        f"{cdd.ROOT}/{split}/{part}/0000{i}.jpg"
        for split in ("train", "val", "test")
        for i in (0, 1)
        for part in ("A", "B", "OUT")
    ]
    decoy = [f"ChangeDetectionDataset/Model/with_shift/train/A/{i}.jpg" for i in range(3)]
    find_pairs = DATASETS["cdd"].find_pairs
    assert find_pairs is not None
    layout, pairs = find_pairs(Path("cdd.rar"), "", _members(*names, *decoy))
    assert layout == cdd.LAYOUT
    assert [(p.split, p.stem) for p in pairs] == [
        (s, f"0000{i}") for s in ("train", "val", "test") for i in (0, 1)
    ]
    assert pairs[0].members[2] == f"{cdd.ROOT}/train/OUT/00000.jpg"  # OUT is the label


# --------------------------------------------------------------------------- ASCII digits only

ARABIC_ONE = "\u0661"  # ARABIC-INDIC DIGIT ONE: `\d` matches it and int() reads it as 1


def test_a_levir_name_with_a_unicode_digit_is_no_pair() -> None:
    """`train_\u0661` (`\\d` matches it) is no extra pair beside train_1."""
    stems = ("train_1", f"train_{ARABIC_ONE}")
    members = _members(*(f"{part}/{stem}.png" for stem in stems for part in ("A", "B", "label")))
    try:
        _, pairs = levircd.detect_layout(Path("train.zip"), "train", members)
    except DataError as exc:  # refused as an unknown layout, naming the file
        assert f"train_{ARABIC_ONE}" in str(exc)
    else:  # or skipped as an entry the layout does not need
        assert [pair.stem for pair in pairs] == ["train_1"]


def test_a_cdd_name_with_a_unicode_digit_is_refused() -> None:
    names = [
        f"{cdd.ROOT}/train/{part}/{n}.jpg" for n in ("1", ARABIC_ONE) for part in ["A", "B", "OUT"]
    ]
    with pytest.raises(DataError, match=f"{ARABIC_ONE}.jpg"):
        cdd.detect_layout(Path("cdd.rar"), _members(*names))
