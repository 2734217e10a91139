"""What a run shows in the MLflow UI at a glance: headline metrics, source tags, descriptions.

MLflow's runs table and compare view list metrics by name, so the figures a reader compares
first get short names that sort before every other metric (`HEADLINE`); the confusion counts,
which MLflow would draw as single-bar charts, are kept out of the metrics (`confusion_counts`,
logged as a JSON artifact). The standard `mlflow.source.*` tags fill the runs table's Source
column (`source_tags`; MLflow's `mlflow/utils/mlflow_tags.py` names them), and
`mlflow.note.content` on an experiment is the description its page shows
(`experiment_description`). MLflow's runs table shows no metric column until a reader ticks one,
and remembers that per browser; a shared view state (an experiment tag
`mlflow.sharedViewState.<key>` that the UI loads from `?viewStateShareKey=<key>`, MLflow's
`mlflow/server/js/src/experiment-tracking` shared-view hook) opens it with the headline columns
ticked (`headline_view`, `headline_view_link`). docs/mlflow.md lists every name.

Every rate a reader compares (F1, IoU, precision, recall, OA, kappa, and the selection score,
which is one of them) is logged in percent, the unit of the report's tables and
reports/metrics/*.json, at full float precision (`percent`); losses, learning rates,
thresholds, speeds and epochs keep their own units. The metrics files keep fractions.
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

HEADLINE: dict[str, str] = {
    "f1": "val_threshold/f1",
    "iou": "val_threshold/iou",
    "f1_fixed": "fixed/f1",
    "iou_fixed": "fixed/iou",
    "f1_whole": "whole_val_threshold/f1",
    "iou_whole": "whole_val_threshold/iou",
    "f1_fixed_whole": "whole_fixed/f1",
    "iou_fixed_whole": "whole_fixed/iou",
}
"""Headline metric -> the metrics-file figure it repeats (benchmark/evaluation/evaluate.py):
F1 and IoU on the test split at the validation-chosen threshold (`f1`, `iou`) and at the
source's fixed threshold (`*_fixed`); `*_whole` on LEVIR-CD's whole images. A run logs those
its metrics file holds."""

RATE_FIGURES = ("precision", "recall", "f1", "iou", "oa", "kappa")
"""The figures of each test protocol that are rates (`Counts.scores`,
benchmark/evaluation/metrics.py): logged in percent."""

SELECTION_RATE_FIGURES = (
    "f1",
    "iou",
    "precision",
    "recall",
    "max_f1",
    "miou",
    "selection",
    "best_selection",
)
"""The rates of a training run's validation record (`selection_score`,
benchmark/evaluation/predict.py): logged in percent. `selection` and `best_selection` are the
recipe's `selection_metric`, which is f1, max_f1 or miou (benchmark/config.py), all rates;
`max_f1_threshold` is a threshold and keeps its unit."""

COUNT_FIGURES = ("tp", "fp", "fn", "tn")
"""The pooled confusion counts of each protocol: a JSON artifact, never metrics."""

COUNTS_ARTIFACT = "evaluation/counts.json"
"""Where a run's confusion counts are logged: {protocol: {threshold, tp, fp, fn, tn}}."""

NOTE_TAG = "mlflow.note.content"
"""The run's or experiment's description in the MLflow UI (markdown)."""

KIND_TAG = "mlflow.experimentKind"
KIND_TRAINING = "custom_model_development"
"""An experiment of this kind opens on MLflow's model-training views (runs, metrics charts),
not its GenAI ones (traces, evaluations)."""


VIEW_KEY = "headline"
"""The shared view state of an experiment's runs table with the headline columns ticked."""

VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
"""The experiment tag that holds it (MLflow's UI reads `mlflow.sharedViewState.<key>`)."""


def headline_view(whole: bool) -> str:
    """The headline view of a training experiment's runs table, as MLflow's UI stores a shared
    view (JSON of its view state): the UI's default columns (Dataset, Source, Models), then the
    metrics f1, iou, f1_fixed, iou_fixed (and the `*_whole` ones on a dataset with whole
    images), sorted by f1, best first. Columns are named as the UI's sort keys,
    `<attributes|metrics>.`<name>``."""
    names = [name for name in HEADLINE if whole or not name.endswith("_whole")]
    state = {
        "selectedColumns": [f"attributes.`{name}`" for name in ("Dataset", "Source", "Models")]
        + [f"metrics.`{name}`" for name in names],
        "orderByKey": "metrics.`f1`",
        "orderByAsc": False,
    }
    return json.dumps(state)


LOCAL_UI = "http://127.0.0.1:5000"
"""Where `mlflow ui` serves a local store by default."""


def ui_address(uri: str) -> str:
    """The MLflow UI of tracking URI `uri`: the tracking server itself (http/https), else
    `LOCAL_UI` (a database or folder store, which `mlflow ui` serves)."""
    return uri if uri.startswith(("http://", "https://")) else LOCAL_UI


