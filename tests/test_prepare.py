"""`prepare_dataset` on fixture archives in the real layouts: counts, names, labels, manifest,
and every bad input (with its message, and nothing left in the output folder)."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark import cli
from benchmark.data import layout
from benchmark.data.datasets import DATASETS, cdd, levircd
from benchmark.data.images import read_label, read_rgb
from benchmark.data.prepare import prepare_dataset
from benchmark.errors import DataError
from tests.conftest import write_repo_params
from tests.data.archives import (
    CDD_DECOY,
    CDD_FULL,
    CDD_ROOT,
    CDD_SMALL,
    LEVIR_SMALL,
    SPLITS,
    cdd_mask,
    cdd_members,
    change_pair,
    jpeg_bytes,
    levir_members,
    png_bytes,
    write_cdd_archive,
    write_zip,
)
from tests.data.processes import children, ended, wait_for

Edits = Mapping[str, bytes | None]
"""member name -> new bytes, or None to delete the member."""


def official_counts(monkeypatch: pytest.MonkeyPatch, name: str, counts: Mapping[str, int]) -> None:
    """Make `counts` the official split sizes of dataset `name` for one test."""
    shrunk = dataclasses.replace(DATASETS[name], official_pairs=dict(counts))
    monkeypatch.setitem(DATASETS, name, shrunk)


def levir_raw(
    raw: Path,
    *,
    counts: Mapping[str, int] = LEVIR_SMALL,
    size: int = 512,
    layout_name: str = "flat",
    edits: Mapping[str, Edits] | None = None,
) -> Path:
    """Write the three LEVIR-CD zips into `raw`, with per-split member edits."""
    for split in SPLITS:
        members = levir_members(split, counts[split], size=size, layout=layout_name)
        for name, data in (edits or {}).get(split, {}).items():
            if data is None:
                del members[name]
            else:
                members[name] = data
        write_zip(raw / f"{split}.zip", members)
    return raw


def cdd_raw(raw: Path, *, edits: Edits | None = None, decoy: bool = True) -> Path:
    members = cdd_members(CDD_SMALL, decoy=decoy)
    for name, data in (edits or {}).items():
        if data is None:
            del members[name]
        else:
            members[name] = data
    write_zip(raw / "ChangeDetectionDataset.rar", members)
    return raw


def read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def assert_nothing_left(out: Path) -> None:
    """No output, no staging folder, no extraction scratch beside it."""
    assert not out.exists()
    assert not out.parent.exists() or sorted(p.name for p in out.parent.iterdir()) == []


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    path = tmp_path / "raw"
    path.mkdir()
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "prepared" / "dataset"


# --------------------------------------------------------------------------- LEVIR-CD


def test_levir_counts_names_lists_and_whole_images(raw: Path, out: Path) -> None:
    levir_raw(raw)
    manifest = prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    # 512x512 images -> 4 tiles each: 3/2/2 images -> 12/8/8 tiles.
    assert {s: manifest["splits"][s]["pairs"] for s in SPLITS} == {"train": 12, "val": 8, "test": 8}
    assert {s: manifest["whole"][s]["pairs"] for s in SPLITS} == {"train": 3, "val": 2, "test": 2}
    assert manifest["counts"]["train"] == {
        "expected": 7120,
        "found": 12,
        "expected_images": 445,
        "found_images": 3,
    }
    assert manifest["counts"]["test"]["expected"] == 2048
    tiles = sorted(p.name for p in (out / "val" / "A").iterdir())
    assert tiles == [
        f"val_{i}_{row}_{col}.png"
        for i in (1, 2)
        for row in ("0000", "0256")
        for col in ("0000", "0256")
    ]
    assert (out / "list" / "val.txt").read_text().splitlines() == tiles
    assert sorted(p.name for p in (out / "whole" / "val" / "label").iterdir()) == [
        "val_1.png",
        "val_2.png",
    ]
    assert manifest["allow_partial"] is True
    assert manifest["tile_size"] == 256
    assert manifest["layout"] == dict.fromkeys(SPLITS, levircd.FLAT)


def test_levir_tiles_are_cut_at_pixel_offsets_row_then_column(raw: Path, out: Path) -> None:
    levir_raw(raw)
    prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    a, b, change = change_pair(0, "train", 2, 512)
    # Row (y) offset 256, column (x) offset 0: the lower-left quarter.
    assert np.array_equal(read(out / "train/A/train_2_0256_0000.png"), a[256:, :256])
    assert np.array_equal(read(out / "train/B/train_2_0256_0000.png"), b[256:, :256])
    label = read(out / "train/label/train_2_0256_0000.png")
    assert label.dtype == np.uint8 and label.ndim == 2
    assert np.array_equal(label, np.where(change[256:, :256], 255, 0))
    assert np.array_equal(read(out / "whole/train/A/train_2.png"), a)


def test_levir_both_layouts_and_worker_counts_give_identical_output(tmp_path: Path) -> None:
    flat_raw = levir_raw(tmp_path / "flat", layout_name="flat")
    nested_raw = levir_raw(tmp_path / "nested", layout_name="nested")
    flat = prepare_dataset("levir-cd", flat_raw, tmp_path / "o1", allow_partial=True, workers=1)
    nested = prepare_dataset("levir-cd", nested_raw, tmp_path / "o2", allow_partial=True, workers=2)
    assert nested["layout"] == dict.fromkeys(SPLITS, levircd.NESTED)
    assert flat["layout"] != nested["layout"]
    for split in SPLITS:
        assert nested["splits"][split]["files"] == flat["splits"][split]["files"]
        assert nested["whole"][split]["files"] == flat["whole"][split]["files"]


def test_levir_count_mismatch_is_an_error_without_allow_partial(raw: Path, out: Path) -> None:
    levir_raw(raw)
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, workers=1)
    message = str(info.value)
    assert "train 3 (expected 445), val 2 (expected 64), test 2 (expected 128) images" in message
    assert "--allow-partial" in message and "cdbench download levir-cd" in message
    assert_nothing_left(out)


def test_levir_published_counts_pass_without_allow_partial(
    raw: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the expected counts shrunk to 1/1/1 image, the strict path runs on 1024 images."""
    official_counts(monkeypatch, "levir-cd", dict.fromkeys(SPLITS, 1))
    levir_raw(raw, counts=dict.fromkeys(SPLITS, 1), size=1024)
    manifest = prepare_dataset("levir-cd", raw, out, workers=1)
    assert manifest["allow_partial"] is False
    for split in SPLITS:
        assert manifest["counts"][split] == {
            "expected": 16,
            "found": 16,
            "expected_images": 1,
            "found_images": 1,
        }
    names = (out / "list" / "test.txt").read_text().splitlines()
    assert names[0] == "test_1_0000_0000.png" and names[-1] == "test_1_0768_0768.png"
    assert len(names) == 16


