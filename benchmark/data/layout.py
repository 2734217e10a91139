"""The prepared-data layout shared by every dataset (design.md, "Contracts between the parts").

    data/prepared/<dataset>/
        manifest.json
        {train,val,test}/{A,B,label}/<name>.png     A, B: RGB uint8; label: one channel, 0 or 255
        whole/{train,val,test}/{A,B,label}/<name>.png   (LEVIR-CD only: the uncut 1024 images)

Writers go through `staging_dir`, so a failed or interrupted run never leaves a half-written
dataset under the final name; readers go through `list_pairs` and `read_manifest`, which name
the file and the command to run when something is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from benchmark.errors import DataError

SPLITS = ("train", "val", "test")
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
        tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"{algorithm} {path.name}",
            leave=False,
            disable=not progress,
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
    for name in tqdm(names, desc=f"hash {split_dir.name}", unit="pair", leave=False):
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
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc}); the dataset is damaged: prepare it again "
            f"(`cdbench prepare <dataset>`, `cdbench synth`, or `dvc repro`)"
        ) from exc


# --------------------------------------------------------------------------- scratch folders

_SCRATCH = re.compile(r"^\.(?P<out>.+)\.(?P<kind>partial|old|raw)-(?P<pid>[0-9]+)(?:-.*)?$")
"""Folders a run keeps beside its output while it works (`staging_dir`'s `.partial-` and
`.old-`, `scratch_dir`'s `.<kind>-`), each named after the process that made it."""


def scratch_dir(out: Path, kind: str = "raw") -> Path:
    """A new folder beside `out` for intermediate files, named after this process.

    The caller removes it; if the process is killed first, the next run's
    `remove_stale_scratch` does.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.{kind}-{os.getpid()}-", dir=out.parent))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_scratch(out: Path) -> list[Path]:
    """Delete the scratch folders that a killed run (SIGKILL, power loss) left beside `out`.

    A run removes its own scratch folders when it ends, even on an error or Ctrl-C; only a run
    that could not clean up leaves them (an extracted CDD is several GB). Folders of a process
    that still exists (a run going on at the same time) are left alone. A run killed between
    the two renames of `staging_dir` leaves no `out` and the previous dataset in `.old-<pid>`:
    that one is put back.

    Returns:
        The folders deleted.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    for path in sorted(out.parent.iterdir()):
        match = _SCRATCH.match(path.name)
        if match is None or match["out"] != out.name or not path.is_dir():
            continue
        if _process_exists(int(match["pid"])):
            continue
        if match["kind"] == "old" and not out.exists():
            tqdm.write(f"{path}: the previous dataset, left by an interrupted run; restoring it")
            path.rename(out)
            continue
        tqdm.write(f"{path}: left by an interrupted run (process {match['pid']}); deleting it")
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """Yield an empty folder beside `out`; on success it replaces `out`, on failure it is removed.

    Readers therefore see either the previous complete dataset or the new complete one, never
    a half-written folder under the final name. Scratch folders of earlier killed runs are
    cleaned up first (`remove_stale_scratch`).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(out)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
