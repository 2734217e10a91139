"""`cdbench prepare {cdd,levir-cd}`: raw archives -> the prepared layout of `layout.py`.

    data/prepared/<dataset>/{train,val,test}/{A,B,label}/<name>.png   (+ whole/ and list/ for
    LEVIR-CD) and manifest.json

Steps: list every archive (refusing unsafe entries, `extract.py`), detect the layout from the
entry names (an unknown layout is an error that lists what was found and what was expected),
check that every pair is complete and that the split sizes are those of the official archives
(`LEVIR_IMAGES`, `CDD_PAIRS`), extract into a temporary folder, decode and check every image,
binarise the labels (value >= 128 is change), and write everything through
`layout.staging_dir`, so a failure leaves no half-written output.
Scratch folders that a killed run (SIGKILL) could not remove are deleted by the next run
(`layout.remove_stale_scratch`), and pool workers end with the process that started them. Since the
output folder is replaced as a whole, one that holds anything but a prepared dataset of the
same name (e.g. `--out data/prepared`) is refused (`layout.check_replaceable`).

Datasets (datasets.md):
- LEVIR-CD (Chen & Shi, Remote Sensing 12(10):1662, 2020): `train.zip`, `val.zip`, `test.zip`,
  each holding either `A/ B/ label/` at the top (file names carry the split, `train_1.png`; what
  torchgeo's `datasets/levircd.py` reads) or `{split}/{A,B,label}/` (STANet, open-cd, CDLab).
  445 / 64 / 128 images of 1024x1024, each cut into 16 non-overlapping 256x256 tiles ->
  7120 / 1024 / 2048, named as the LEVIR-CD-256 copy of BIT_CD / ChangeFormer
  (`{split}_{index}_{row:04d}_{col:04d}`, pixel offsets; see `images.py`) with BIT's
  `list/{split}.txt`. The whole images are kept under `whole/` (whole-image evaluation differs
  from tile evaluation, open-cd issue #148).
- CDD (Lebedev et al., ISPRS Archives XLII-2, 2018): `ChangeDetectionDataset.rar`; only
  `ChangeDetectionDataset/Real/subset/{train,val,test}/{A,B,OUT}/NNNNN.jpg` is used (10000 /
  2998 / 3000 pairs: the val split has 2998, not the 3000 that papers round to; two
  independent inventories of the archive agree, datasets.md); `Model/` (the synthetic part) is
  never extracted. Stored as PNG with the same names.

Deliberate departures:
- `allow_partial` also accepts LEVIR-CD images whose sides are other multiples of 256 than 1024
  (small test fixtures); without it any other size is an error. Either way the counts found are
  recorded in the manifest.
- Files in an archive that are not images (e.g. `Thumbs.db`) and macOS metadata (`__MACOSX/`,
  `._name`) are ignored; an image anywhere the detected layout does not expect it is an error.
  Only the entries of the pairs are extracted: every other file entry is skipped unread (never
  written, so a bomb among them cannot fill the disk) and listed in the manifest
  (`skipped_entries`, per archive).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from benchmark.data import layout
from benchmark.data.cache import write_caches
from benchmark.data.extract import Member, extract_archive, list_members
from benchmark.data.images import (
    CHANGE_THRESHOLD,
    check_same_size,
    read_label,
    read_rgb,
    tile_name,
    tile_offsets,
)
from benchmark.data.workers import exit_with_parent
from benchmark.errors import DataError

FORMAT_VERSION = 1
SPLITS = layout.SPLITS
DATASETS = ("cdd", "levir-cd")
DEFAULT_WORKERS = 2

TILE = 256
LEVIR_SIDE = 1024
LEVIR_ARCHIVES = {split: f"{split}.zip" for split in SPLITS}
LEVIR_IMAGES = {"train": 445, "val": 64, "test": 128}
LEVIR_TILES = {split: n * (LEVIR_SIDE // TILE) ** 2 for split, n in LEVIR_IMAGES.items()}
LEVIR_FLAT = "levir-cd: A/ B/ label/ at the top of each split archive"
LEVIR_NESTED = "levir-cd: {split}/{A,B,label}/ in each split archive"

CDD_ARCHIVE = "ChangeDetectionDataset.rar"
CDD_ROOT = "ChangeDetectionDataset/Real/subset"
CDD_PAIRS = {"train": 10000, "val": 2998, "test": 3000}
"""The only split sizes accepted without --allow-partial: those of the real archive.