def test_levir_image_not_1024_is_an_error_without_allow_partial(
    raw: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    official_counts(monkeypatch, "levir-cd", LEVIR_SMALL)
    levir_raw(raw)  # counts now match, but the images are 512x512
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, workers=1)
    message = str(info.value)
    assert ": A/" in message and "is 512x512; LEVIR-CD images are 1024x1024" in message
    assert_nothing_left(out)


def test_levir_image_not_a_multiple_of_256_is_an_error(raw: Path, out: Path) -> None:
    a, b, change = change_pair(0, "val", 1, 300)
    edits = {
        "A/val_1.png": png_bytes(a),
        "B/val_1.png": png_bytes(b),
        "label/val_1.png": png_bytes(np.where(change, 255, 0).astype(np.uint8)),
    }
    levir_raw(raw, edits={"val": edits})
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert str(info.value) == (
        f"{raw / 'val.zip'}: A/val_1.png: is 300x300, not a multiple of 256 on both sides; "
        "cannot cut it into 256x256 tiles"
    )
    assert_nothing_left(out)


def test_levir_label_threshold_is_128(raw: Path, out: Path) -> None:
    grey = np.full((512, 512), 127, np.uint8)
    grey[:, 256:] = 128
    levir_raw(raw, edits={"train": {"label/train_1.png": png_bytes(grey)}})
    prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    label = read(out / "whole/train/label/train_1.png")
    assert (label[:, :256] == 0).all() and (label[:, 256:] == 255).all()
    assert np.array_equal(read(out / "train/label/train_1_0000_0256.png"), np.full((256, 256), 255))


