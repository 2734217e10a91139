"""Record one training or evaluation run in MLflow (`RunTracker`), never at the cost of the run.

`RunTracker` uses `MlflowClient` only, so no fluent "active run" is left behind and several
trackers can live in one process. `SystemMetricsMonitor` takes a run id and a tracking URI,
so it works with a client-made run; it stops when the tracker finishes. A param logged again
with the same value is accepted; a different value is refused ("Changing param values is not
allowed"), which `log_params` reports as a `CdbenchError`. Checked against mlflow 3.17.2
(`mlflow/tracking/client.py`, `mlflow/system_metrics/system_metrics_monitor.py`).

A tracking hiccup never costs a training run. Every call to the store is retried with backoff
(`RETRY_DELAYS_S`) when it fails for a transient reason (`_transient`: a locked SQLite
database, which MLflow reports as TEMPORARILY_UNAVAILABLE once its 20 s busy timeout has
passed; an unreachable or failing server). Metrics, params and tags that still cannot be
logged stay in the tracker's pending queue (a warning says so) and are logged with the next
call that succeeds or at `finish`; `pending_state` / `restore_pending` let the training loop
keep them in its checkpoint, so that they are logged on resume. Once a call has used up its
retries, later calls make one attempt each until one succeeds, so that a long outage slows
training by one store timeout per logging point, not a whole backoff. Errors that retrying
cannot fix (an invalid value, a deleted run) are raised.

mlflow is imported inside the functions that need it: importing it takes 2-4 s, which
`cdbench --help` and commands that track nothing should not pay.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from benchmark.errors import CdbenchError
from benchmark.tracking.location import experiment_artifact_location, tracking_uri
from benchmark.tracking.store import prepare_tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

END_STATUSES = ("FINISHED", "FAILED", "KILLED")
TRUNCATION_MARKER = "...[truncated]"

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


CONCURRENT_INSERT_MESSAGES = ("UNIQUE constraint failed", "duplicate key value violates unique")
"""How SQLite and PostgreSQL report a row inserted by another writer between MLflow's read and
its insert (an experiment tag or a dataset that two parallel runs of one store both add: MLflow's
SQL store checks, then inserts). Retrying fixes it: the retry finds the row and reuses it."""


def _transient(error: Exception) -> bool:
    """Whether retrying may fix `error`: an MlflowException of a `TRANSIENT_ERROR_CODES` code
    or one that reports a concurrent insert (`CONCURRENT_INSERT_MESSAGES`), or an OS-level
    error (a connection refused or reset, a timeout)."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        if error.error_code == "RESOURCE_ALREADY_EXISTS":
            return False  # a create that lost to another process: its caller reads the winner
        message = str(error)
        return error.error_code in TRANSIENT_ERROR_CODES or any(
            text in message for text in CONCURRENT_INSERT_MESSAGES
        )
    return isinstance(error, OSError)


def _first_line(error: Exception, limit: int = 200) -> str:
    lines = str(error).strip().splitlines()
    return _truncate(lines[0] if lines else type(error).__name__, limit)