def headline_view_link(experiment_id: str, ui: str) -> str:
    """The address of an experiment's runs table in the headline view, on the MLflow UI at
    `ui` (`ui_address`)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def percent(fraction: float) -> float:
    """A rate in percent, unrounded (0.6923 -> 69.23): the unit of every table of the report."""
    return 100.0 * float(fraction)


def evaluation_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The MLflow metrics of an evaluation: the `HEADLINE` figures, then `test/<protocol>/
    <figure>` for every number of the metrics file but the confusion counts; the
    `RATE_FIGURES` in percent, thresholds as they are.

    Example: `{"fixed/f1": 0.5, "fixed/threshold": 0.5, "fixed/tp": 10}` -> `{"f1_fixed": 50.0,
    "test/fixed/f1": 50.0, "test/fixed/threshold": 0.5}`.
    """
    numbers = {
        key: percent(value) if key.rsplit("/", 1)[1] in RATE_FIGURES else float(value)
        for key, value in metrics.items()
        if "/" in key and isinstance(value, int | float) and not isinstance(value, bool)
    }
    headline = {name: numbers[key] for name, key in HEADLINE.items() if key in numbers}
    rest = {
        f"test/{key}": value
        for key, value in numbers.items()
        if key.rsplit("/", 1)[1] not in COUNT_FIGURES
    }
    return {**headline, **rest}


def training_metrics(record: Mapping[str, float]) -> dict[str, float]:
    """The MLflow copy of a training record (benchmark/training/loop.py: `train/*` and the
    selection split's `<split>/<figure>`): the `SELECTION_RATE_FIGURES` of the selection split
    in percent, everything else (loss, lr, pairs/s, epoch, max_f1_threshold) as it is. The
    record itself, kept in the checkpoint's history and summary.json, is not changed.

    Example: `{"train/loss": 0.3, "val/f1": 0.5}` -> `{"train/loss": 0.3, "val/f1": 50.0}`.
    """
    return {
        key: percent(value)
        if not key.startswith("train/") and key.rsplit("/", 1)[-1] in SELECTION_RATE_FIGURES
        else float(value)
        for key, value in record.items()
    }


def confusion_counts(metrics: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Each protocol's threshold and pooled counts from a metrics file: the `COUNTS_ARTIFACT`.

    Example: `{"fixed/threshold": 1.0, "fixed/tp": 10, ...}` -> `{"fixed": {"threshold": 1.0,
    "tp": 10, ...}}`.
    """
    counts: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        protocol, _, figure = key.rpartition("/")
        if protocol and figure in (*COUNT_FIGURES, "threshold"):
            counts.setdefault(protocol, {})[figure] = value
    return counts


def source_tags(entry: str, commit: str) -> dict[str, str]:
    """MLflow's standard source tags for a run started by the command `entry` (e.g.
    "cdbench train") at `commit` (`git_commit`'s answer; a "-dirty" mark is dropped from the
    commit tag, the `git_commit` tag keeps it). "unknown" sets no commit tag."""
    tags = {
        "mlflow.source.name": entry,
        "mlflow.source.type": "LOCAL",
        "mlflow.user": getpass.getuser(),
    }
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    return tags


def experiment_description(experiment: str) -> str:
    """The description of a cdbench MLflow experiment (`cdbench-<dataset>`, `cdbench-report`)."""
    if experiment == "cdbench-report":
        return (
            "One run per `cdbench report`: the comparison tables and figures as artifacts, the "
            "mean test F1 (percent) per experiment and protocol as metrics, and the verdict of "
            "`cdbench check` (tags `check.*`, artifact `check/check.json`). Named "
            "`report-<profile>-<date>`. See docs/mlflow.md."
        )
    dataset = experiment.removeprefix("cdbench-")
    return (
        f"Training and evaluation runs on the {dataset} dataset, one per experiment and seed "
        "(run name `<model>-<loss>-<dataset>[-s<seed>]`). Headline metrics, in percent: f1, iou "
        "(test split, threshold chosen on validation) and f1_fixed, iou_fixed (the source's "
        "fixed threshold); `test/<protocol>/*` holds every figure, train/* and val/* the curves. "
        "F1, IoU, precision, recall, OA, kappa and the selection score are in percent "
        "everywhere; losses, learning rates and thresholds in their own units. "
        "evaluation/counts.json holds the confusion counts. Each evaluated run's selected "
        "checkpoint is a registered model `<experiment>-s<seed>` (its sha256 in the version's "
        "tags). "
        "See docs/mlflow.md."
    )


def model_name(experiment: str, seed: int) -> str:
    """The registered model of a trained run's selected checkpoint, e.g.
    "bsfnet-bce-synthetic-s0"."""
    return f"{experiment}-s{seed}"


def report_profile(datasets: set[str]) -> str:
    """The report's profile, as `cdbench check --profile` names them: "demo" for the
    synthetic data alone, else "full"."""
    return "demo" if datasets == {"synthetic"} else "full"


def report_run_name(profile: str, day: date) -> str:
    """The report run's name, e.g. "report-demo-2026-11-30"."""
    if not re.fullmatch(r"[a-z]+", profile):
        raise ValueError(f"report profile {profile!r}: expected a lowercase word (demo, full)")
    return f"report-{profile}-{day.isoformat()}"
