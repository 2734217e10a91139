"""The prepared-data layout shared by every dataset.

    data/prepared/<dataset>/
        manifest.json
        {train,val,test}/{A,B,label}/<name>.png     A, B: RGB uint8; label: one channel, 0 or 255
        whole/{train,val,test}/{A,B,label}/<name>.png   (LEVIR-CD only: the uncut 1024 images)

Writers go through `staging_dir` (benchmark/publish.py), so a failed or interrupted run never
leaves a half-written dataset under the final name, and first check that the folder they will
replace is theirs to replace (`check_replaceable`); readers go through `list_pairs` and
`read_manifest`, which name the file and the command to run when something is missing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.data.datasets.base import SPLITS as SPLITS
from benchmark.errors import DataError
from benchmark.progress import progress_bar
from benchmark.publish import remove_stale_scratch as remove_stale_scratch
from benchmark.publish import scratch_dir as scratch_dir
from benchmark.publish import staging_dir as staging_dir

PARTS = ("A", "B", "label")
MANIFEST = "manifest.json"
WHOLE = "whole"
PNG_COMPRESS_LEVEL = 1
"""zlib level for every PNG we write: level 1 is several times faster than PIL's default 6 and
only slightly larger, which matters when LEVIR-CD is cut into 10,192 tiles."""


def write_png(path: Path, array: np.ndarray) -> None:
    """Write an (H, W, 3) RGB or (H, W) single-channel uint8 array as PNG."""
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: expected a uint8 array, got {array.dtype}")
    Image.fromarray(array).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def write_pair(
    split_dir: Path, name: str, a: np.ndarray, b: np.ndarray, change: np.ndarray
) -> None:
    """Write one pair under `split_dir/{A,B,label}/<name>.png`.

    `change` is an (H, W) boolean (or 0/1) map; it is stored as 0/255.
    """
    if a.shape != b.shape or a.shape[:2] != change.shape:
        raise ValueError(
            f"{name}: A {a.shape}, B {b.shape} and label {change.shape} must share H and W"
        )
    for part in PARTS:
        (split_dir / part).mkdir(parents=True, exist_ok=True)
    write_png(split_dir / "A" / f"{name}.png", a)
    write_png(split_dir / "B" / f"{name}.png", b)
    label = np.where(change.astype(bool), 255, 0).astype(np.uint8)
    write_png(split_dir / "label" / f"{name}.png", label)


def list_pairs(split_dir: Path) -> list[str]:
    """Names (without `.png`) of the pairs in `split_dir`, sorted; every part must be present."""
    if not split_dir.is_dir():
        raise DataError(
            f"{split_dir}: no such split folder; run `cdbench prepare` (or `cdbench synth`)"
        )
    names: dict[str, set[str]] = {}
    for part in PARTS:
        folder = split_dir / part
        names[part] = {p.stem for p in folder.glob("*.png")} if folder.is_dir() else set()
    every = names["A"] | names["B"] | names["label"]
    for part in PARTS:
        missing = sorted(every - names[part])
        if missing:
            shown = ", ".join(f"{part}/{m}.png" for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(f"{split_dir}: missing counterpart(s) {shown}{more}")
    return sorted(every)


def file_digest(path: Path, algorithm: str = "sha256", progress: bool = False) -> str:
    """Hex digest of a file read in 1 MiB blocks (`algorithm`: any hashlib name, e.g. md5).

    With `progress`, a byte progress bar is shown (for multi-GB archives).
    """
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with (
        open(path, "rb") as f,
        progress_bar(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"{algorithm} {path.name}",
            leave=False,
            enabled=progress,
        ) as bar,
    ):
        while block := f.read(1 << 20):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def summarise_split(split_dir: Path) -> dict[str, Any]:
    """Pair count, changed-pixel fraction and the sha256 of every file of one split."""
    names = list_pairs(split_dir)
    files: dict[str, str] = {}
    changed = 0
    total = 0
    for name in progress_bar(names, desc=f"hash {split_dir.name}", unit="pair", leave=False):
        for part in PARTS:
            files[f"{part}/{name}.png"] = file_digest(split_dir / part / f"{name}.png")
        label = np.asarray(Image.open(split_dir / "label" / f"{name}.png"))
        changed += int(np.count_nonzero(label))
        total += label.size
    return {
        "pairs": len(names),
        "changed_fraction": changed / total if total else 0.0,
        "files": files,
    }


def count_cross_split_duplicates(splits: dict[str, dict[str, Any]]) -> int:
    """Number of pairs whose exact (A, B) content also appears in another split (leakage).

    `splits` maps split name -> `summarise_split` result. PNG encoding is deterministic for
    equal pixels and encoder settings, so equal file hashes mean equal content.
    """
    seen: dict[tuple[str, str], set[str]] = {}
    for split, info in splits.items():
        files = info["files"]
        for key, digest in files.items():
            if not key.startswith("A/"):
                continue
            name = key[2:]
            seen.setdefault((digest, files[f"B/{name}"]), set()).add(split)
    duplicates = 0
    for info in splits.values():
        files = info["files"]
        for key, digest in files.items():
            if key.startswith("A/") and len(seen[(digest, files[f"B/{key[2:]}"])]) > 1:
                duplicates += 1
    return duplicates


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        raise DataError(
            f"{path}: not found; prepare the dataset first "
            f"(`cdbench prepare <dataset>`, `cdbench synth`, or `dvc repro`)"
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc}); the dataset is damaged: prepare it again "
            f"(`cdbench prepare <dataset>`, `cdbench synth`, or `dvc repro`)"
        ) from exc
    return manifest


# --------------------------------------------------------------------------- replacing outputs


def check_replaceable(out_dir: Path, dataset: str, command: str) -> None:
    """Refuse an output folder that holds anything but a prepared `dataset`.

    `command` (e.g. `cdbench prepare levir-cd`, `cdbench synth`) replaces `out_dir` as a whole
    (`staging_dir`), so `--out data/prepared` (instead of `data/prepared/levir-cd`), a folder of
    the user's, or the current folder would otherwise be deleted with whatever it holds. A
    folder counts as a prepared `dataset` only if its `manifest.json` says so.

    Raises:
        DataError: `out_dir` is a file, the current folder or one holding it, or a non-empty
            folder whose `manifest.json` is missing, unreadable, or names another dataset.
    """
    here = Path.cwd().resolve()
    fix = f"pass --out a new or empty folder, or delete {out_dir} yourself"
    if out_dir.exists() and (out_dir.resolve() == here or out_dir.resolve() in here.parents):
        what = f"is the current folder ({here}) or holds it"
        fix = f"pass --out a new or empty folder, e.g. --out {out_dir / dataset}"
    elif not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    else:
        found = None
        if out_dir.is_dir():
            try:
                found = json.loads((out_dir / MANIFEST).read_text()).get("dataset")
            except (OSError, ValueError, AttributeError):
                found = None
        if found == dataset:
            return
        if found is not None:
            what = f"holds the prepared {found!r} dataset"
        elif out_dir.is_dir():
            what = f"is a folder with no readable {MANIFEST}, so not a prepared dataset"
        else:
            what = "is a file"
    raise DataError(
        f"{out_dir}: {what}; `{command}` replaces its output folder as a whole, so it will not "
        f"write there: {fix}"
    )
