"""`cdbench report`: the comparison report from every evaluated run.

Reads `reports/{metrics,per_image,curves,predictions}` (written by `cdbench evaluate`; the
predictions are arrays, `<run>.npz`) and `references.yaml`; writes `reports/comparison.{md,csv,
tex}`, `reports/ablation.{csv,tex}` (benchmark/reporting/tables.py) and every picture:
`reports/figures/*.png` per dataset and `reports/figures/runs/<run>-*.png` per run
(benchmark/reporting/figures.py), and records them as artifacts of an MLflow run named
"report" (experiment `cdbench-report`), so the comparison is one click away in the MLflow UI.
Whatever runs have been evaluated are reported: the synthetic demo alone, or every experiment
after a full `dvc repro`.

Tables and figures are written into a staging folder, then published as one set, the figures
folder first and `comparison.md` last (`output_paths`; the guarantee is
`benchmark.publish.StagedOutputs`'): a reader sees the previous report or the new one, never new
tables beside a half-drawn figures folder; a report killed while publishing leaves at worst a
set without `comparison.md`. MLflow records the report once it is published.

Every metrics file is verified before anything is written (benchmark/reporting/results.py
`load_runs`: rates recomputed from the counts, identity checked against the file name and
params.yaml; per-image counts checked against the pooled ones): one that disagrees stops the
report with an error naming it, and the previous report stays as it was. Metrics files of runs
params.yaml does not list are left out and listed (`Report.ignored`). An experiment with fewer
evaluated seeds than params.yaml lists, or with a run scored from a stale checkpoint, is
reported with that caveat in its rows (`seeds` "1 of 3", a mark on F1, and a "Caveats"
section); `cdbench check` is where such rows fail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import DataError
from benchmark.publish import StagedOutputs
from benchmark.reporting.paired import ablation_tests
from benchmark.reporting.references import Reference, load_references
from benchmark.reporting.results import (
    RESAMPLES,
    ExpectedRuns,
    load_runs,
    stray_files,
    summarise,
    unmatched,
)
from benchmark.reporting.tables import (
    ABLATION_BASE,
    ABLATION_LOSSES,
    ABLATION_PROTOCOL,
    TABLE_FILES,
    Baseline,
    add_per_seed,
    write_tables,
)

REPORT_EXPERIMENT = "cdbench-report"
"""The MLflow experiment holding one run per `cdbench report`."""


@dataclass(frozen=True)
class Report:
    """What `write_report` produced."""

    summary: pd.DataFrame
    runs: pd.DataFrame
    unmatched: list[Reference]
    tables: list[Path]
    figures: list[Path]
    mlflow_run_id: str | None
    ignored: list[Path]
    """Metrics files of runs that params.yaml does not list (left out of the report)."""


def write_report(
    reports: Path = Path("reports"),
    references_path: Path = Path("references.yaml"),
    tolerance: float = 1.0,
    resamples: int = RESAMPLES,
    tracking: bool = True,
    expected: ExpectedRuns | None = None,
    loss_forms: Mapping[str, str] | None = None,
    manifests: Mapping[str, Path] | None = None,
) -> Report:
    """Build every table and figure of the report into `reports` (see the module docstring).

    `expected`: params.yaml's runs, the only ones reported, each file's identity checked
    against them; None reports every file, checked against its name only.
    `loss_forms`: experiment -> its loss in words (`benchmark.losses.describe_loss`, e.g.
    "contrastive (changed ×10, released)"), shown in the tables' loss column and kept in the
    summary as `loss_form`; None shows the loss names only.
    `manifests`: dataset -> its prepared data's manifest.json; a dataset whose manifest
    records a pixel-difference baseline (`cdbench synth`, `cdbench prepare`) gets it as a row
    of its tables and a line in its figures; a manifest that records none (data prepared
    before the baseline was scored) gets a note in comparison.md saying to re-run prepare;
    None or an absent file: no baseline.

    Raises:
        DataError: a metrics or per-image file is refused (nothing is written then).
    """
    references = load_references(references_path)
    runs = load_runs(reports / "metrics", expected, from_files=True)  # shown apart
    ignored = stray_files(reports / "metrics", expected.identities) if expected else []
    summary = summarise(
        runs, references, reports / "per_image", tolerance, resamples, expected=expected
    )
    if loss_forms:
        summary["loss_form"] = [loss_forms.get(str(e), "") for e in summary["experiment"]]
    summary = add_per_seed(summary, runs)
    tests = ablation_tests(
        runs, reports / "per_image", ABLATION_BASE, ABLATION_LOSSES, ABLATION_PROTOCOL
    )
    datasets = set(summary["dataset"])
    shown = {d: p for d, p in (manifests or {}).items() if d in datasets}
    baselines = read_baselines(shown)
    no_baseline = {
        d: str(p) for d, p in sorted(shown.items()) if d not in baselines and p.is_file()
    }
    extra = [
        r for r in unmatched(references, summary) if r.dataset in datasets or r.profile == "full"
    ]
    from benchmark.reporting.figures import write_figures

    curves = _curves(reports / "curves", list(runs["run"]))
    targets = output_paths(reports)
    with StagedOutputs(targets, last="comparison.md", label="report") as staged:
        staged_tables = write_tables(summary, extra, staged.root, tests, baselines, no_baseline)
        staged_folder = staged.path("figures")
        staged_figures = write_figures(
            summary, runs, curves, reports / "predictions", staged_folder, baselines
        )
        staged.publish()
    tables = [targets[path.name] for path in staged_tables]
    figures = [targets["figures"] / path.relative_to(staged_folder) for path in staged_figures]
    run_id = _log(summary, runs, tables, figures, targets["figures"]) if tracking else None
    return Report(summary, runs, extra, tables, figures, run_id, ignored)


def output_paths(reports: Path) -> dict[str, Path]:
    """What `cdbench report` writes, in the order it publishes it: the figures folder, the
    tables, and `comparison.md` (the report's front page) last.

    They are published as one set (`benchmark.publish.StagedOutputs`): a report killed while
    publishing leaves at worst a set without `comparison.md`, never the new tables beside half
    of the figures.
    """
    targets = {"figures": reports / "figures"}
    targets.update({name: reports / name for name in TABLE_FILES if name != "comparison.md"})
    targets["comparison.md"] = reports / "comparison.md"
    return targets


def read_baselines(manifests: Mapping[str, Path]) -> dict[str, Baseline]:
    """dataset -> the pixel-difference baseline its data manifest records
    (`pixel_difference_baseline`, written by benchmark/data/baseline.py), F1 in percent; datasets
    whose manifest is absent or records none are left out.

    Raises:
        DataError: a manifest that is not JSON, or whose baseline F1 is not a number in 0..1.
    """
    baselines = {}
    for dataset, path in sorted(manifests.items()):
        if not path.is_file():
            continue
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: not valid JSON ({exc}); re-run `dvc repro` for {dataset}'s data"
            ) from None
        record = manifest.get("pixel_difference_baseline") if isinstance(manifest, dict) else None
        if not isinstance(record, dict):
            continue
        f1 = record.get("best_f1")
        if isinstance(f1, bool) or not isinstance(f1, int | float) or not 0 <= f1 <= 1:
            raise DataError(
                f"{path}: pixel_difference_baseline.best_f1 is {f1!r}, expected an F1 in 0..1; "
                f"re-run `dvc repro` for {dataset}'s data"
            )
        method = str(record.get("method", "pixel differencing"))
        baselines[dataset] = Baseline(100 * float(f1), method, str(path))
    return baselines


def _curves(folder: Path, runs: list[str]) -> dict[str, dict[str, Any]]:
    """run -> its curves file (runs without one are left out: their figures are skipped)."""
    curves = {}
    for run in runs:
        path = folder / f"{run}.json"
        if not path.exists():
            continue
        try:
            curves[run] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: not valid JSON ({exc}); rerun `dvc repro evaluate@{run}`"
            ) from None
    return curves


def _log(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    tables: list[Path],
    figures: list[Path],
    figures_root: Path,
) -> str | None:
    """Record the report as one MLflow run named by profile and date (`cdbench check` adds
    its verdict later: benchmark/tracking/verdict.py), with the mean test F1 of each
    experiment and protocol in percent, as the summary and every table hold it; returns its
    id."""
    from datetime import date

    from benchmark.tracking import RunTracker, git_commit
    from benchmark.tracking.glance import (
        experiment_description,
        report_profile,
        report_run_name,
        source_tags,
    )
    from benchmark.tracking.verdict import REPORTS_DIR_TAG

    commit = git_commit(Path.cwd())
    profile = report_profile(set(runs["dataset"]))
    tags = {
        "cdbench_stage": "report",
        "git_commit": commit,
        "dvc_stage": "report",
        "profile": profile,
        REPORTS_DIR_TAG: str(figures_root.parent.resolve()),
        **source_tags("cdbench report", commit),
    }
    with RunTracker(
        experiment=REPORT_EXPERIMENT,
        run_name=report_run_name(profile, date.today()),
        tags=tags,
        description=experiment_description(REPORT_EXPERIMENT),
    ) as tracker:
        tracker.log_params(
            {
                "runs": " ".join(runs["run"]),
                "datasets": " ".join(sorted(set(runs["dataset"]))),
                "experiments": len(set(runs["experiment"])),
            }
        )
        rows = zip(summary["experiment"], summary["protocol"], summary["f1"], strict=True)
        tracker.log_metrics({f"{e}/{p}/f1": float(f1) for e, p, f1 in rows})
        for path in tables:
            tracker.log_artifact(path, "tables")
        for path in figures:  # figures/<name>.png, figures/runs/<run>-<name>.png
            folder = path.parent.relative_to(figures_root).as_posix()
            tracker.log_artifact(path, "figures" if folder == "." else f"figures/{folder}")
        return tracker.run_id
