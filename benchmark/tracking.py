"""Record every training and evaluation run in MLflow, in the real repository.

Where runs go
    `MLFLOW_TRACKING_URI` from the environment wins; otherwise runs go to the absolute
    `sqlite:////<repo root>/mlflow.db` and their artifacts to `<repo root>/mlruns/<experiment>/`.
    An absolute URI matters because `dvc exp run --queue` + `dvc queue start` run every
    experiment in a temporary copy of the repository that is deleted afterwards; MLflow's own
    default (`sqlite:///mlflow.db` and `./mlruns` relative to the working directory) would
    record the runs inside that copy and lose them.

The DVC queue layout, checked with dvc 3.67.1 on a scratch git+dvc repository (`dvc exp run
--queue`, `dvc queue start -j 1`, a stage whose command wrote `pwd`, `ls -la` and its
environment to a file outside the repository):
    - the stage ran in `<real repo>/.dvc/tmp/exps/tmp<random>/` (e.g. `tmpmsf227zc`), a full
      copy holding its own `.dvc/` and `.git/` folders (a directory, not a worktree file);
    - the folder was gone once `dvc queue status` reported `Success`;
    - DVC sets `DVC_ROOT=<real repo>` in the stage's environment (and `DVC_EXP_NAME`,
      `DVC_EXP_BASELINE_REV`); `repo_root` does not rely on it, so a command started by hand
      inside such a copy resolves the same way.
    So `repo_root` walks up to the first folder holding `.dvc` or `.git` and, when that folder
    lies inside `<X>/.dvc/tmp/exps/`, answers `<X>`.

Artifacts follow the database: when the URI is a SQLite database named `mlflow.db` directly
in a repository root (the default, or the same thing given explicitly), each experiment is
created with the absolute artifact location `<root>/mlruns/<experiment>`. Any other URI (a
server, another database) keeps that backend's default artifact location.

Checked against mlflow 3.17.2 (`mlflow/store/db/utils.py`, `mlflow/db.py`,
`mlflow/store/tracking/sqlalchemy_store.py`, `mlflow/system_metrics/system_metrics_monitor.py`,
`mlflow/tracking/fluent.py`):
    - Several processes creating a fresh SQLite database at once crash (alembic "table already
      exists", mlflow#19943). `prepare_tracking` creates or upgrades it once under an
      `fcntl.flock` on `<db>.lock`, with the same calls as `mlflow db upgrade`, then builds a
      `SqlAlchemyStore`, which creates the `Default` experiment with an absolute artifact root.
      Measured on 2 cores: about 6 s on a fresh database (the alembic migrations), about 0.1 s
      on an existing one; `mlflow db upgrade` in a subprocess took 12 s and 5 s.
    - `RunTracker` uses `MlflowClient` only, so no fluent "active run" is left behind and
      several trackers can live in one process. `SystemMetricsMonitor` takes a run id and a
      tracking URI, so it works with a client-made run; it stops when the tracker finishes.
    - A param logged again with the same value is accepted; a different value is refused
      ("Changing param values is not allowed"), which `log_params` reports as a `CdbenchError`.

A tracking hiccup never costs a training run. Every call to the store is retried with backoff
(`RETRY_DELAYS_S`) when it fails for a transient reason (`_transient`: a locked SQLite
database, which MLflow reports as TEMPORARILY_UNAVAILABLE once its 20 s busy timeout has
passed, an unreachable server). Metrics, params and tags that still cannot be logged stay in
the tracker's pending queue (a warning says so) and are logged with the next call that
succeeds or at `finish`; `pending_state` / `restore_pending` let the training loop keep them
in its checkpoint, so that they are logged on resume. Once a call has used up its retries,
later calls make one attempt each until one succeeds, so that a long outage slows training by
one store timeout per logging point, not a whole backoff. Errors that retrying cannot fix (an
invalid value, a deleted run) are raised.

mlflow is imported inside the functions that need it: importing it takes 2-4 s, which
`cdbench --help` and commands that track nothing should not pay.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from benchmark.errors import CdbenchError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlruns"
DVC_EXPS_PARTS = (".dvc", "tmp", "exps")
"""Where DVC puts the temporary copies of the repository it runs queued experiments in."""
END_STATUSES = ("FINISHED", "FAILED", "KILLED")
TRUNCATION_MARKER = "...[truncated]"
TABLE_TAGS = ("model", "loss", "dataset", "recipe", "seed", "stale_checkpoint")
"""Tags shown by `runs_table`, in this order, after the run name and status
(`stale_checkpoint`: "true" when `cdbench evaluate --allow-stale-checkpoint` scored a
checkpoint of another configuration, "false" once evaluated normally)."""

_PREPARED: set[str] = set()
"""Tracking URIs already prepared by this process."""

RETRY_DELAYS_S: tuple[float, ...] = (1.0, 2.0, 4.0)
"""Pauses before the 2nd, 3rd, ... attempt of a tracking call that failed for a transient
reason (each SQLite attempt itself waits up to MLflow's 20 s busy timeout)."""
TRANSIENT_ERROR_CODES = frozenset(
    {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
)
"""MlflowException codes worth retrying: a locked or busy database (the SQL store's
TEMPORARILY_UNAVAILABLE), a server that failed or timed out (the REST client's default
INTERNAL_ERROR)."""

_T = TypeVar("_T")


# --- where ---------------------------------------------------------------------------------


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
        (folder for folder in (here, *here.parents) if _holds_repo_marker(folder)),
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


def _holds_repo_marker(folder: Path) -> bool:
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
    if not _holds_repo_marker(root):
        return None
    return root / ARTIFACT_DIR


def experiment_artifact_location(uri: str, experiment: str) -> str | None:
    """The absolute artifact folder for a new experiment, or None for the backend default."""
    root = artifact_root(uri)
    if root is None:
        return None
    return str(root / re.sub(r"[^A-Za-z0-9._-]", "_", experiment))


# --- the database ---------------------------------------------------------------------------


def prepare_tracking(uri: str) -> None:
    """Make `uri` ready for runs; safe when several processes call it at once.

    Turns MLflow's telemetry off (`MLFLOW_DISABLE_TELEMETRY`, `DO_NOT_TRACK`, unless set).
    For a SQLite URI, creates the database's folder and creates or upgrades its schema under
    an exclusive `fcntl.flock` on `<db>.lock`, then creates MLflow's `Default` experiment with
    an absolute artifact root. Other URIs (a server) need nothing more. Done once per process
    and URI.

    Args:
        uri: The tracking URI (see `tracking_uri`).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    db = sqlite_path(uri)
    if db is None or uri in _PREPARED:
        return

    from mlflow.store.db import utils as db_utils
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    root = artifact_root(uri)
    with _exclusive_lock(db.with_name(db.name + ".lock")):
        # What `mlflow db upgrade` does, skipped when the schema is already current.
        engine = db_utils.create_sqlalchemy_engine_with_retry(uri)
        try:
            if db_utils._is_empty_database(engine):
                db_utils._initialize_tables(engine)
            elif db_utils._get_schema_version(engine) != db_utils._get_latest_schema_revision():
                db_utils._upgrade_db(engine)
        finally:
            engine.dispose()
        # Creates the Default experiment (when missing) and checks the schema.
        SqlAlchemyStore(uri, str(root) if root else DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
    _PREPARED.add(uri)


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- retries -------------------------------------------------------------------------------


def _transient(error: Exception) -> bool:
    """Whether retrying may fix `error`: an MlflowException of a `TRANSIENT_ERROR_CODES` code,
    or an OS-level error (a connection refused or reset, a timeout)."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        return error.error_code in TRANSIENT_ERROR_CODES
    return isinstance(error, OSError)


def _first_line(error: Exception, limit: int = 200) -> str:
    lines = str(error).strip().splitlines()
    return _truncate(lines[0] if lines else type(error).__name__, limit)


class TrackingUnavailable(CdbenchError):
    """The tracking store kept failing for a transient reason through every retry."""


# --- runs ----------------------------------------------------------------------------------


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings (and dataclasses) to dotted keys with text values.

    Lists and tuples become JSON text; an empty mapping becomes "{}"; values longer than
    MLflow's param limit are cut and end with `TRUNCATION_MARKER`.

    Example: `{"a": {"b": 1, "c": [1, 2]}}` -> `{"a.b": "1", "a.c": "[1, 2]"}`.
    """
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{name}."))
            continue
        if isinstance(value, Mapping):
            text = "{}"
        elif isinstance(value, list | tuple):
            text = json.dumps(list(value), default=str)
        else:
            text = str(value)
        flat[name] = _truncate(text, MAX_PARAM_VAL_LENGTH)
    return flat


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


class RunTracker:
    """One MLflow run, made or resumed with `MlflowClient` (no global active run).

    Use as a context manager: leaving the block finishes the run as FINISHED, as KILLED on
    KeyboardInterrupt, and as FAILED on any other exception (which is not swallowed).

    Args:
        experiment: MLflow experiment name (one per dataset, e.g. "cdbench-synthetic"); created
            when missing, with an absolute artifact location (see `artifact_root`).
        run_name: The run's name (e.g. the cdbench experiment name "bsfnet-sisb-cdd").
        tags: Tags set on the run (updated when resuming).
        run_id: Resume this run (same id, status back to RUNNING) instead of making a new one.
        uri: Tracking URI; `tracking_uri()` when None.
        system_metrics: Log CPU, memory, disk and network use (GPU with nvidia-ml-py) under
            `system/` every `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` seconds (10 by default).
        enabled: False (non-zero DDP ranks) makes every method a no-op; `run_id` is then None.
        retry_delays_s: Pauses between attempts of a call that fails for a transient reason;
            `RETRY_DELAYS_S` when None.

    Metrics, params and tags that cannot be logged after the retries wait in a pending queue
    (see the module docstring): `pending_count`, `flush`, `pending_state`, `restore_pending`.

    Raises:
        CdbenchError: The experiment is deleted, or `run_id` is not a run of `experiment`.
        TrackingUnavailable: The store failed through every retry while making or resuming
            the run (nothing has been logged that could be lost).
    """

    def __init__(
        self,
        *,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str],
        run_id: str | None = None,
        uri: str | None = None,
        system_metrics: bool = False,
        enabled: bool = True,
        retry_delays_s: Sequence[float] | None = None,
    ) -> None:
        self.run_id: str | None = None
        self.enabled = enabled
        self._finished = False
        self._delays = None if retry_delays_s is None else tuple(retry_delays_s)
        self._failing = False  # the last call used up its retries: next ones try once
        self._pending_params: list[Any] = []  # mlflow.entities.Param
        self._pending_tags: list[Any] = []  # mlflow.entities.RunTag
        self._pending_metrics: list[Any] = []  # mlflow.entities.Metric
        self._monitor: SystemMetricsMonitor | None = None
        if not enabled:
            return

        from mlflow import MlflowClient

        self.uri = uri if uri is not None else tracking_uri()
        prepare_tracking(self.uri)
        self._client: MlflowClient = MlflowClient(self.uri)
        self.experiment_id = self._experiment_id(experiment)
        if run_id is None:
            run = self._call(
                "create the run",
                lambda: self._client.create_run(
                    self.experiment_id,
                    run_name=run_name,
                    tags={k: str(v) for k, v in tags.items()},
                ),
            )
            self.run_id = run.info.run_id
        else:
            self.run_id = self._resume(run_id, experiment, run_name)
            self.set_tags(tags)
        if system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(
                self.run_id, resume_logging=run_id is not None, tracking_uri=self.uri
            )
            self._monitor.start()

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self._call(
            f"read experiment {name!r}", lambda: self._client.get_experiment_by_name(name)
        )
        if found is None:
            try:
                return self._call(
                    f"create experiment {name!r}",
                    lambda: self._client.create_experiment(
                        name, artifact_location=experiment_artifact_location(self.uri, name)
                    ),
                )
            except MlflowException:
                # Another process created it first.
                found = self._client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise CdbenchError(
                f"MLflow experiment {name!r} ({self.uri}) is deleted: restore it with "
                f"`mlflow experiments restore --experiment-id {found.experiment_id}` or remove "
                "it for good with `mlflow gc`"
            )
        return found.experiment_id

    def _resume(self, run_id: str, experiment: str, run_name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            run = self._call(f"read run {run_id}", lambda: self._client.get_run(run_id))
        except MlflowException as error:
            raise CdbenchError(
                f"cannot resume MLflow run {run_id!r}: it is not in {self.uri} ({error})"
            ) from error
        if run.info.experiment_id != self.experiment_id:
            raise CdbenchError(
                f"cannot resume MLflow run {run_id!r} in experiment {experiment!r}: it belongs "
                f"to experiment id {run.info.experiment_id}, expected {self.experiment_id}"
            )
        self._call(
            f"resume run {run_id}",
            lambda: self._client.update_run(run_id, status="RUNNING", name=run_name),
        )
        return run_id

    def _call(self, what: str, action: Callable[[], _T]) -> _T:
        """`action()`, tried again after each of the retry delays while it fails for a
        transient reason (one attempt only while the store is known to be failing).

        Raises:
            TrackingUnavailable: Every attempt failed for a transient reason.
            Exception: The first error that retrying cannot fix, as raised.
        """
        delays = self._delays if self._delays is not None else RETRY_DELAYS_S
        pauses: list[float | None] = [*([] if self._failing else delays), None]
        for attempt, pause in enumerate(pauses, start=1):
            try:
                result = action()
            except Exception as error:
                if not _transient(error):
                    raise
                if pause is None:
                    self._failing = True
                    raise TrackingUnavailable(
                        f"MLflow ({self.uri}): could not {what} after {attempt} attempt(s) "
                        f"({_first_line(error)})"
                    ) from error
                time.sleep(pause)
            else:
                self._failing = False
                return result
        raise AssertionError("unreachable: the last pause is None")

    @property
    def pending_count(self) -> int:
        """Metrics, params and tags waiting to be logged."""
        return len(self._pending_params) + len(self._pending_tags) + len(self._pending_metrics)

    def flush(self) -> bool:
        """Log every pending record, oldest first; True when none is left. When the store
        still fails (after the retries), warn on stderr and keep the rest for later.

        Raises:
            Exception: An error that retrying cannot fix (e.g. an invalid value).
        """
        if self.run_id is None or self.pending_count == 0:
            return True
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

        run_id = self.run_id
        queues = (
            ("params", self._pending_params, MAX_PARAMS_TAGS_PER_BATCH),
            ("tags", self._pending_tags, MAX_PARAMS_TAGS_PER_BATCH),
            ("metrics", self._pending_metrics, MAX_METRICS_PER_BATCH),
        )
        try:
            for kind, queue, size in queues:
                while queue:
                    chunk = queue[:size]
                    self._call(
                        f"log {len(chunk)} {kind}",
                        lambda kind=kind, chunk=chunk: self._client.log_batch(
                            run_id, **{kind: chunk}, synchronous=True
                        ),
                    )
                    del queue[: len(chunk)]
        except TrackingUnavailable as error:
            print(
                f"warning: {error}; {self.pending_count} record(s) of run {run_id} kept, "
                f"to be logged with the next call that succeeds",
                file=sys.stderr,
            )
            return False
        return True

    def pending_state(self) -> dict[str, list[list[Any]]]:
        """The pending queue as plain lists (for a checkpoint, read back with
        `torch.load(weights_only=True)`): `restore_pending` takes it back."""
        return {
            "params": [[p.key, p.value] for p in self._pending_params],
            "tags": [[t.key, t.value] for t in self._pending_tags],
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in self._pending_metrics],
        }

    def restore_pending(self, state: Mapping[str, Sequence[Sequence[Any]]]) -> None:
        """Put records saved by `pending_state` (of an earlier process) at the head of the
        queue; they are logged by the next `flush` (every log call flushes)."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        self._pending_params[:0] = [Param(str(k), str(v)) for k, v in state.get("params", [])]
        self._pending_tags[:0] = [RunTag(str(k), str(v)) for k, v in state.get("tags", [])]
        self._pending_metrics[:0] = [
            Metric(str(k), float(v), int(t), int(step))
            for k, v, t, step in state.get("metrics", [])
        ]

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params, flattened by `flatten_params`; a key already logged with the same value
        is skipped (resuming), with a different value refused.

        Raises:
            CdbenchError: A key already holds a different value in this run.
        """
        if self.run_id is None:
            return
        from mlflow.entities import Param

        run_id = self.run_id
        try:
            existing = self._call(
                "read the run's params", lambda: self._client.get_run(run_id).data.params
            )
        except TrackingUnavailable as error:
            # Queued unchecked: MLflow itself refuses a changed value when they are logged.
            print(f"warning: {error}; params queued", file=sys.stderr)
            existing = {}
        changed = {
            key: (existing[key], value)
            for key, value in flatten_params(params).items()
            if key in existing and existing[key] != value
        }
        if changed:
            listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise CdbenchError(
                f"MLflow run {self.run_id} already holds other values for these params: "
                f"{listed}. Resume with the same configuration, or start a new run."
            )
        self._pending_params += [
            Param(k, v) for k, v in flatten_params(params).items() if k not in existing
        ]
        self.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> bool:
        """Log metric values at `step` (0 when None), appended to each metric's history.
        Returns False when they (or older pending records) wait in the queue for now."""
        if self.run_id is None:
            return True
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        self._pending_metrics += [
            Metric(key, float(value), timestamp, step if step is not None else 0)
            for key, value in metrics.items()
        ]
        return self.flush()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy a file (or a folder's contents) into the run's artifacts, under
        `artifact_path` when given.

        Raises:
            FileNotFoundError: `path` does not exist.
        """
        if self.run_id is None:
            return
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder to log as an artifact")
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write `text` as the artifact `artifact_file` (a relative path, e.g. "config.yaml")."""
        if self.run_id is None:
            return
        self._client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags on the run."""
        if self.run_id is None:
            return
        from mlflow.entities import RunTag
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        self._pending_tags += [
            RunTag(k, _truncate(str(v), MAX_TAG_VAL_LENGTH)) for k, v in tags.items()
        ]
        self.flush()

    def finish(self, status: str = "FINISHED") -> None:
        """Stop system metrics (if on), log what is pending and end the run with `status`;
        later calls do nothing. A store that still fails after the retries only warns: the
        records stay pending (`pending_count`) and the run shows RUNNING until resumed.

        Raises:
            ValueError: `status` is not FINISHED, FAILED or KILLED.
        """
        if status not in END_STATUSES:
            raise ValueError(f"run status {status!r}: expected one of {', '.join(END_STATUSES)}")
        if self.run_id is None or self._finished:
            return
        self._finished = True
        if self._monitor is not None:
            self._monitor.finish()
        self.flush()
        run_id = self.run_id
        try:
            self._call(
                f"mark run {run_id} {status}",
                lambda: self._client.set_terminated(run_id, status=status),
            )
        except TrackingUnavailable as error:
            print(f"warning: {error}; the run shows RUNNING in MLflow", file=sys.stderr)

    def __enter__(self) -> RunTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("KILLED")
        else:
            self.finish("FAILED")


# --- reading back --------------------------------------------------------------------------


def runs_table(experiments: Sequence[str] | None = None, uri: str | None = None) -> pd.DataFrame:
    """One row per run: run name, status, the `TABLE_TAGS` and every `test/...` metric.

    Args:
        experiments: MLflow experiment names; every active experiment when None.
        uri: Tracking URI; `tracking_uri()` when None.

    Returns:
        Columns `run_name`, `status`, `model`, `loss`, `dataset`, `recipe`, `seed`,
        `stale_checkpoint` (None where a run lacks the tag), then the `test/...` metrics
        sorted by name (NaN where a run lacks one); rows sorted by run name, then start time.
    """
    import mlflow
    import pandas as pd
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    uri = uri if uri is not None else tracking_uri()
    prepare_tracking(uri)
    # mlflow.search_runs reads the process-wide tracking URI: set it only for this call.
    with _use_tracking_uri(uri):
        found = mlflow.search_runs(
            experiment_names=list(experiments) if experiments is not None else None,
            search_all_experiments=experiments is None,
            output_format="pandas",
        )
    missing = pd.Series(None, index=found.index, dtype=object)
    metric_columns = sorted(c for c in found.columns if c.startswith("metrics.test/"))
    table = pd.DataFrame(
        {
            "run_name": found.get("tags.mlflow.runName", missing),
            "status": found.get("status", missing),
            **{tag: found.get(f"tags.{tag}", missing) for tag in TABLE_TAGS},
            **{c.removeprefix("metrics."): found[c] for c in metric_columns},
            "_start": found.get("start_time", missing),
        },
        index=found.index,
    )
    table = table.sort_values(["run_name", "_start"], kind="stable").drop(columns="_start")
    return table.reset_index(drop=True)


def format_runs_table(table: pd.DataFrame) -> str:
    """`runs_table` as plain text (metrics with 4 decimals, "-" where a value is missing), or
    "(no runs)" when empty."""
    if table.empty:
        return "(no runs)"
    text_columns = [c for c in ("run_name", "status", *TABLE_TAGS) if c in table.columns]
    filled = table.fillna(dict.fromkeys(text_columns, "-"))
    return filled.to_string(index=False, float_format=lambda x: f"{x:.4f}", na_rep="-")


def git_commit(root: Path) -> str:
    """`git rev-parse HEAD` in `root`, plus "-dirty" when tracked files have uncommitted
    changes; "unknown" when `root` is not in a git repository (or git is missing)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if changes else head