def test_levir_rgb_label_with_equal_channels_is_accepted(raw: Path, out: Path) -> None:
    change = change_pair(0, "test", 1, 512)[2]
    grey = np.where(change, 255, 0).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    # Channels off by a few levels (JPEG chroma noise) still agree about change.
    rgb[..., 1] = np.where(change, 250, 3)
    levir_raw(raw, edits={"test": {"label/test_1.png": png_bytes(rgb)}})
    prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert np.array_equal(read(out / "whole/test/label/test_1.png"), grey)


def test_levir_duplicate_across_splits_is_counted(raw: Path, out: Path) -> None:
    train = levir_members("train", 3)
    copied = {f"{part}/val_2.png": train[f"{part}/train_1.png"] for part in ("A", "B", "label")}
    levir_raw(raw, edits={"val": copied})
    manifest = prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    # train_1 and val_2 are the same 512 image: 2 whole pairs, 4 tiles on each side.
    assert manifest["whole_duplicates_across_splits"] == 2
    assert manifest["duplicates_across_splits"] == 8


def test_manifest_hashes_and_sources(raw: Path, out: Path) -> None:
    levir_raw(raw)
    manifest = prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert json.loads((out / layout.MANIFEST).read_text()) == manifest
    assert manifest["dataset"] == "levir-cd" and manifest["format_version"] == 1
    assert manifest["duplicates_across_splits"] == 0
    for split in SPLITS:
        archive = raw / f"{split}.zip"
        assert manifest["sources"][archive.name] == {
            "md5": hashlib.md5(archive.read_bytes()).hexdigest(),
            "bytes": archive.stat().st_size,
        }
        files = manifest["splits"][split]["files"]
        assert len(files) == 3 * manifest["splits"][split]["pairs"]
        for rel, digest in files.items():
            assert hashlib.sha256((out / split / rel).read_bytes()).hexdigest() == digest
    change = np.concatenate([change_pair(0, "val", i, 512)[2].ravel() for i in (1, 2)])
    assert manifest["splits"]["val"]["changed_fraction"] == pytest.approx(change.mean())


# --------------------------------------------------------------------------- LEVIR-CD, bad input


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        (
            {"train": {"A/train_2.png": png_bytes(change_pair(0, "train", 2, 512)[0])[:3000]}},
            "train.zip: A/train_2.png: cannot be decoded as an image",
        ),
        (
            {"val": {"B/val_1.png": b"not an image at all"}},
            "val.zip: B/val_1.png: cannot be decoded as an image",
        ),
        (
            {"test": {"B/test_2.png": png_bytes(np.zeros((512, 256, 3), np.uint8))}},
            "test.zip: B/test_2.png: is 256x512 but the pair's A image is 512x512; "
            "A, B and label of a pair must have the same size",
        ),
        (
            {"train": {"label/train_3.png": png_bytes(np.zeros((256, 256), np.uint8))}},
            "train.zip: label/train_3.png: is 256x256 but the pair's A image is 512x512",
        ),
        (
            {"train": {"label/train_2.png": None}},
            "train.zip: A/train_2.png has no counterpart in label/; every pair needs files of "
            "the same name in A/, B/, label/",
        ),
        (
            {"val": {"A/val_1.png": None, "B/val_1.png": None}},
            "val.zip: label/val_1.png has no counterpart in A/",
        ),
    ],
    ids=["truncated-png", "not-an-image", "a-b-size", "label-size", "no-label", "no-a"],
)
def test_levir_bad_images(raw: Path, out: Path, edits: Mapping[str, Edits], expected: str) -> None:
    levir_raw(raw, edits=edits)
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert expected in str(info.value)
    assert_nothing_left(out)


def test_levir_label_with_differing_channels(raw: Path, out: Path) -> None:
    change = change_pair(0, "train", 1, 512)[2]
    red = np.zeros((512, 512, 3), np.uint8)
    red[..., 0] = np.where(change, 255, 0)
    levir_raw(raw, edits={"train": {"label/train_1.png": png_bytes(red)}})
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    row, col = np.argwhere(change)[0]
    assert str(info.value) == (
        f"{raw / 'train.zip'}: label/train_1.png: label has 3 channels with differing values at "
        f"{int(change.sum())} pixel(s) (e.g. row {row}, column {col}: (255, 0, 0)); expected a "
        f"single-channel label, or channels that are equal"
    )
    assert_nothing_left(out)


