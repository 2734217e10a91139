"""`cdbench doctor`: is everything a run needs here, before it starts?

One check per piece, each `ok` or `MISSING`, each missing one with the command or file that
fixes it: Python and torch, the ImageNet weights of pretrained recipes (present and
SHA-256-checked, benchmark/models/weights.py), a RAR extractor (`bsdtar`/`unar`) where a
dataset still to prepare ships as RAR, each dataset (prepared, or its archives downloaded),
free disk for what is still to download, prepare and train, the GPU, the MLflow store, and
DVC. Only what the chosen experiments need is checked (default: every experiment of
params.yaml). Some lines are notes (`note`): worth knowing, not blocking (no GPU for the
CPU-sized demo, data the pipeline will generate).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from benchmark.config import Params
from benchmark.data.datasets import DATASETS
from benchmark.errors import CdbenchError

OK, MISSING, NOTE = "ok", "MISSING", "note"
MIN_PYTHON = (3, 11)
RUN_BYTES = 400 * 2**20
"""Disk per run still to train: best.pt and last.pt of the larger model (IFN: 137 MB each),
and its MLflow artifacts."""
UNKNOWN_ARCHIVE_BYTES = 3 * 2**30
"""Assumed size of an archive whose size is not published (CDD's RAR: about 2.6 GB)."""
PREPARE_FACTOR = 3
"""Disk per byte of archive still to prepare: the archive, its extraction, the prepared copy."""
RAR_TOOLS = ("bsdtar", "unar")
"""The RAR extractors benchmark/data/extract.py tries, either is enough."""
WEIGHTS_FOR_MODEL = {"bsfnet": "RESNET50", "ifn": "VGG16"}
"""Which ImageNet weight file of benchmark/models/weights.py each model's encoder loads."""


@dataclass(frozen=True)
class Check:
    """One line of the doctor's output."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"\n{'':9}fix: {self.fix}" if self.fix else ""
        return f"{self.status:<8} {self.name}: {self.detail}{fix}"


def chosen_experiments(
    params: Params, experiments: Sequence[str] = (), datasets: Sequence[str] = ()
) -> list[str]:
    """The experiments to check: those named, or those on the datasets named, else all.

    Raises:
        CdbenchError: an experiment params.yaml does not define, or no experiment left.
    """
    for name in experiments:
        params.experiment(name)  # a ConfigError lists the defined ones
    chosen = [
        name
        for name, experiment in params.experiments.items()
        if (not experiments or name in experiments)
        and (not datasets or experiment.dataset in datasets)
    ]
    if not chosen:
        raise CdbenchError(
            f"no experiment of params.yaml matches --experiment {list(experiments)} and "
            f"--dataset {list(datasets)}"
        )
    return chosen


def diagnose(params: Params, experiments: Sequence[str], root: Path = Path(".")) -> list[Check]:
    """Every check for `experiments` (names of params.yaml), run from the repository `root`;
    the disk a run needs is counted for the runs not trained yet (no
    `root/checkpoints/<run>/summary.json`)."""
    chosen = [params.experiments[name] for name in experiments]
    datasets = list(dict.fromkeys(e.dataset for e in chosen))
    models = sorted({e.model for e in chosen if params.recipes[e.recipe].pretrained})
    runs = sum(
        not (root / "checkpoints" / spec.name / "summary.json").is_file()
        for spec in params.runs()
        if spec.experiment in experiments
    )
    real = [name for name in datasets if DATASETS[name].archives]
    checks = [check_python(), check_torch()]
    checks += [check_weights(model, Path(params.data.weights_dir)) for model in models]
    checks += [check_dataset(params, name) for name in datasets]
    checks.append(check_extractor(params, real))
    checks.append(check_disk(params, real, runs, root))
    checks.append(check_gpu(params.runtime.device, real))
    checks.append(check_mlflow(root))
    checks.append(check_dvc(root))
    return checks


def check_python() -> Check:
    version = ".".join(str(part) for part in sys.version_info[:3])
    if sys.version_info[:2] < MIN_PYTHON:
        return Check(
            "python", MISSING, f"{version}, expected >= 3.11", "use Python 3.11 (`make .venv`)"
        )
    return Check("python", OK, f"{version} ({sys.executable})")


def check_torch() -> Check:
    try:
        torch_version = metadata.version("torch")
        vision_version = metadata.version("torchvision")
    except metadata.PackageNotFoundError as exc:
        return Check(
            "torch", MISSING, f"{exc.name} is not installed", "`make .venv` (pip install -e .)"
        )
    return Check("torch", OK, f"torch {torch_version}, torchvision {vision_version}")


def check_weights(model: str, folder: Path) -> Check:
    """The ImageNet weight file `model`'s encoder loads, present with the hash its name
    carries."""
    from benchmark.models import weights

    file: weights.WeightFile = getattr(weights, WEIGHTS_FOR_MODEL[model])
    path = file.path(folder)
    name = f"weights ({model})"
    fix = f"`{weights.FETCH_COMMAND}` (or put {file.url} in {folder}/)"
    if not path.is_file():
        return Check(name, MISSING, f"{path} not found ({file.source})", fix)
    try:
        weights.verify_file(path, file)
    except CdbenchError:
        return Check(
            name,
            MISSING,
            f"{path}: SHA-256 does not start with {file.sha256_prefix} (damaged)",
            f"delete it, then {fix}",
        )
    return Check(name, OK, f"{path} (SHA-256 {file.sha256_prefix}...)")


def check_dataset(params: Params, name: str) -> Check:
    """Prepared (its manifest), or ready to prepare (every archive downloaded)."""
    dataset = DATASETS[name]
    prepared = params.data.prepared(name)
    label = f"dataset {name}"
    if (prepared / "manifest.json").is_file():
        return Check(label, OK, f"prepared in {prepared}")
    if not dataset.archives:
        return Check(
            label, NOTE, f"not generated yet ({prepared}); `dvc repro {dataset.stage}` makes it"
        )
    raw = params.data.raw(name)
    absent = [a.filename for a in dataset.archives if not (raw / a.filename).is_file()]
    if not absent:
        return Check(
            label, OK, f"archives in {raw}, not prepared yet (`dvc repro {dataset.stage}`)"
        )
    return Check(
        label,
        MISSING,
        f"not prepared ({prepared}) and {', '.join(absent)} not in {raw}",
        f"`dvc repro download@{name}` (or `cdbench download {name}`; offline, put the files "
        f"in {raw}/)",
    )


def check_extractor(params: Params, datasets: Sequence[str]) -> Check:
    """bsdtar or unar, needed to prepare a dataset shipped as RAR that is not prepared yet."""
    found = [tool for tool in RAR_TOOLS if shutil.which(tool)]
    needing = [
        name
        for name in datasets
        if any(a.filename.lower().endswith(".rar") for a in DATASETS[name].archives)
        and not (params.data.prepared(name) / "manifest.json").is_file()
    ]
    if found:
        return Check("RAR extractor", OK, ", ".join(shutil.which(t) or t for t in found))
    if not needing:
        return Check("RAR extractor", NOTE, "none (bsdtar, unar); no dataset to prepare needs one")
    return Check(
        "RAR extractor",
        MISSING,
        f"neither bsdtar nor unar found; {', '.join(needing)} ships as RAR",
        "`sudo apt-get install unar libarchive-tools`",
    )


def disk_needed(params: Params, datasets: Sequence[str], runs: int) -> int:
    """Bytes still to write: each unprepared dataset's archives (sizes as published, else
    UNKNOWN_ARCHIVE_BYTES) times PREPARE_FACTOR (one less for those downloaded already), plus
    RUN_BYTES for each of `runs` runs still to train."""
    needed = runs * RUN_BYTES
    for name in datasets:
        if (params.data.prepared(name) / "manifest.json").is_file():
            continue
        for archive in DATASETS[name].archives:
            size = archive.size or UNKNOWN_ARCHIVE_BYTES
            downloaded = (params.data.raw(name) / archive.filename).is_file()
            needed += size * (PREPARE_FACTOR - 1 if downloaded else PREPARE_FACTOR)
    return needed


def check_disk(params: Params, datasets: Sequence[str], runs: int, root: Path) -> Check:
    free = shutil.disk_usage(root).free
    needed = disk_needed(params, datasets, runs)
    detail = f"{free / 2**30:.1f} GiB free in {root.resolve()}, {needed / 2**30:.1f} GiB needed"
    if free < needed:
        return Check(
            "disk", MISSING, detail, "free space, or point data.raw_dir/prepared_dir elsewhere"
        )
    return Check("disk", OK, detail)


def check_gpu(device: str, real: Sequence[str]) -> Check:
    """A CUDA GPU: required when runtime.device names one, advised for the real datasets."""
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return Check("GPU", OK, f"{len(names)} CUDA device(s): {', '.join(names)}")
    if device.startswith("cuda"):
        return Check(
            "GPU",
            MISSING,
            f"runtime.device is {device!r} but CUDA is not available",
            "run on a GPU machine, or set runtime.device: auto in params.yaml",
        )
    if real:
        return Check("GPU", NOTE, "no CUDA GPU: the real recipes would train for days on the CPU")
    return Check("GPU", NOTE, "no CUDA GPU: runs use the CPU (the demo is sized for it)")


def check_mlflow(root: Path) -> Check:
    """The tracking store: a server answering /health, or a SQLite file that opens (or a
    folder where one can be created; cdbench creates or upgrades its schema on first use)."""
    from benchmark.tracking import sqlite_path, tracking_uri

    try:
        uri = tracking_uri(root)
    except CdbenchError as exc:
        return Check("MLflow store", MISSING, str(exc), "run inside the repository")
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as answer:
                status = answer.status
        except OSError as exc:
            status, reason = 0, str(exc)
        if status == 200:
            return Check("MLflow store", OK, f"server {uri} answers")
        return Check(
            "MLflow store",
            MISSING,
            f"server {uri} does not answer ({status or reason})",
            "start it (docs/cluster.md), or unset MLFLOW_TRACKING_URI for the local database",
        )
    db = sqlite_path(uri)
    if db is None:
        return Check("MLflow store", OK, f"{uri} (not checked: not SQLite or a server)")
    if not db.exists():
        folder = next(p for p in (db.parent, *db.parent.parents) if p.exists())
        if os.access(folder, os.W_OK):
            return Check("MLflow store", OK, f"{db} will be created by the first run")
        return Check("MLflow store", MISSING, f"{folder} is not writable", "fix its permissions")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except (sqlite3.Error, TypeError) as exc:
        return Check(
            "MLflow store",
            MISSING,
            f"{db} is not an MLflow database ({exc})",
            f"move {db} aside; the next run creates a new one",
        )
    return Check("MLflow store", OK, f"{db} (schema {revision}; upgraded on first use when older)")


def check_dvc(root: Path) -> Check:
    try:
        version = metadata.version("dvc")
    except metadata.PackageNotFoundError:
        return Check(
            "DVC", MISSING, "dvc is not installed", "`make .venv` (pip install dvc==3.67.1)"
        )
    if not (root / ".dvc").is_dir():
        return Check(
            "DVC", MISSING, f"dvc {version}, but {root.resolve()} has no .dvc", "`dvc init`"
        )
    return Check("DVC", OK, f"dvc {version}")


def format_checks(checks: Sequence[Check]) -> str:
    missing = sum(check.status == MISSING for check in checks)
    verdict = "everything needed is here" if not missing else f"{missing} missing"
    return "\n".join([*(check.line() for check in checks), verdict])