The rounded 10000 / 3000 / 3000 that papers quote is not accepted: no copy of the archive
(the Google Drive RAR, the Zenodo copy) has 3000 val pairs, so an archive that does is not the
official one (repacked, or with pairs added), and preparing it silently would benchmark other
data under CDD's name. `--allow-partial` still prepares it, and the manifest records the counts.
"""
CDD_LAYOUT = "cdd: ChangeDetectionDataset/Real/subset/{split}/{A,B,OUT}/NNNNN.jpg"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
ROLES = ("A", "B", "label")


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


def redownload_fix(name: str) -> str:
    """What to tell the user when an archive of `name` is damaged.

    CDD has no published md5: `cdbench download` recorded the first copy's md5 in
    `<archive>.md5` (`benchmark.data.download.sidecar_path`) and would refuse a good new copy
    against it, so that record goes too.
    """
    if name == "cdd":
        return (
            f"delete it and {CDD_ARCHIVE}.md5 (the md5 recorded from it), then re-run "
            f"`cdbench download cdd`"
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
    """Prepare CDD or LEVIR-CD from its downloaded archives.

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
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    raw_dir = Path(raw_dir)
    out_dir = Path(out_dir)
    layout.check_replaceable(out_dir, name, f"cdbench prepare {name}")
    layout.remove_stale_scratch(out_dir)
    if name == "levir-cd":
        return _prepare_levir(raw_dir, out_dir, allow_partial, workers)
    return _prepare_cdd(raw_dir, out_dir, allow_partial, workers)


# --------------------------------------------------------------------------- archives


def _archive(raw_dir: Path, filename: str, name: str) -> Path:
    path = raw_dir / filename
    if not path.is_file():
        raise DataError(
            f"{path}: not found; run `cdbench download {name}` first "
            f"(or pass --raw DIR, the folder holding {filename})"
        )
    return path


def _is_mac_metadata(name: str) -> bool:
    """macOS zip artefacts: `__MACOSX/...` and AppleDouble `._name` files (not images)."""
    return name.startswith("__MACOSX/") or name.rsplit("/", 1)[-1].startswith("._")


def _images(members: Sequence[Member]) -> list[str]:
    return [
        m.name
        for m in members
        if not m.is_dir and m.name.lower().endswith(IMAGE_SUFFIXES) and not _is_mac_metadata(m.name)
    ]


def _found_summary(names: Sequence[str]) -> str:
    """What an archive holds, for layout errors: its folders (two levels deep) and an example."""
    folders = sorted({"/".join(n.split("/")[:-1][:2]) + "/" if "/" in n else n for n in names})
    if not folders:
        return "no image files"
    shown = ", ".join(folders[:8]) + (f" and {len(folders) - 8} more" if len(folders) > 8 else "")
    return f"{shown} (e.g. {sorted(names)[0]})"


def _pairs_from_roles(
    archive: Path, split: str, by_role: dict[str, dict[str, str]], folder: dict[str, str]
) -> list[RawPair]:
    """Join the A, B and label entries of one split by stem, refusing incomplete pairs."""
    stems = set().union(*(set(entries) for entries in by_role.values()))
    for role in ROLES:
        missing = sorted(stems - set(by_role[role]), key=_natural)
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
        for stem in sorted(stems, key=_natural)
    ]


def _natural(stem: str) -> tuple[str, int]:
    """Sort key putting `train_2` before `train_10`."""
    match = re.match(r"^(.*?)([0-9]+)$", stem)
    return (match.group(1), int(match.group(2))) if match else (stem, -1)