def test_levir_label_encoded_0_1_is_refused(raw: Path, out: Path) -> None:
    """A 0/1 copy of LEVIR-CD would binarise at 128 to no change anywhere: refused."""
    change = change_pair(0, "val", 2, 512)[2]
    levir_raw(raw, edits={"val": {"label/val_2.png": png_bytes(change.astype(np.uint8))}})
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert str(info.value) == (
        f"{raw / 'val.zip'}: label/val_2.png: label values are 0 and 1; expected 0 (no change) "
        f"and 255 (change), a value >= 128 being change, so every pixel would count as "
        f"unchanged: this is not the dataset's official archive; delete it and re-run "
        f"`cdbench download levir-cd`"
    )
    assert_nothing_left(out)


def test_jpeg_label_with_values_0_and_1_is_no_change(tmp_path: Path) -> None:
    """JPEG noise may leave 1s in a no-change label: that is not a 0/1 encoding."""
    grey = np.zeros((32, 32), np.uint8)
    grey[::3, ::5] = 1
    path = tmp_path / "00000.jpg"
    path.write_bytes(jpeg_bytes(grey, quality=100))
    assert read(path).max() == 1
    label = read_label(path, "cdd: OUT/00000.jpg", "fix")
    assert label.shape == (32, 32) and not label.any()


def test_levir_bad_image_in_a_worker_process(raw: Path, out: Path) -> None:
    levir_raw(raw, edits={"test": {"A/test_2.png": b"\x89PNG\r\n\x1a\n broken"}})
    with pytest.raises(DataError, match=r"test\.zip: A/test_2\.png: cannot be decoded"):
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=2)
    assert_nothing_left(out)


def test_levir_truncated_archive(raw: Path, out: Path) -> None:
    levir_raw(raw)
    data = (raw / "val.zip").read_bytes()
    (raw / "val.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert str(info.value) == (
        f"{raw / 'val.zip'}: not a readable zip archive (File is not a zip file); it is "
        f"probably truncated or corrupt: delete it and re-run `cdbench download levir-cd`"
    )
    assert_nothing_left(out)


def test_levir_missing_archive(raw: Path, out: Path) -> None:
    levir_raw(raw)
    (raw / "test.zip").unlink()
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert str(info.value).startswith(
        f"{raw / 'test.zip'}: not found; run `cdbench download levir-cd`"
    )


def test_levir_unknown_layout(raw: Path, out: Path) -> None:
    levir_raw(raw)
    members = {
        "LEVIR-CD/train/image1/train_1.png": b"x",
        "LEVIR-CD/train/image2/train_1.png": b"y",
    }
    write_zip(raw / "train.zip", members)
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    message = str(info.value)
    assert message.startswith(
        f"{raw / 'train.zip'}: unknown layout; found LEVIR-CD/train/ "
        "(e.g. LEVIR-CD/train/image1/train_1.png); "
    )
    assert "expected PNG files A/train_N.png, B/train_N.png, label/train_N.png" in message
    assert "under train/ (e.g. train/A/train_1.png)" in message
    assert_nothing_left(out)


def test_levir_macos_metadata_is_ignored(raw: Path, out: Path) -> None:
    junk = {"__MACOSX/A/._train_1.png": b"\x00\x05\x16\x07", "A/._train_2.png": b"\x00\x05"}
    levir_raw(raw, edits={"train": junk})
    manifest = prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert manifest["whole"]["train"]["pairs"] == 3


def test_levir_wrong_split_in_archive_is_an_unknown_layout(raw: Path, out: Path) -> None:
    levir_raw(raw)
    write_zip(raw / "val.zip", levir_members("train", 2))
    with pytest.raises(
        DataError, match=r"val\.zip: unknown layout; found A/, B/, label/ \(e\.g\. A/train_1\.png\)"
    ):
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)


def test_levir_traversal_entry_is_refused(raw: Path, out: Path) -> None:
    levir_raw(raw)
    with zipfile.ZipFile(raw / "train.zip", "a") as zf:
        zf.writestr("../../escaped.png", b"evil")
    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert str(info.value) == (
        f"{raw / 'train.zip'}: entry '../../escaped.png' contains a '..' component; refusing "
        f"to extract an archive that could write outside its target folder"
    )
    assert_nothing_left(out)
    assert not (out.parent.parent / "escaped.png").exists()


