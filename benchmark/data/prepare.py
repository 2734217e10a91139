"""`cdbench prepare {cdd,levir-cd}`: raw archives -> the prepared layout of `layout.py`.

    data/prepared/<dataset>/{train,val,test}/{A,B,label}/<name>.png   (+ whole/ and list/ for
    LEVIR-CD) and manifest.json

Steps: list every archive (refusing unsafe entries, `extract.py`), detect the layout from the
entry names (an unknown layout is an error that lists what was found and what was expected),
check that every pair is complete and that the split sizes are those of the official archives
(`Dataset.official_pairs`), extract into a temporary folder, decode and check every image,
binarise the labels (value >= 128 is change), write everything through
`layout.staging_dir`, so a failure leaves no half-written output, and score the
pixel-difference baseline on the written test split (`benchmark.data.baseline`; the manifest's
`pixel_difference_baseline`, as `cdbench synth` records it).
Scratch folders that a killed run (SIGKILL) could not remove are deleted by the next run
(`layout.remove_stale_scratch`), and pool workers end with the process that started them. Since the
output folder is replaced as a whole, one that holds anything but a prepared dataset of the
same name (e.g. `--out data/prepared`) is refused (`layout.check_replaceable`).

Each dataset's facts (archives, official split sizes, layout detection, tiling) are its
module's in `benchmark.data.datasets`; this one pipeline runs over any of them: a tiled dataset
(LEVIR-CD) has each image cut into non-overlapping tiles named as the LEVIR-CD-256 copy of
BIT_CD / ChangeFormer (`{split}_{index}_{row:04d}_{col:04d}`, pixel offsets; `images.py`), with
BIT's `list/{split}.txt`, and keeps the whole images under `whole/` (whole-image evaluation
differs from tile evaluation, open-cd issue #148); any other (CDD) is stored pair by pair as
PNG under the same names.

Deliberate departures:
- `allow_partial` also accepts images of a tiled dataset whose sides are other multiples of the
  tile than the official side (small test fixtures); without it any other size is an error.
  Either way the counts found are recorded in the manifest.
- Files in an archive that are not images (e.g. `Thumbs.db`) and macOS metadata (`__MACOSX/`,
  `._name`) are ignored; an image anywhere the detected layout does not expect it is an error.
  Only the entries of the pairs are extracted: every other file entry is skipped unread (never
  written, so a bomb among them cannot fill the disk) and listed in the manifest
  (`skipped_entries`, per archive).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.data import layout
from benchmark.data.baseline import DifferenceCounts, SparseCounts, pair_counts_from_files
from benchmark.data.cache import write_caches
from benchmark.data.datasets import DATASETS, REAL_DATASETS, Dataset
from benchmark.data.datasets.base import RawPair
from benchmark.data.extract import extract_archive, list_members
from benchmark.data.images import (
    CHANGE_THRESHOLD,
    check_same_size,
    read_label,
    read_rgb,
    tile_name,
    tile_offsets,
)
from benchmark.data.workers import map_in_workers
from benchmark.errors import DataError
from benchmark.progress import progress_bar

FORMAT_VERSION = 1
SPLITS = layout.SPLITS
DEFAULT_WORKERS = 2
TILE_NAMES = "{split}_{index}_{row:04d}_{col:04d}, pixel offsets"
"""How the tiles of a tiled dataset are named (`images.tile_name`), as the manifest says."""
BASELINE_SPLIT = "test"
"""The split the pixel-difference baseline is scored on (`benchmark.data.baseline`)."""


@dataclass(frozen=True)
class Job:
    """What one worker needs to convert one pair (plain data, so it pickles)."""

    split: str
    stem: str
    paths: tuple[Path, Path, Path]
    sources: tuple[str, str, str]
    stage: Path
    fix: str
    tile: int = 0
    """0: write the pair as is (CDD); otherwise cut into tile x tile tiles (LEVIR-CD)."""
    require_side: int = 0
    """If non-zero, every image must be require_side x require_side."""
    title: str = ""
    """The dataset's name in messages (`LEVIR-CD`)."""