def detect_levir_layout(
    archive: Path, split: str, members: Sequence[Member]
) -> tuple[str, list[RawPair]]:
    """Detect which of the two known layouts one LEVIR-CD split archive has.

    Returns:
        The layout description and the archive's pairs.

    Raises:
        DataError: an unknown layout (listing what was found and what was expected), or an
            incomplete pair.
    """
    names = _images(members)
    patterns = {
        # [0-9], not \d: \d matches any Unicode digit (train_\u0661 would be an extra pair)
        LEVIR_FLAT: re.compile(rf"^(A|B|label)/({split}_[0-9]+)\.png$"),
        LEVIR_NESTED: re.compile(rf"^{split}/(A|B|label)/({split}_[0-9]+)\.png$"),
    }
    for layout_name, pattern in patterns.items():
        matches = [pattern.match(n) for n in names]
        if names and all(matches):
            by_role: dict[str, dict[str, str]] = {role: {} for role in ROLES}
            for match in matches:
                assert match is not None
                by_role[match.group(1)][match.group(2)] = match.group(0)
            prefix = "" if layout_name == LEVIR_FLAT else f"{split}/"
            folder = {role: prefix + role for role in ROLES}
            return layout_name, _pairs_from_roles(archive, split, by_role, folder)
    # the images that fit neither layout (of the layout most of them fit), named in the error
    best = max(patterns.values(), key=lambda pattern: sum(bool(pattern.match(n)) for n in names))
    odd = [n for n in names if not best.match(n)]
    unfit = (
        f" ({odd[0]}" + (f" and {len(odd) - 1} more" if len(odd) > 1 else "") + " do not fit)"
        if 0 < len(odd) < len(names)
        else ""
    )
    raise DataError(
        f"{archive}: unknown layout; found {_found_summary(names)}{unfit}; expected PNG files "
        f"A/{split}_N.png, B/{split}_N.png, label/{split}_N.png (N in ASCII digits 0-9), "
        f"either at the top of the archive or under {split}/ (e.g. {split}/A/{split}_1.png)"
    )


def detect_cdd_layout(archive: Path, members: Sequence[Member]) -> list[RawPair]:
    """Find the pairs of CDD's real subset, ignoring `Model/` (the synthetic part).

    Raises:
        DataError: no real subset where it should be, an image inside it that does not fit the
            layout, or an incomplete pair.
    """
    names = _images(members)
    pattern = re.compile(rf"^{CDD_ROOT}/(train|val|test)/(A|B|OUT)/([0-9]+)\.jpg$")
    inside = [n for n in names if n.startswith(CDD_ROOT + "/")]
    expected = f"expected {CDD_ROOT}/{{train,val,test}}/{{A,B,OUT}}/NNNNN.jpg"
    if not inside:
        raise DataError(f"{archive}: unknown layout; found {_found_summary(names)}; {expected}")
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
        folder = {
            role: f"{CDD_ROOT}/{split}/{'OUT' if role == 'label' else role}" for role in ROLES
        }
        pairs += _pairs_from_roles(archive, split, by_split[split], folder)
    return pairs


def _check_counts(
    name: str,
    raw_dir: Path,
    found: dict[str, int],
    expected: dict[str, int],
    unit: str,
    allow_partial: bool,
) -> None:
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
            f"{job.sources[0]}: is {width}x{height}; LEVIR-CD images are "
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


Result = TypeVar("Result")


def _run(
    jobs: Sequence[Job], worker: Callable[[Job], Result], workers: int, desc: str
) -> list[Result]:
    """Run `worker` over `jobs`, in `workers` processes when > 1, with a progress bar.

    The first failing job's exception (a `DataError`) is raised; a pool whose process dies
    raises `BrokenProcessPool` instead of hanging. Workers end with the main process, even
    when it is killed outright (`exit_with_parent`).
    """
    results: list[Result] = []
    with tqdm(total=len(jobs), desc=desc, unit="pair") as bar:
        if workers <= 1 or len(jobs) < 2:
            for job in jobs:
                results.append(worker(job))
                bar.update()
            return results
        with ProcessPoolExecutor(min(workers, len(jobs)), initializer=exit_with_parent) as pool:
            try:
                for result in pool.map(worker, jobs, chunksize=4):
                    results.append(result)
                    bar.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return results


def _jobs(
    pairs: Sequence[RawPair],
    roots: dict[str, Path],
    archives: dict[str, Path],
    stage: Path,
    fix: str,
    tile: int = 0,
    require_side: int = 0,
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
                tile=tile,
                require_side=require_side,
            )
        )
    return jobs


# --------------------------------------------------------------------------- datasets