def test_failed_prepare_keeps_the_previous_dataset(raw: Path, out: Path) -> None:
    levir_raw(raw)
    before = prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    levir_raw(raw, edits={"train": {"label/train_1.png": b"broken"}})
    with pytest.raises(DataError):
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert layout.read_manifest(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _scratch_beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_interrupted_prepare_keeps_the_previous_dataset_and_leaves_no_process(
    raw: Path, out: Path, tmp_path: Path, how: str
) -> None:
    """`cdbench prepare` stopped mid-way (workers=2): the previous dataset stays as it was.

    Ctrl-C (SIGINT to the whole process group) cleans up at once. SIGKILL of the main process
    alone leaves its scratch folders, which the next run deletes, and its pool workers, which
    must end by themselves.
    """
    levir_raw(raw)
    prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    before = _snapshot(out)
    big = levir_raw(tmp_path / "big", counts={"train": 24, "val": 1, "test": 1}, size=1024)
    log = tmp_path / "stderr.txt"
    params = write_repo_params(tmp_path / "params.yaml")
    command = [sys.executable, "-m", "benchmark", "--params", str(params)]
    command += ["prepare", "levir-cd", "--raw", str(big), "--out", str(out), "--allow-partial"]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command,
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, as a shell gives a command
            # A shell without job control starts background commands with SIGINT ignored, and
            # Python then never raises KeyboardInterrupt: give the command Ctrl-C back, as an
            # interactive shell would (else this test fails when the suite runs in `cmd &`).
            preexec_fn=_default_sigint,
        )
    try:
        wait_for(
            lambda: (
                process.poll() is not None
                or any(out.parent.glob(f".{out.name}.partial-*/train/A/*.png"))
            ),
            "the first tile in the staging folder",
        )
        assert process.poll() is None, log.read_text()
        workers = children(process.pid)  # taken before the kill: orphans get another parent
        assert len(workers) == 2
        if how == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            os.kill(process.pid, signal.SIGKILL)
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
    try:
        wait_for(lambda: all(ended(pid) for pid in workers), f"workers {workers} to end")
    finally:
        for pid in workers:
            if not ended(pid):
                os.kill(pid, signal.SIGKILL)  # a failed test leaves no process behind
    assert returncode != 0, "the prepare finished before the signal arrived"
    assert _snapshot(out) == before
    if how == "ctrl-c":
        assert returncode == 130
        assert log.read_text().endswith("cdbench prepare: interrupted\n")
        assert _scratch_beside(out) == []
    else:
        assert returncode == -signal.SIGKILL
        left = _scratch_beside(out)
        assert f".{out.name}.partial-{process.pid}" in left
        assert any(name.startswith(f".{out.name}.raw-{process.pid}-") for name in left)
        # The next run deletes what the killed one left, and its result replaces the old one.
        manifest = prepare_dataset("levir-cd", big, out, allow_partial=True, workers=1)
        assert _scratch_beside(out) == []
        assert manifest["splits"]["train"]["pairs"] == 24 * 16


def test_scratch_of_a_live_process_is_left_alone(raw: Path, out: Path) -> None:
    """Another run writing beside the same output at the same time keeps its folders."""
    levir_raw(raw)
    out.parent.mkdir(parents=True)
    live = out.parent / f".{out.name}.partial-{os.getppid()}"  # pytest's parent: alive
    other_output = out.parent / f".other.partial-{2**22 + 1}"  # no such process
    for folder in (live, other_output):
        folder.mkdir()
    prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert _scratch_beside(out) == sorted([live.name, other_output.name])


def test_previous_dataset_left_between_the_two_renames_is_restored(raw: Path, out: Path) -> None:
    """Killed after `out` became `.old-<pid>` but before the new one took its place."""
    levir_raw(raw)
    before = prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    dead_pid = 2**22 + 1  # above Linux's largest pid_max: no such process
    out.rename(out.parent / f".{out.name}.old-{dead_pid}")
    (out.parent / f".{out.name}.partial-{dead_pid}").mkdir()  # the new one, complete or not

    assert layout.remove_stale_scratch(out) == [out.parent / f".{out.name}.partial-{dead_pid}"]
    assert layout.read_manifest(out) == before
    assert _scratch_beside(out) == []


