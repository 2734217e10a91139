"""The comparison report: `cdbench report` (benchmark/reporting/report.py) on fabricated
evaluations, its DVC stage and the demo's make target.

Runs are fabricated with tests/data/evaluations.py: each is a set of per-image confusion
counts, and its metrics file is computed from them as `cdbench evaluate` pools them, so the
expectations below are worked out by hand from the counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.errors import DataError
from tests.data.evaluations import params_file, report_args, same_counts, write_run

REPO = Path(__file__).resolve().parents[1]


def test_report_command_writes_tables_figures_and_an_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = tmp_path / "reports"
    for seed, counts in ((0, (4, 1, 1, 10)), (1, (3, 2, 2, 9))):
        write_run(
            reports,
            f"bsfnet-sisb-synthetic-s{seed}",
            "bsfnet-sisb-synthetic",
            seed,
            same_counts(counts),
        )
    write_run(
        reports, "bsfnet-bce-synthetic", "bsfnet-bce-synthetic", 0, same_counts((2, 1, 1, 10))
    )
    (reports / "figures").mkdir()
    (reports / "figures" / "stale.png").write_bytes(b"old")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    params_path = params_file(
        tmp_path, {"bsfnet-sisb-synthetic": [0, 1], "bsfnet-bce-synthetic": [0]}
    )
    assert (
        main(
            [
                "--params",
                str(params_path),
                "report",
                "--reports",
                str(reports),
                "--references",
                str(REPO / "references.yaml"),
                "--resamples",
                "100",
            ]
        )
        == 0
    )
    for name in (
        "comparison.md",
        "comparison.csv",
        "comparison.tex",
        "ablation.csv",
        "ablation.tex",
    ):
        assert (reports / name).stat().st_size > 0
    figures = sorted(p.name for p in (reports / "figures").glob("*.png"))
    assert "stale.png" not in figures
    assert {
        "f1-synthetic.png",
        "ablation-synthetic.png",
        "pr-synthetic.png",
        "training-synthetic.png",
        "qualitative-synthetic.png",
    } <= set(figures)
    runs = ("bsfnet-sisb-synthetic-s0", "bsfnet-sisb-synthetic-s1", "bsfnet-bce-synthetic")
    per_run = {f"{run}-{name}.png" for run in runs for name in ("predictions", "pr")}
    assert {p.name for p in (reports / "figures" / "runs").iterdir()} == per_run
    markdown = (reports / "comparison.md").read_text()
    assert "70.00 ± 14.14" in markdown  # mean and std of 80 and 60 over two seeds

    import mlflow

    found = mlflow.search_runs(
        experiment_names=["cdbench-report"], filter_string="attributes.run_name LIKE 'report%'"
    )
    assert len(found) == 1 and found.iloc[0]["status"] == "FINISHED"
    assert found.iloc[0]["metrics.bsfnet-sisb-synthetic/fixed/f1"] == pytest.approx(70.0)
    client = mlflow.MlflowClient()
    artifacts = {
        a.path
        for folder in ("tables", "figures")
        for a in client.list_artifacts(found.iloc[0]["run_id"], folder)
    }
    assert "tables/comparison.md" in artifacts and "figures/f1-synthetic.png" in artifacts
    drawn = {a.path for a in client.list_artifacts(found.iloc[0]["run_id"], "figures/runs")}
    assert drawn == {f"figures/runs/{name}" for name in per_run}


def test_dvc_report_stage_depends_on_every_evaluation_output() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    report = stages["report"]
    assert report["cmd"] == "cdbench report"
    assert {
        "reports/metrics",
        "reports/runs",
        "reports/per_image",
        "reports/curves",
        "reports/predictions",
        "references.yaml",
        "benchmark/reporting/results.py",  # the verification of every metrics file
    } <= set(report["deps"])
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in report["outs"]}
    assert {"reports/comparison.md", "reports/figures"} <= outs
    evaluate_outs = json.dumps(stages["evaluate"]["do"]["outs"])
    assert "reports/per_image/${key}.csv" in evaluate_outs
    assert "reports/predictions/${key}.npz" in evaluate_outs  # arrays: the report draws
    assert ".png" not in evaluate_outs


def test_make_demo_evaluates_every_synthetic_run() -> None:
    """The demo's `dvc repro --glob` must reach every synthetic run, seeds included (a glob
    without the `-s<seed>` suffix once left two runs out and `cdbench check` failed)."""
    import fnmatch
    import re as regex

    from benchmark.config import load_params

    makefile = (REPO / "Makefile").read_text()
    (pattern,) = regex.findall(r"dvc repro --glob '([^']+)'", makefile)
    params = load_params(REPO / "params.yaml")
    synthetic = [
        s.name for s in params.runs() if params.experiments[s.experiment].dataset == "synthetic"
    ]
    for name in synthetic:  # and the same experiment's runs once it lists several seeds
        assert fnmatch.fnmatch(f"evaluate@{name}", pattern), name
        assert fnmatch.fnmatch(f"evaluate@{name}-s1", pattern), name
    real = [
        s.name for s in params.runs() if params.experiments[s.experiment].dataset != "synthetic"
    ]
    assert not any(fnmatch.fnmatch(f"evaluate@{name}", pattern) for name in real)


def test_report_interrupted_keeps_the_previous_report_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report killed while drawing leaves the previous tables and figures as they were until
    the new set is complete (never new tables with some of their figures deleted)."""
    from benchmark import publish
    from benchmark.reporting import figures

    reports = tmp_path / "reports"
    write_run(
        reports, "bsfnet-bce-synthetic", "bsfnet-bce-synthetic", 0, same_counts((2, 1, 1, 10))
    )
    params_path = params_file(tmp_path, {"bsfnet-bce-synthetic": [0]})
    assert main(report_args(tmp_path, params_path, reports)) == 0
    published = ["ablation.csv", "ablation.tex", "comparison.csv", "comparison.md"]
    published += ["comparison.tex", "figures"]
    for path in [*reports.glob("*.*"), *(reports / "figures").rglob("*.png")]:
        path.write_bytes(path.read_bytes() + b"\nprevious report")  # shows any rewrite

    def report_set() -> dict[str, bytes | None]:
        found = {}
        for path in sorted(reports.rglob("*")):
            name = str(path.relative_to(reports))
            if name.split("/")[0] in published:
                found[name] = path.read_bytes() if path.is_file() else None
        return found

    before = report_set()
    drawn = [name for name in before if name.startswith("figures/") and name.endswith(".png")]
    assert len(drawn) == 6  # f1, pr, training, qualitative; the run's predictions and pr

    class Killed(BaseException):
        pass

    def killed(*args: object, **kwargs: object) -> bool:
        raise Killed

    monkeypatch.setattr(figures, "_training_figure", killed)  # the 3rd figure drawn
    with pytest.raises(Killed):
        main(report_args(tmp_path, params_path, reports))
    assert report_set() == before
    monkeypatch.undo()

    # Killed between two renames: the front page, comparison.md, is the one file missing.
    real_replace = publish.os.replace
    calls: list[str] = []

    def replace(source: str | Path, target: str | Path) -> None:
        calls.append(str(target))
        if len(calls) == 3:
            raise Killed
        real_replace(source, target)

    monkeypatch.setattr(publish.os, "replace", replace)
    with pytest.raises(Killed):
        main(report_args(tmp_path, params_path, reports))
    monkeypatch.undo()
    assert not (reports / "comparison.md").exists()

    assert main(report_args(tmp_path, params_path, reports)) == 0
    after = report_set()
    assert sorted(after) == sorted(before)
    assert not any(content and content.endswith(b"previous report") for content in after.values())
    assert not list(reports.glob(".report.*"))  # no staging folder left


def test_baselines_are_read_from_the_data_manifests(tmp_path: Path) -> None:
    from benchmark.reporting.report import read_baselines

    good, none, bad = (tmp_path / name / "manifest.json" for name in ("a", "b", "c"))
    for path, record in ((good, {"best_f1": 0.25, "method": "diff"}), (none, None)):
        path.parent.mkdir()
        path.write_text(json.dumps({"pixel_difference_baseline": record} if record else {}))
    found = read_baselines({"a": good, "b": none, "missing": tmp_path / "nowhere.json"})
    assert list(found) == ["a"]
    assert (found["a"].f1, found["a"].method, found["a"].source) == (25.0, "diff", str(good))
    bad.parent.mkdir()
    bad.write_text(json.dumps({"pixel_difference_baseline": {"best_f1": 25}}))
    with pytest.raises(
        DataError, match=r"c/manifest\.json: pixel_difference_baseline\.best_f1 is 25"
    ):
        read_baselines({"c": bad})