def redownload_fix(name: str) -> str:
    """What to tell the user when an archive of `name` is damaged.

    An archive with no published md5 (CDD's) has the md5 of its first copy recorded by
    `cdbench download` in `<archive>.md5` (`benchmark.data.download.sidecar_path`), which would
    refuse a good new copy, so that record goes too.
    """
    unpublished = [a.filename for a in DATASETS[name].archives if a.md5 is None]
    if unpublished:
        return (
            f"delete it and {unpublished[0]}.md5 (the md5 recorded from it), then re-run "
            f"`cdbench download {name}`"
        )
    return f"delete it and re-run `cdbench download {name}`"


def prepare_dataset(
    name: str,
    raw_dir: Path,
    out_dir: Path,
    *,
    allow_partial: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, Any]:
    """Prepare a dataset of `benchmark.data.datasets.REAL_DATASETS` from its archives.

    Args:
        name: `cdd` or `levir-cd`.
        raw_dir: folder holding the archives (`ChangeDetectionDataset.rar`, or `train.zip`,
            `val.zip`, `test.zip`).
        out_dir: the prepared dataset's folder (replaced as a whole on success).
        allow_partial: accept split sizes other than the official archives' (recorded in the
            manifest).
        workers: processes decoding and writing images (1: no pool).

    Returns:
        The manifest, also written to `out_dir/manifest.json`.

    Raises:
        DataError: a missing, unsafe, truncated or corrupt archive, an unknown layout, an
            incomplete pair, unexpected split sizes, or a bad image; nothing is left in
            `out_dir` (a previous complete dataset there is kept). Also when `out_dir` holds
            something other than a prepared `name` dataset, which it would replace.
    """
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(REAL_DATASETS)}")
    dataset = DATASETS[name]
    raw_dir = Path(raw_dir)
    out_dir = Path(out_dir)
    layout.check_replaceable(out_dir, name, f"cdbench prepare {name}")
    layout.remove_stale_scratch(out_dir)
    fix = redownload_fix(name)
    archives = {split: _archive(raw_dir, dataset.split_archives[split], name) for split in SPLITS}
    layouts, pairs = _find_pairs(dataset, archives, fix)
    found = {split: sum(p.split == split for p in pairs) for split in SPLITS}
    _check_counts(dataset, raw_dir, found, allow_partial)
    sources = _sources(_by_archive(archives))

    scratch = layout.scratch_dir(out_dir, "raw")
    try:
        roots, skipped = _extract(dataset, archives, pairs, scratch, fix)
        with layout.staging_dir(out_dir) as stage:
            jobs = _jobs(dataset, pairs, roots, archives, stage, fix, allow_partial)
            verb = "tile" if dataset.tile else "convert"
            converted = map_in_workers(convert_pair, jobs, workers, chunksize=4)
            results = list(
                progress_bar(converted, total=len(jobs), desc=f"{verb} {name}", unit="pair")
            )
            if dataset.tile:
                _write_lists(stage, results)
            manifest = {
                "dataset": name,
                "format_version": FORMAT_VERSION,
                "layout": layouts if dataset.archive_per_split else layouts[SPLITS[0]],
                "sources": sources,
                "allow_partial": allow_partial,
                "label_threshold": CHANGE_THRESHOLD,
                **_summary(dataset, stage, found),
                "skipped_entries": skipped,
                "pixel_difference_baseline": _baseline(dataset, stage, workers),
            }
            manifest["caches"] = [str(p.relative_to(stage)) for p in write_caches(stage)]
            layout.write_manifest(stage, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _summary(dataset: Dataset, stage: Path, found: dict[str, int]) -> dict[str, Any]:
    """The manifest's counts (expected and found), per-split summaries and duplicates; for a
    tiled dataset also its whole images' and the tiling."""
    name = dataset.name
    splits = _summaries(stage, f"summarise {name}" + (" tiles" if dataset.tile else ""))
    counts: dict[str, dict[str, int]] = {
        split: {"expected": dataset.tile_pairs(split), "found": splits[split]["pairs"]}
        for split in SPLITS
    }
    summary: dict[str, Any] = {"counts": counts, "splits": splits}
    if dataset.tile:
        whole = _summaries(stage / layout.WHOLE, f"summarise {name} whole images")
        for split in SPLITS:
            counts[split]["expected_images"] = dataset.official_pairs[split]
            counts[split]["found_images"] = found[split]
        summary["tile_size"] = dataset.tile
        summary["tile_names"] = TILE_NAMES
        summary["whole"] = whole
        summary["whole_duplicates_across_splits"] = layout.count_cross_split_duplicates(whole)
    summary["duplicates_across_splits"] = layout.count_cross_split_duplicates(splits)
    return summary


def _baseline(dataset: Dataset, stage: Path, workers: int) -> dict[str, Any]:
    """The pixel-difference baseline on the written test split (`benchmark.data.baseline`),
    pairs read back in `workers` processes.

    A tiled dataset is scored on its tiles. They cover each whole image exactly (`convert_pair`
    refuses sides that are not multiples of the tile) and the counts are pooled over pixels, so
    the whole images under `whole/` give the same counts; the manifest's `files` says so."""
    split_dir = stage / BASELINE_SPLIT
    names = layout.list_pairs(split_dir)
    pairs = map_in_workers(_pair_counts, [(split_dir, n) for n in names], workers, chunksize=8)
    counts = DifferenceCounts()
    for pair in progress_bar(pairs, total=len(names), desc=f"baseline {dataset.name}", unit="pair"):
        counts.add(pair)
    files = f"{BASELINE_SPLIT}/{{A,B,label}}/*.png ({len(names)} pairs"
    if dataset.tile:
        files += (
            f", {dataset.tile}x{dataset.tile} tiles that cover each whole image exactly: "
            f"{layout.WHOLE}/{BASELINE_SPLIT} gives the same pooled counts"
        )
    return counts.record(BASELINE_SPLIT, files + ")")


def _pair_counts(pair: tuple[Path, str]) -> SparseCounts:
    """`baseline.pair_counts_from_files` of one (split folder, name): a worker's task."""
    return pair_counts_from_files(*pair)


# --------------------------------------------------------------------------- archives


def _archive(raw_dir: Path, filename: str, name: str) -> Path:
    path = raw_dir / filename
    if not path.is_file():
        raise DataError(
            f"{path}: not found; run `cdbench download {name}` first "
            f"(or pass --raw DIR, the folder holding {filename})"
        )
    return path


def _by_archive(archives: dict[str, Path]) -> dict[Path, list[str]]:
    """archive -> the splits it holds, in split order."""
    splits: dict[Path, list[str]] = {}
    for split, archive in archives.items():
        splits.setdefault(archive, []).append(split)
    return splits


def _find_pairs(
    dataset: Dataset, archives: dict[str, Path], fix: str
) -> tuple[dict[str, str], list[RawPair]]:
    """List each archive once and detect its layout: (split -> layout, every pair)."""
    find_pairs = dataset.find_pairs
    assert find_pairs is not None  # every dataset with archives has one
    layouts: dict[str, str] = {}
    pairs: list[RawPair] = []
    for archive, held in _by_archive(archives).items():
        split = held[0] if dataset.archive_per_split else ""
        layout_name, found = find_pairs(archive, split, list_members(archive, fix=fix))
        layouts.update(dict.fromkeys(held, layout_name))
        pairs += found
    return layouts, pairs


def _extract(
    dataset: Dataset, archives: dict[str, Path], pairs: Sequence[RawPair], scratch: Path, fix: str
) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """Extract the pairs' entries of each archive under `scratch` (`<split>/` for an archive
    per split, `<dataset>/` for one of every split): (split -> its folder, archive file name ->
    the entries skipped)."""
    roots: dict[str, Path] = {}
    skipped: dict[str, dict[str, Any]] = {}
    for archive, held in _by_archive(archives).items():
        root = scratch / (held[0] if dataset.archive_per_split else dataset.name)
        needed = {member for pair in pairs if pair.split in held for member in pair.members}
        extraction = extract_archive(
            archive, root, prefix=dataset.extract_prefix, only=needed, fix=fix
        )
        roots.update(dict.fromkeys(held, root))
        skipped[archive.name] = extraction.skipped_summary()
    return roots, skipped


def _check_counts(
    dataset: Dataset, raw_dir: Path, found: dict[str, int], allow_partial: bool
) -> None:
    name, unit, expected = dataset.name, dataset.unit, dataset.official_pairs
    empty = [split for split in SPLITS if found[split] == 0]
    if empty:
        raise DataError(
            f"{name}: no {unit} found for split(s) {', '.join(empty)} in {raw_dir}; "
            f"the archives are incomplete: {redownload_fix(name)}"
        )
    if found == expected or allow_partial:
        return
    counts = ", ".join(f"{s} {found[s]} (expected {expected[s]})" for s in SPLITS)
    raise DataError(
        f"{name}: split sizes in {raw_dir} differ from the official archives': {counts} {unit}; "
        f"the archives are incomplete or not the official ones: delete them and re-run "
        f"`cdbench download {name}`, or pass --allow-partial to prepare them anyway "
        f"(recorded in the manifest)"
    )


# --------------------------------------------------------------------------- workers


def convert_pair(job: Job) -> tuple[str, list[str]]:
    """Decode, check and write one pair; return its split and the names written to it."""
    a = read_rgb(job.paths[0], job.sources[0], job.fix)
    b = read_rgb(job.paths[1], job.sources[1], job.fix)
    change = read_label(job.paths[2], job.sources[2], job.fix)
    check_same_size(a, b, change, job.sources)
    height, width = change.shape
    if job.require_side and (height, width) != (job.require_side, job.require_side):
        raise DataError(
            f"{job.sources[0]}: is {width}x{height}; {job.title} images are "
            f"{job.require_side}x{job.require_side} (pass --allow-partial to accept other "
            f"multiples of {job.tile})"
        )
    if not job.tile:
        layout.write_pair(job.stage / job.split, job.stem, a, b, change)
        return job.split, [job.stem]
    if height % job.tile or width % job.tile:
        raise DataError(
            f"{job.sources[0]}: is {width}x{height}, not a multiple of {job.tile} on both "
            f"sides; cannot cut it into {job.tile}x{job.tile} tiles"
        )
    layout.write_pair(job.stage / layout.WHOLE / job.split, job.stem, a, b, change)
    names = []
    for row, col in tile_offsets(height, width, job.tile):
        name = tile_name(job.stem, row, col)
        window = (slice(row, row + job.tile), slice(col, col + job.tile))
        layout.write_pair(job.stage / job.split, name, a[window], b[window], change[window])
        names.append(name)
    return job.split, names


def _jobs(
    dataset: Dataset,
    pairs: Sequence[RawPair],
    roots: dict[str, Path],
    archives: dict[str, Path],
    stage: Path,
    fix: str,
    allow_partial: bool,
) -> list[Job]:
    jobs = []
    for pair in pairs:
        a, b, label = pair.members
        root, archive = roots[pair.split], archives[pair.split]
        jobs.append(
            Job(
                split=pair.split,
                stem=pair.stem,
                paths=(root / a, root / b, root / label),
                sources=(f"{archive}: {a}", f"{archive}: {b}", f"{archive}: {label}"),
                stage=stage,
                fix=fix,
                tile=dataset.tile,
                require_side=0 if allow_partial else dataset.side,
                title=dataset.title,
            )
        )
    return jobs


def _write_lists(stage: Path, results: Iterable[tuple[str, list[str]]]) -> None:
    """BIT_CD's `list/{split}.txt`: the tile file names of each split, sorted."""
    tiles: dict[str, list[str]] = {split: [] for split in SPLITS}
    for split, names in results:
        tiles[split] += names
    (stage / "list").mkdir()
    for split in SPLITS:
        lines = "".join(f"{n}.png\n" for n in sorted(tiles[split]))
        (stage / "list" / f"{split}.txt").write_text(lines)


def _sources(archives: Iterable[Path]) -> dict[str, dict[str, Any]]:
    return {
        path.name: {
            "md5": layout.file_digest(path, "md5", progress=True),
            "bytes": path.stat().st_size,
        }
        for path in progress_bar(list(archives), desc="md5 of archives", unit="archive")
    }


def _summaries(root: Path, desc: str) -> dict[str, dict[str, Any]]:
    splits = progress_bar(SPLITS, desc=desc, unit="split")
    return {split: layout.summarise_split(root / split) for split in splits}