def _snapshot(path: Path) -> dict[Path, bytes]:
    """Every file at or under `path`, with its bytes."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return {p: p.read_bytes() for p in files}


@pytest.mark.parametrize("occupant", ["parent-of-datasets", "other-dataset", "file"])
def test_output_that_is_not_this_dataset_is_refused_and_kept(
    raw: Path, tmp_path: Path, occupant: str
) -> None:
    """`--out data/prepared` (not `data/prepared/levir-cd`) must not replace that folder."""
    levir_raw(raw)
    out = tmp_path / "prepared"
    if occupant == "file":
        out.write_text("notes")
        what = "is a file"
    else:
        out.mkdir()
        if occupant == "parent-of-datasets":
            (out / "synthetic").mkdir()
            (out / "synthetic" / "manifest.json").write_text('{"dataset": "synthetic"}')
            what = "is a folder with no readable manifest.json, so not a prepared dataset"
        else:
            (out / "manifest.json").write_text('{"dataset": "cdd"}')
            what = "holds the prepared 'cdd' dataset"
    before = _snapshot(out)

    with pytest.raises(DataError) as info:
        prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)

    assert str(info.value) == (
        f"{out}: {what}; `cdbench prepare levir-cd` replaces its output folder as a whole, so "
        f"it will not write there: pass --out a new or empty folder, or delete {out} yourself"
    )
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "raw"]


def test_empty_output_folder_is_used(raw: Path, out: Path) -> None:
    levir_raw(raw)
    out.mkdir(parents=True)
    manifest = prepare_dataset("levir-cd", raw, out, allow_partial=True, workers=1)
    assert layout.read_manifest(out) == manifest


@pytest.mark.parametrize("reader", [read_rgb, read_label])
def test_undecodable_image_is_closed(tmp_path: Path, reader: Callable[..., np.ndarray]) -> None:
    """An image whose header reads but whose pixels do not leaves no open file behind."""
    path = tmp_path / "train_1.png"
    path.write_bytes(png_bytes(np.full((64, 64, 3), 7, np.uint8))[:-40])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=r"^train\.zip: A/train_1\.png: cannot be decoded"):
            reader(path, "train.zip: A/train_1.png", "fix")
        gc.collect()
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []


# --------------------------------------------------------------------------- CDD


def test_cdd_real_subset_only_and_binarised_jpeg_labels(raw: Path, out: Path) -> None:
    write_cdd_archive(raw)
    manifest = prepare_dataset("cdd", raw, out, allow_partial=True, workers=1)
    # The Model/ decoy has 2 more pairs per split: a recursive glob would count 6/4/4.
    assert {s: manifest["splits"][s]["pairs"] for s in SPLITS} == dict(CDD_SMALL)
    assert manifest["counts"]["val"] == {"expected": 2998, "found": 2}
    assert sorted(p.name for p in (out / "train" / "A").iterdir()) == [
        f"{i:05d}.png" for i in range(4)
    ]
    assert manifest["layout"] == cdd.LAYOUT
    assert list(manifest["sources"]) == ["ChangeDetectionDataset.rar"]
    for split in SPLITS:
        for index in range(CDD_SMALL[split]):
            label = read(out / split / "label" / f"{index:05d}.png")
            assert label.ndim == 2
            assert np.array_equal(label, np.where(cdd_mask(split, index), 255, 0))
    # Same name in Real/ and Model/: the Real one is used.
    members = cdd_members(CDD_SMALL)
    with Image.open(io.BytesIO(members[f"{CDD_ROOT}/train/A/00000.jpg"])) as real:
        assert np.array_equal(read(out / "train/A/00000.png"), np.asarray(real))
    with Image.open(io.BytesIO(members[f"{CDD_DECOY}/train/A/00000.jpg"])) as decoy:
        assert not np.array_equal(read(out / "train/A/00000.png"), np.asarray(decoy))


def test_cdd_count_mismatch(raw: Path, out: Path) -> None:
    write_cdd_archive(raw)
    with pytest.raises(DataError) as info:
        prepare_dataset("cdd", raw, out, workers=1)
    message = str(info.value)
    assert (
        "train 4 (expected 10000), val 2 (expected 2998), test 2 (expected 3000) pairs" in message
    )
    assert "--allow-partial" in message and "cdbench download cdd" in message
    assert_nothing_left(out)


def test_cdd_duplicate_across_splits_is_counted(raw: Path, out: Path) -> None:
    members = cdd_members(CDD_SMALL)
    edits = {
        f"{CDD_ROOT}/val/{part}/00001.jpg": members[f"{CDD_ROOT}/train/{part}/00000.jpg"]
        for part in ("A", "B", "OUT")
    }
    cdd_raw(raw, edits=edits)
    manifest = prepare_dataset("cdd", raw, out, allow_partial=True, workers=2)
    assert manifest["duplicates_across_splits"] == 2  # train/00000 and val/00001


def test_cdd_without_real_subset_is_an_unknown_layout(raw: Path, out: Path) -> None:
    members = {k: v for k, v in cdd_members(CDD_SMALL).items() if k.startswith(CDD_DECOY)}
    write_zip(raw / "ChangeDetectionDataset.rar", members)
    with pytest.raises(DataError) as info:
        prepare_dataset("cdd", raw, out, allow_partial=True, workers=1)
    assert str(info.value) == (
        f"{raw / 'ChangeDetectionDataset.rar'}: unknown layout; found ChangeDetectionDataset/"
        f"Model/ (e.g. {CDD_DECOY}/test/A/00000.jpg); expected "
        f"ChangeDetectionDataset/Real/subset/{{train,val,test}}/{{A,B,OUT}}/"
        f"NNNNN.jpg"
    )
    assert_nothing_left(out)


def test_cdd_image_in_an_unexpected_folder(raw: Path, out: Path) -> None:
    cdd_raw(raw, edits={f"{CDD_ROOT}/train/label/00000.jpg": b"x"})
    with pytest.raises(DataError, match=r"unknown layout; found .*/train/label/00000\.jpg;"):
        prepare_dataset("cdd", raw, out, allow_partial=True, workers=1)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            (f"{CDD_ROOT}/test/B/00001.jpg", jpeg_bytes(np.zeros((256, 256, 3), np.uint8))[:400]),
            f"ChangeDetectionDataset.rar: {CDD_ROOT}/test/B/00001.jpg: cannot be decoded as an "
            f"image",
        ),
        (
            (f"{CDD_ROOT}/val/OUT/00000.jpg", jpeg_bytes(np.zeros((128, 256), np.uint8))),
            f"ChangeDetectionDataset.rar: {CDD_ROOT}/val/OUT/00000.jpg: is 256x128 but the "
            f"pair's A image is 256x256",
        ),
        (
            (f"{CDD_ROOT}/train/OUT/00003.jpg", None),
            f"ChangeDetectionDataset.rar: {CDD_ROOT}/train/A/00003.jpg has no counterpart in "
            f"{CDD_ROOT}/train/OUT/",
        ),
    ],
    ids=["truncated-jpeg", "label-size", "no-label"],
)
def test_cdd_bad_input(raw: Path, out: Path, edit: tuple[str, bytes | None], expected: str) -> None:
    cdd_raw(raw, edits=dict([edit]))
    with pytest.raises(DataError) as info:
        prepare_dataset("cdd", raw, out, allow_partial=True, workers=1)
    assert expected in str(info.value)
    assert_nothing_left(out)


def test_cdd_symlink_entry_is_refused(raw: Path, out: Path) -> None:
    write_zip(
        raw / "ChangeDetectionDataset.rar",
        cdd_members(CDD_SMALL, decoy=False),
        links={f"{CDD_ROOT}/train/A/00099.jpg": "/etc/passwd"},
    )
    with pytest.raises(DataError) as info:
        prepare_dataset("cdd", raw, out, allow_partial=True, workers=1)
    assert str(info.value) == (
        f"{raw / 'ChangeDetectionDataset.rar'}: entry '{CDD_ROOT}/train/A/00099.jpg' is a "
        f"symbolic link; links and special files are refused (a dataset archive holds only "
        f"folders and regular files)"
    )
    assert_nothing_left(out)


def test_cdd_truncated_archive(raw: Path, out: Path) -> None:
    archive = write_cdd_archive(raw)
    archive.write_bytes(archive.read_bytes()[:-5000])
    with pytest.raises(DataError) as info:
        prepare_dataset("cdd", raw, out, allow_partial=True, workers=1)
    assert str(info.value).endswith(
        "truncated or corrupt: delete it and ChangeDetectionDataset.rar.md5 (the md5 recorded "
        "from it), then re-run `cdbench download cdd`"
    )
    assert_nothing_left(out)


def test_cdd_published_counts_without_allow_partial(
    raw: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the expected counts shrunk to the fixture's, the strict path runs (2 workers).

    The real counts themselves are checked below, in the mismatch message test, and at full
    size in `test_cdd_real_archive_counts_pass_without_allow_partial`.
    """
    assert DATASETS["cdd"].official_pairs == {"train": 10000, "val": 2998, "test": 3000}
    official_counts(monkeypatch, "cdd", CDD_SMALL)
    write_cdd_archive(raw)
    manifest = prepare_dataset("cdd", raw, out)
    assert manifest["allow_partial"] is False
    assert manifest["counts"] == {
        split: {"expected": CDD_SMALL[split], "found": CDD_SMALL[split]} for split in SPLITS
    }
    assert manifest["duplicates_across_splits"] == 0