def _prepare_levir(
    raw_dir: Path, out_dir: Path, allow_partial: bool, workers: int
) -> dict[str, Any]:
    name = "levir-cd"
    fix = redownload_fix(name)
    archives = {split: _archive(raw_dir, LEVIR_ARCHIVES[split], name) for split in SPLITS}
    layouts: dict[str, str] = {}
    pairs: list[RawPair] = []
    for split, archive in archives.items():
        layouts[split], split_pairs = detect_levir_layout(
            archive, split, list_members(archive, fix=fix)
        )
        pairs += split_pairs
    found_images = {split: sum(p.split == split for p in pairs) for split in SPLITS}
    _check_counts(name, raw_dir, found_images, LEVIR_IMAGES, "images", allow_partial)
    sources = _sources(archives.values())

    scratch = layout.scratch_dir(out_dir, "raw")
    try:
        roots = {}
        skipped: dict[str, dict[str, Any]] = {}
        for split, archive in archives.items():
            roots[split] = scratch / split
            needed = {member for pair in pairs if pair.split == split for member in pair.members}
            extraction = extract_archive(archive, roots[split], only=needed, fix=fix)
            skipped[archive.name] = extraction.skipped_summary()
        with layout.staging_dir(out_dir) as stage:
            jobs = _jobs(
                pairs,
                roots,
                archives,
                stage,
                fix,
                tile=TILE,
                require_side=0 if allow_partial else LEVIR_SIDE,
            )
            results = _run(jobs, convert_pair, workers, "tile levir-cd")
            tiles: dict[str, list[str]] = {split: [] for split in SPLITS}
            for split, names in results:
                tiles[split] += names
            (stage / "list").mkdir()
            for split in SPLITS:
                lines = "".join(f"{n}.png\n" for n in sorted(tiles[split]))
                (stage / "list" / f"{split}.txt").write_text(lines)
            splits = _summaries(stage, "summarise levir-cd tiles")
            whole = _summaries(stage / layout.WHOLE, "summarise levir-cd whole images")
            manifest = {
                "dataset": name,
                "format_version": FORMAT_VERSION,
                "layout": layouts,
                "sources": sources,
                "allow_partial": allow_partial,
                "label_threshold": CHANGE_THRESHOLD,
                "tile_size": TILE,
                "tile_names": "{split}_{index}_{row:04d}_{col:04d}, pixel offsets",
                "counts": {
                    split: {
                        "expected": LEVIR_TILES[split],
                        "found": splits[split]["pairs"],
                        "expected_images": LEVIR_IMAGES[split],
                        "found_images": found_images[split],
                    }
                    for split in SPLITS
                },
                "splits": splits,
                "whole": whole,
                "duplicates_across_splits": layout.count_cross_split_duplicates(splits),
                "whole_duplicates_across_splits": layout.count_cross_split_duplicates(whole),
                "skipped_entries": skipped,
            }
            manifest["caches"] = [str(p.relative_to(stage)) for p in write_caches(stage)]
            layout.write_manifest(stage, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _prepare_cdd(raw_dir: Path, out_dir: Path, allow_partial: bool, workers: int) -> dict[str, Any]:
    name = "cdd"
    fix = redownload_fix(name)
    archive = _archive(raw_dir, CDD_ARCHIVE, name)
    pairs = detect_cdd_layout(archive, list_members(archive, fix=fix))
    found = {split: sum(p.split == split for p in pairs) for split in SPLITS}
    _check_counts(name, raw_dir, found, CDD_PAIRS, "pairs", allow_partial)
    sources = _sources([archive])

    scratch = layout.scratch_dir(out_dir, "raw")
    try:
        root = scratch / "cdd"
        needed = {member for pair in pairs for member in pair.members}
        extraction = extract_archive(archive, root, prefix=CDD_ROOT, only=needed, fix=fix)
        with layout.staging_dir(out_dir) as stage:
            jobs = _jobs(
                pairs, dict.fromkeys(SPLITS, root), dict.fromkeys(SPLITS, archive), stage, fix
            )
            _run(jobs, convert_pair, workers, "convert cdd")
            splits = _summaries(stage, "summarise cdd")
            manifest = {
                "dataset": name,
                "format_version": FORMAT_VERSION,
                "layout": CDD_LAYOUT,
                "sources": sources,
                "allow_partial": allow_partial,
                "label_threshold": CHANGE_THRESHOLD,
                "counts": {
                    split: {"expected": CDD_PAIRS[split], "found": splits[split]["pairs"]}
                    for split in SPLITS
                },
                "splits": splits,
                "duplicates_across_splits": layout.count_cross_split_duplicates(splits),
                "skipped_entries": {archive.name: extraction.skipped_summary()},
            }
            manifest["caches"] = [str(p.relative_to(stage)) for p in write_caches(stage)]
            layout.write_manifest(stage, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest


def _sources(archives: Iterable[Path]) -> dict[str, dict[str, Any]]:
    return {
        path.name: {
            "md5": layout.file_digest(path, "md5", progress=True),
            "bytes": path.stat().st_size,
        }
        for path in tqdm(list(archives), desc="md5 of archives", unit="archive")
    }


def _summaries(root: Path, desc: str) -> dict[str, dict[str, Any]]:
    return {split: layout.summarise_split(root / split) for split in tqdm(SPLITS, desc=desc)}
