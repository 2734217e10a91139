"""Record every training and evaluation run in MLflow, and read the runs back.

One module per job:
    location    where runs go: the real repository root (outside DVC's queue copies) and
                the tracking URI (`MLFLOW_TRACKING_URI`, else `<repo>/mlflow.db`)
    store       make the store ready: create or upgrade an embedded SQLite database once,
                under a file lock (the only module on MLflow's private API)
    recorder    `RunTracker`: one run's params, metrics, tags and artifacts, retried and
                queued so that a tracking outage never costs a training run
    query       `runs_table` / `format_runs_table` (`cdbench runs`)
    provenance  `git_commit`: the code's commit, "-dirty" with local changes
    glance      what the MLflow UI shows first: headline metric names, confusion counts as
                an artifact, source tags, experiment descriptions, model and report-run names
    verdict     `attach_check`: `cdbench check`'s verdict onto the report run it checked

The default store is the embedded SQLite database in the repository root; setting
`MLFLOW_TRACKING_URI=http://host:5000` sends every run of every machine to one shared
`mlflow server` instead (README, "Shared tracking and storage").
"""

from benchmark.tracking.location import (
    ARTIFACT_DIR,
    DB_FILE,
    artifact_root,
    default_tracking_uri,
    experiment_artifact_location,
    repo_root,
    sqlite_path,
    tracking_uri,
)
from benchmark.tracking.provenance import git_commit
from benchmark.tracking.query import TABLE_TAGS, format_runs_table, headline_links, runs_table
from benchmark.tracking.recorder import (
    END_STATUSES,
    TRUNCATION_MARKER,
    RunTracker,
    TrackingUnavailable,
    flatten_params,
)
from benchmark.tracking.store import prepare_tracking

__all__ = [
    "ARTIFACT_DIR",
    "DB_FILE",
    "END_STATUSES",
    "TABLE_TAGS",
    "TRUNCATION_MARKER",
    "RunTracker",
    "TrackingUnavailable",
    "artifact_root",
    "default_tracking_uri",
    "experiment_artifact_location",
    "flatten_params",
    "format_runs_table",
    "git_commit",
    "headline_links",
    "prepare_tracking",
    "repo_root",
    "runs_table",
    "sqlite_path",
    "tracking_uri",
]
