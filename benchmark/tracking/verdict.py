"""Attach `cdbench check`'s verdict to the MLflow run of the report it checked.

`cdbench report` records one run in the `cdbench-report` experiment, tagged `reports_dir`
(the absolute reports folder it wrote); `cdbench check` runs afterwards on the same folder, so
it finds the newest report run of that folder and adds its verdict: tags `check.verdict`
("pass" or "fail") and `check.profile`, and check.json as the artifact `check/check.json`.
A store that does not exist yet, or holds no report of that folder, is left untouched.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.tracking.location import sqlite_path, tracking_uri
from benchmark.tracking.recorder import RunTracker, TrackingUnavailable

REPORT_EXPERIMENT = "cdbench-report"
REPORTS_DIR_TAG = "reports_dir"
"""The report run's tag naming the reports folder it wrote (absolute)."""


def latest_report_run(reports: Path, uri: str) -> tuple[str, str] | None:
    """The (run id, run name) of the newest report run of the folder `reports` in `uri`, or
    None (no such store, experiment or run)."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        return None
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(REPORT_EXPERIMENT)
    if experiment is None:
        return None
    folder = str(reports.resolve()).replace("'", "\\'")
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.{REPORTS_DIR_TAG} = '{folder}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        return None
    return found[0].info.run_id, found[0].info.run_name or ""


def attach_check(passed: bool, profile: str, check_file: Path, reports: Path) -> str | None:
    """Tag the newest report run of `reports` with the verdict and log `check_file`; returns
    its run id, or None when there is none (or the store failed: a warning says so)."""
    uri = tracking_uri()
    try:
        found = latest_report_run(reports, uri)
        if found is None:
            return None
        run_id, name = found
        with RunTracker(experiment=REPORT_EXPERIMENT, run_name=name, tags={}, run_id=run_id) as run:
            run.set_tags({"check.verdict": "pass" if passed else "fail", "check.profile": profile})
            run.log_artifact(check_file, "check")
    except TrackingUnavailable as error:
        print(f"warning: {error}; the check's verdict is not in MLflow", file=sys.stderr)
        return None
    return run_id