@pytest.mark.slow
def test_cdd_real_archive_counts_pass_without_allow_partial(
    raw: Path, out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cdbench prepare cdd` on an archive with the real subset's 10000 / 2998 / 3000 pairs
    succeeds without --allow-partial and writes every pair (16x16 images, so that 15,998 pairs
    take 1.5 to 4 minutes on 2 cores; by hand: `python -m tests.data.archives cdd --full --size
    16 DIR`, then `cdbench prepare cdd --raw DIR --out OUT`).
    """
    write_cdd_archive(raw, CDD_FULL, size=16, decoy=False)
    params = str(write_repo_params(tmp_path / "params.yaml"))
    assert (
        cli.main(["--params", params, "prepare", "cdd", "--raw", str(raw), "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert f'prepared cdd in {out}: {{"train": 10000, "val": 2998, "test": 3000}}' in printed
    manifest = layout.read_manifest(out)
    assert manifest["allow_partial"] is False
    assert manifest["counts"] == {
        "train": {"expected": 10000, "found": 10000},
        "val": {"expected": 2998, "found": 2998},
        "test": {"expected": 3000, "found": 3000},
    }
    for split in SPLITS:
        names = sorted(p.name for p in (out / split / "label").iterdir())
        assert names == [f"{i:05d}.png" for i in range(CDD_FULL[split])]


def cdd_names_only(raw: Path, counts: Mapping[str, int]) -> Path:
    """A CDD archive whose entries have the real names but no image data: enough for the count
    check, which refuses before any image is extracted or decoded."""
    members = {
        f"{CDD_ROOT}/{split}/{part}/{index:05d}.jpg": b""
        for split in SPLITS
        for index in range(counts[split])
        for part in ("A", "B", "OUT")
    }
    return write_zip(raw / "ChangeDetectionDataset.rar", members)


@pytest.mark.parametrize(
    "counts",
    [
        {"train": 10000, "val": 3000, "test": 3000},  # the rounded sizes papers quote
        {"train": 10000, "val": 2997, "test": 3000},  # one val pair lost
    ],
    ids=["papers-rounded", "one-missing"],
)
def test_cdd_counts_other_than_the_real_archive_are_refused(
    raw: Path, out: Path, counts: Mapping[str, int]
) -> None:
    cdd_names_only(raw, counts)
    with pytest.raises(DataError) as info:
        prepare_dataset("cdd", raw, out, workers=1)
    message = str(info.value)
    assert (
        f"train 10000 (expected 10000), val {counts['val']} (expected 2998), "
        f"test 3000 (expected 3000) pairs" in message
    )
    assert "--allow-partial" in message
    assert_nothing_left(out)


def test_fixture_archives_are_deterministic(tmp_path: Path) -> None:
    first = write_cdd_archive(tmp_path / "one", decoy=False).read_bytes()
    second = write_cdd_archive(tmp_path / "two", decoy=False).read_bytes()
    assert first == second


# --------------------------------------------------------------------------- CLI


def test_cli_prepare(
    raw: Path, out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    levir_raw(raw)
    params = str(write_repo_params(tmp_path / "params.yaml"))
    argv = ["--params", params, "prepare", "levir-cd", "--raw", str(raw), "--out", str(out)]
    assert cli.main([*argv, "--allow-partial"]) == 0
    printed = capsys.readouterr().out
    assert f"prepared levir-cd in {out}: " in printed
    assert '{"train": 12, "val": 8, "test": 8}' in printed

    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith("cdbench prepare: error: levir-cd: split sizes in ")
    assert "--allow-partial" in error
    assert layout.read_manifest(out)["allow_partial"] is True  # the earlier dataset is kept
