"""Where runs go: the real repository root and the tracking URI.

`MLFLOW_TRACKING_URI` from the environment wins (a shared tracking server, e.g.
`http://host:5000`, or any database MLflow accepts); otherwise runs go to the absolute
`sqlite:////<repo root>/mlflow.db` and their artifacts to `<repo root>/mlruns/<experiment>/`.
An absolute URI matters because `dvc exp run --queue` + `dvc queue start` run every experiment
in a temporary copy of the repository that is deleted afterwards; MLflow's own default
(`sqlite:///mlflow.db` and `./mlruns`, relative to the working directory) would record the
runs inside that copy and lose them.

DVC's queue layout (dvc 3.67.1, `dvc/repo/experiments/executor/local.py` `TempDirExecutor`):
each queued experiment runs in `<real repo>/.dvc/tmp/exps/tmp<random>/`, a full copy holding
its own `.dvc/` and `.git/` folders, removed once the experiment has finished. DVC sets
`DVC_ROOT=<real repo>` in the stage's environment; `repo_root` does not rely on it, so a
command started by hand inside such a copy resolves the same way: it walks up to the first
folder holding `.dvc` or `.git` and, when that folder lies inside `<X>/.dvc/tmp/exps/`,
answers `<X>`.

Artifacts follow the database: when the URI is a SQLite database named `mlflow.db` directly
in a repository root (the default, or the same thing given explicitly), each experiment gets
the absolute artifact location `<root>/mlruns/<experiment>`. Any other URI (a server, another
database) keeps that backend's own artifact location (for `mlflow server`, its
`--artifacts-destination`, reached through the server).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from benchmark.errors import CdbenchError

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlruns"
DVC_EXPS_PARTS = (".dvc", "tmp", "exps")
"""Where DVC puts the temporary copies of the repository it runs queued experiments in."""


def repo_root(start: Path | None = None) -> Path:
    """The real repository root: the folder holding `.dvc` or `.git`, outside DVC's copies.

    Args:
        start: Folder to start from; the working directory when None.

    Returns:
        The first folder, from `start` upwards, that holds `.dvc` or `.git`; when it lies inside
        `<X>/.dvc/tmp/exps/` (a `dvc exp run --queue` copy), `<X>` instead.

    Raises:
        CdbenchError: Neither `start` nor any folder above it holds `.dvc` or `.git`.
    """
    here = (start if start is not None else Path.cwd()).resolve()
    found = next(
        (folder for folder in (here, *here.parents) if holds_repo_marker(folder)),
        None,
    )
    if found is None:
        raise CdbenchError(
            f"{here}: neither this folder nor any above it holds .dvc or .git; run cdbench "
            "inside the cdbench repository, or set MLFLOW_TRACKING_URI"
        )
    parts = found.parts
    n = len(DVC_EXPS_PARTS)
    for i in range(len(parts) - n + 1):
        if parts[i : i + n] == DVC_EXPS_PARTS:
            return Path(*parts[:i])
    return found


def holds_repo_marker(folder: Path) -> bool:
    """Whether `folder` is a repository root: it holds a `.dvc` folder or a `.git` entry."""
    return (folder / ".dvc").is_dir() or (folder / ".git").exists()


def default_tracking_uri(root: Path) -> str:
    """`sqlite:////<root>/mlflow.db` for an absolute `root` (four slashes: the path's own)."""
    return f"sqlite:///{root.resolve() / DB_FILE}"


def tracking_uri(start: Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set and not empty, else `default_tracking_uri(repo_root())`."""
    from_env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if from_env:
        return from_env
    return default_tracking_uri(repo_root(start))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working directory or
    absolute), or None for any other URI and for an in-memory database."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def artifact_root(uri: str) -> Path | None:
    """`<root>/mlruns` when `uri` is a SQLite `mlflow.db` directly in a repository root
    (holding `.dvc` or `.git`), else None: the backend's default artifact location is kept."""
    db = sqlite_path(uri)
    if db is None or db.name != DB_FILE:
        return None
    root = db.resolve().parent
    if not holds_repo_marker(root):
        return None
    return root / ARTIFACT_DIR


def experiment_artifact_location(uri: str, experiment: str) -> str | None:
    """The absolute artifact folder for a new experiment, or None for the backend default."""
    root = artifact_root(uri)
    if root is None:
        return None
    return str(root / re.sub(r"[^A-Za-z0-9._-]", "_", experiment))
