"""The prepared-layout helpers every dataset writes through (benchmark/data/layout.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data import layout
from benchmark.errors import DataError

DEAD_PID = 2**22 + 1  # above Linux's largest pid_max: no such process


def _write_split(root: Path, split: str, seed: int, count: int = 2) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        a, b = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
        layout.write_pair(root / split, f"p{i}", a, b, rng.random((8, 8)) < 0.25)


def test_staging_replaces_the_output_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    with layout.staging_dir(out) as stage:
        _write_split(stage, "train", seed=0)
    first = layout.summarise_split(out / "train")
    with pytest.raises(RuntimeError), layout.staging_dir(out) as stage:
        _write_split(stage, "train", seed=1)
        raise RuntimeError("interrupted")
    assert layout.summarise_split(out / "train") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_staging_cleans_what_a_killed_run_left(tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    stale = tmp_path / f".synthetic.partial-{DEAD_PID}"
    (stale / "train").mkdir(parents=True)
    other = tmp_path / f".levir-cd.partial-{DEAD_PID}"  # another output's: not ours to touch
    other.mkdir()
    with layout.staging_dir(out) as stage:
        _write_split(stage, "val", seed=0)
    assert not stale.exists() and other.exists()


def test_summary_counts_changes_and_duplicates(tmp_path: Path) -> None:
    _write_split(tmp_path, "train", seed=0)
    _write_split(tmp_path, "test", seed=0, count=1)  # p0 of test == p0 of train
    splits = {s: layout.summarise_split(tmp_path / s) for s in ("train", "test")}
    assert splits["train"]["pairs"] == 2 and len(splits["train"]["files"]) == 6
    labels = [np.asarray(Image.open(tmp_path / "train/label" / f"p{i}.png")) for i in (0, 1)]
    expected = sum(int((lab == 255).sum()) for lab in labels) / (2 * 64)
    assert splits["train"]["changed_fraction"] == pytest.approx(expected)
    assert layout.count_cross_split_duplicates(splits) == 2  # the pair, counted in both splits


def test_missing_counterpart_and_bad_manifest_name_the_file(tmp_path: Path) -> None:
    _write_split(tmp_path, "train", seed=0)
    (tmp_path / "train/B/p1.png").unlink()
    with pytest.raises(DataError, match=r"missing counterpart\(s\) B/p1.png"):
        layout.list_pairs(tmp_path / "train")
    with pytest.raises(DataError, match=r"manifest\.json: not found"):
        layout.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json: not valid JSON"):
        layout.read_manifest(tmp_path)


# --- file-name numbers are ASCII digits only ---------------------------------------------------


def test_a_scratch_folder_with_unicode_digits_is_not_a_scratch_folder(tmp_path: Path) -> None:
    """Its number is no process id of ours: the folder is left alone, not deleted."""
    arabic = str(DEAD_PID).translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    foreign = tmp_path / f".synthetic.partial-{arabic}"
    foreign.mkdir()
    assert layout.remove_stale_scratch(tmp_path / "synthetic") == []
    assert foreign.exists()