class TrackingUnavailable(CdbenchError):
    """The tracking store kept failing for a transient reason through every retry."""


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
            when missing, with an absolute artifact location for the embedded SQLite store
            (`benchmark.tracking.location.artifact_root`), the server's own otherwise.
        run_name: The run's name (e.g. the cdbench experiment name "bsfnet-sisb-cdd").
        tags: Tags set on the run (updated when resuming).
        run_id: Resume this run (same id, status back to RUNNING) instead of making a new one.
        uri: Tracking URI; `tracking_uri()` when None.
        system_metrics: Log CPU, memory, disk and network use (GPU with nvidia-ml-py) under
            `system/` every `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` seconds (10 by default).
        enabled: False (non-zero DDP ranks) makes every method a no-op; `run_id` is then None.
        retry_delays_s: Pauses between attempts of a call that fails for a transient reason;
            `RETRY_DELAYS_S` when None.
        description: The experiment's description (`mlflow.note.content`), set with its kind
            (model training: `glance.KIND_TAG`) where the experiment has none yet, so that an
            edit made in the UI stays.
        view: The experiment's headline view (`glance.headline_view`), stored as MLflow's
            shared view state `glance.VIEW_TAG` where the experiment has none yet.

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
        description: str | None = None,
        view: str | None = None,
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
        if description is not None or view is not None:
            self._describe_experiment(description, view)
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

            self._monitor = SystemMetricsMonitor(  # type: ignore[no-untyped-call]
                self.run_id, resume_logging=run_id is not None, tracking_uri=self.uri
            )
            self._monitor.start()  # type: ignore[no-untyped-call]

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

    def _describe_experiment(self, description: str | None, view: str | None) -> None:
        """Set the experiment's description, kind and headline view where they are missing
        (see __init__)."""
        from benchmark.tracking.glance import KIND_TAG, KIND_TRAINING, NOTE_TAG, VIEW_TAG

        eid = self.experiment_id
        tags = self._call(
            "read the experiment's tags", lambda: self._client.get_experiment(eid).tags
        )
        wanted = {NOTE_TAG: description, KIND_TAG: KIND_TRAINING, VIEW_TAG: view}
        for key, value in wanted.items():
            if value is None or key in tags:
                continue

            def set_tag(key: str = key, value: str = value) -> None:
                self._client.set_experiment_tag(eid, key, value)

            self._call(f"set the experiment's {key}", set_tag)

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

                    def log_chunk(kind: str = kind, chunk: list[Any] = chunk) -> None:
                        self._client.log_batch(run_id, **{kind: chunk}, synchronous=True)

                    self._call(f"log {len(chunk)} {kind}", log_chunk)
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

    def log_dataset(
        self, name: str, digest: str, source: str, profile: Mapping[str, Any], context: str
    ) -> None:
        """Record the dataset the run reads as an MLflow dataset input (the runs table's
        Dataset column): `name` (e.g. "synthetic"), `digest` (its prepared manifest's sha256;
        MLflow keeps the first 36 characters), `source` (its folder), `profile` (shown as JSON)
        and `context` ("train", "test"). Built as `mlflow.entities.Dataset`, what
        `mlflow.data.meta_dataset.MetaDataset` logs, without reading any data."""
        if self.run_id is None:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name,
            digest=digest[:36],
            source_type="local",
            source=json.dumps({"uri": source}),
            profile=json.dumps(dict(profile)),
        )
        entry = DatasetInput(dataset, [InputTag("mlflow.data.context", context)])
        run_id = self.run_id
        self._call("log the dataset", lambda: self._client.log_inputs(run_id, [entry]))

    def log_model(
        self,
        name: str,
        checkpoint: Path,
        sha256: str,
        step: int | None,
        description: str,
        tags: Mapping[str, str],
    ) -> str | None:
        """Record a checkpoint as the run's MLflow model and register it as a new version of
        the registered model `name`, without copying it: the logged model (the run's Models
        column) carries its path and sha256, and the version's source is its file URI.
        Returns the version number (None with tracking off).

        Raises:
            TrackingUnavailable: The store failed through every retry.
        """
        if self.run_id is None:
            return None
        from mlflow.entities import LoggedModelOutput
        from mlflow.exceptions import MlflowException

        run_id, path = self.run_id, Path(checkpoint).resolve()
        model_tags = {"checkpoint": str(path), "checkpoint_sha256": sha256, **tags}
        model = self._call(
            f"log model {name}",
            lambda: self._client.create_logged_model(
                self.experiment_id,
                name=name,
                source_run_id=run_id,
                tags=model_tags,
                model_type="change-detection",
            ),
        )
        self._call(
            "finalise the model",
            lambda: self._client.finalize_logged_model(model.model_id, "READY"),
        )
        output = LoggedModelOutput(model.model_id, step if step is not None else 0)
        self._call("link the model", lambda: self._client.log_outputs(run_id, [output]))
        try:
            self._call(
                f"register model {name}",
                lambda: self._client.create_registered_model(name, description=description),
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = self._call(
            f"register a version of {name}",
            lambda: self._client.create_model_version(
                name,
                source=path.as_uri(),
                run_id=run_id,
                tags=model_tags,
                description=f"{path} (sha256 {sha256})",
                model_id=model.model_id,
            ),
        )
        return str(version.version)

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
            self._monitor.finish()  # type: ignore[no-untyped-call]
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
