"""The comparison report and `cdbench check` (benchmark/reporting/) on fabricated evaluations.

Each fabricated run is a set of per-image confusion counts; its metrics file is computed from
them with `Counts.scores`, exactly as `cdbench evaluate` pools them, so expectations below are
worked out by hand from the counts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.cli import main
from benchmark.config import load_params
from benchmark.errors import ConfigError, DataError
from benchmark.evaluation.metrics import Counts
from benchmark.evaluation.outputs import headline
from benchmark.evaluation.thumbnails import Thumbnails
from benchmark.reporting.check import (
    FAIL,
    MISSING,
    NO_RESULTS,
    PASS,
    SEEDS_MISSING,
    STALE,
    check,
)
from benchmark.reporting.references import load_references
from benchmark.reporting.results import (
    ABOVE,
    BELOW,
    WITHIN,
    ExpectedRuns,
    bootstrap_f1,
    load_runs,
    per_image_counts,
    summarise,
    verdict,
)
from benchmark.reporting.tables import ablation_table, write_tables
from tests.conftest import write_repo_params

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = ("fixed", "val_threshold", "test_best_optimistic")


def write_run(
    reports: Path,
    run: str,
    experiment: str,
    seed: int,
    images: dict[str, list[tuple[int, int, int, int]]],
    whole: dict[str, list[tuple[int, int, int, int]]] | None = None,
) -> dict:
    """Fabricate what `cdbench evaluate` writes for one run: per-image counts per protocol
    (`images[protocol]`, one (tp, fp, fn, tn) per test image), the pooled metrics file, the
    curves file and one prediction strip."""
    model, rest = experiment.split("-", 1)
    loss = rest.split("-", 1)[0] if model == "bsfnet" else "ifn_ds"
    dataset = experiment.split("-", 2)[2]
    metrics: dict = {
        "run": run,
        "experiment": experiment,
        "model": model,
        "loss": loss,
        "dataset": dataset,
        "recipe": "demo",
        "seed": seed,
    }
    rows: list[dict] = []
    for prefix, view, table in (("", "tiles", images), ("whole_", "whole", whole or {})):
        names = [f"{view}_{i:03d}" for i in range(len(next(iter(table.values()), [])))]
        for i, name in enumerate(names):
            row = {"view": view, "name": name}
            for protocol in PROTOCOLS:
                row.update(
                    dict(
                        zip(
                            (f"{protocol}/{k}" for k in ["tp", "fp", "fn", "tn"]),
                            table[protocol][i],
                            strict=True,
                        )
                    )
                )
            rows.append(row)
        for protocol in PROTOCOLS if table else ():
            pooled = Counts(*np.sum(table[protocol], axis=0).tolist())
            metrics[f"{prefix}{protocol}/threshold"] = 0.5
            metrics.update({f"{prefix}{protocol}/{k}": v for k, v in pooled.as_dict().items()})
            metrics.update({f"{prefix}{protocol}/{k}": v for k, v in pooled.scores().items()})
    for folder in ("metrics", "runs", "per_image", "curves", "predictions"):
        (reports / folder).mkdir(parents=True, exist_ok=True)
    (reports / "runs" / f"{run}.json").write_text(json.dumps(metrics))
    (reports / "metrics" / f"{run}.json").write_text(json.dumps(headline(metrics)))
    pd.DataFrame(rows).to_csv(reports / "per_image" / f"{run}.csv", index=False)
    curve = {"threshold": [0.0, 0.5, 1.0], "precision": [0.1, 0.5, 1.0], "recall": [1.0, 0.5, 0.0]}
    curves = {
        "test": {**curve, "f1": [0.2, 0.5, 0.0]},
        "selected_step": 2,
        "training": [
            {"step": 1, "train/loss": 1.0, "val/f1": 0.2},
            {"step": 2, "train/loss": 0.5, "val/f1": 0.4},
        ],
    }
    (reports / "curves" / f"{run}.json").write_text(json.dumps(curves))
    label = np.zeros((1, 8, 8), np.uint8)
    label[:, :4] = 1  # top half changed
    Thumbnails(
        names=np.array(["test_0000"]),
        image_a=np.zeros((1, 8, 8, 3), np.uint8),
        image_b=np.full((1, 8, 8, 3), 255, np.uint8),
        label=label,
        prediction=np.full((1, 8, 8), seed % 2, np.uint8),
        score=np.full((1, 8, 8), 0.5 * (seed % 2), np.float16),
        threshold=0.5,
        score_kind="probability",
    ).save(reports / "predictions" / f"{run}.npz")
    return metrics


def params_file(folder: Path, seeds: dict[str, list[int]]) -> Path:
    """A params.yaml listing synthetic experiments `<model>-<loss>-synthetic` with `seeds`,
    all under a recipe named "demo" (as `write_run` labels its runs): the tests do not depend
    on the repository's demo, which is tuned separately."""
    recipe = {
        "source": "tests",
        "optimizer": {"name": "adam", "lr": "1e-3"},
        "schedule": {"name": "constant"},
        "batch_size": 4,
        "iterations": 6,
        "val_every": 3,
        "pretrained": False,
    }
    experiments = {}
    for name, listed in seeds.items():
        model, rest = name.split("-", 1)
        loss = rest.split("-", 1)[0] if model == "bsfnet" else "ifn_ds"
        experiments[name] = {
            "model": model,
            "loss": loss,
            "dataset": "synthetic",
            "recipe": "demo",
            "seeds": listed,
        }
    return write_repo_params(
        folder / "params.yaml", recipes={"demo": recipe}, experiments=experiments
    )


def same_counts(counts: tuple[int, int, int, int], images: int = 4) -> dict:
    return {protocol: [counts] * images for protocol in PROTOCOLS}


def references_file(tmp_path: Path, rows: dict) -> Path:
    path = tmp_path / "references.yaml"
    path.write_text(yaml.safe_dump(rows))
    return path


# ---------------------------------------------------------------------------- references.yaml


def test_repository_references_load_and_bsfnet_rows_are_missing() -> None:
    references = load_references(REPO / "references.yaml")
    full = [r for r in references if r.profile == "full"]
    assert {r.key for r in full} == {
        ("ifn", "ifn_ds", "levir-cd", "whole_fixed"),
        ("ifn", "ifn_ds", "levir-cd", "fixed"),
        ("ifn", "ifn_ds", "cdd", "fixed"),
        ("bsfnet", "sisb", "cdd", "fixed"),
        ("bsfnet", "sisb", "levir-cd", "fixed"),
    }
    assert [r.missing for r in full if r.model == "bsfnet"] == [True, True]
    opencd = next(r for r in full if r.protocol == "whole_fixed")
    assert opencd.values.f1 == 90.83 and opencd.values.oa is None
    demo = [r for r in references if r.profile == "demo"]
    assert demo and all(r.dataset == "synthetic" and r.values.f1 for r in demo)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"colour": "red"}, "unknown key(s) demo[0].colour"),
        ({"protocol": "best"}, "expected one of our protocols"),
        ({"values": {"f1": 120.0}}, "demo[0].values.f1: expected a percentage"),
        ({"values": {"mf1": 1.0}}, "unknown key(s) demo[0].values.mf1"),
        ({"loss": "ifn_ds"}, "demo[0].loss: loss 'ifn_ds' does not fit model 'bsfnet'"),
        ({"protocol": "whole_fixed"}, "levir-cd only"),
        ({"dataset": "mnist"}, "demo[0].dataset"),
    ],
)
def test_bad_reference_rows_are_refused_naming_the_row(
    tmp_path: Path, row: dict, message: str
) -> None:
    base = {
        "model": "bsfnet",
        "loss": "sisb",
        "dataset": "synthetic",
        "protocol": "fixed",
        "values": {"f1": 40.0},
    }
    path = references_file(tmp_path, {"demo": [{**base, **row}]})
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_references(path)


def test_duplicate_rows_and_uncited_published_rows_are_refused(tmp_path: Path) -> None:
    row = {
        "model": "ifn",
        "loss": "ifn_ds",
        "dataset": "cdd",
        "protocol": "fixed",
        "values": {"f1": 90.0},
        "citation": "someone",
    }
    with pytest.raises(ConfigError, match=r"full\[1\].*already given by full\[0\]"):
        load_references(references_file(tmp_path, {"full": [row, row]}))
    del row["citation"]
    with pytest.raises(ConfigError, match="needs its citation"):
        load_references(references_file(tmp_path, {"full": [row]}))


# ------------------------------------------------------------------------ aggregation, bootstrap


def test_bootstrap_matches_a_plain_loop_over_the_same_draws() -> None:
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 50, size=(2, 7, 4)).astype(float)
    low, high = bootstrap_f1(counts, resamples=200, seed=5)
    draws = np.random.default_rng(5).integers(0, 7, size=(200, 7))
    means = []
    for draw in draws:
        f1s = []
        for seed_counts in counts:
            tp, fp, fn, _ = seed_counts[draw].sum(axis=0)
            f1s.append(2 * tp / (2 * tp + fp + fn))
        means.append(np.mean(f1s) * 100)
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert low < high


def test_bootstrap_of_identical_images_is_a_point() -> None:
    counts = np.tile(np.array([[[3.0, 1.0, 2.0, 10.0]]]), (1, 5, 1))
    low, high = bootstrap_f1(counts, resamples=50)
    assert low == pytest.approx(200 / 3) and high == pytest.approx(200 / 3)  # 2*3 / (6 + 1 + 2)


def test_summary_means_stds_seeds_and_reference_verdicts(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    # Two seeds: F1 = 2tp/(2tp+fp+fn) = 80 % and 60 %; one seed of another experiment.
    write_run(reports, "ifn-ds-synthetic-s0", "ifn-ds-synthetic", 0, same_counts((4, 1, 1, 10)))
    write_run(reports, "ifn-ds-synthetic-s1", "ifn-ds-synthetic", 1, same_counts((3, 2, 2, 9)))
    write_run(
        reports, "bsfnet-sisb-synthetic", "bsfnet-sisb-synthetic", 0, same_counts((1, 1, 0, 10))
    )
    references = load_references(
        references_file(
            tmp_path,
            {
                "demo": [
                    {
                        "model": "ifn",
                        "loss": "ifn_ds",
                        "dataset": "synthetic",
                        "protocol": "fixed",
                        "values": {"f1": 75.0},
                    },  # ours 70: below by 5 with tolerance 1
                    {
                        "model": "ifn",
                        "loss": "ifn_ds",
                        "dataset": "synthetic",
                        "protocol": "val_threshold",
                        "values": {"f1": 72.0},
                        "tolerance": 3.0,
                    },  # within
                    {
                        "model": "bsfnet",
                        "loss": "sisb",
                        "dataset": "synthetic",
                        "protocol": "fixed",
                        "values": {"f1": None},
                    },  # missing
                ]
            },
        )
    )
    summary = summarise(load_runs(reports / "metrics"), references, reports / "per_image")
    ifn = summary[summary["experiment"] == "ifn-ds-synthetic"].set_index("protocol")
    assert ifn.at["fixed", "seeds"] == 2
    assert ifn.at["fixed", "f1"] == pytest.approx(70.0)
    assert ifn.at["fixed", "f1_std"] == pytest.approx(np.std([80.0, 60.0], ddof=1))
    assert ifn.at["fixed", "precision"] == pytest.approx((80.0 + 60.0) / 2)
    # Every image is identical, so the bootstrap interval collapses to the mean.
    assert ifn.at["fixed", "f1_ci_low"] == pytest.approx(70.0)
    assert ifn.at["fixed", "verdict"] == BELOW and ifn.at["fixed", "diff_f1"] == pytest.approx(-5)
    assert ifn.at["val_threshold", "verdict"] == WITHIN
    assert ifn.at["test_best_optimistic", "verdict"] == ""
    assert ifn.at["test_best_optimistic", "ref_status"] == "none"
    bsfnet = summary[summary["experiment"] == "bsfnet-sisb-synthetic"].set_index("protocol")
    assert bsfnet.at["fixed", "verdict"] == MISSING
    assert np.isnan(bsfnet.at["fixed", "f1_std"])


@pytest.mark.parametrize(
    ("difference", "tolerance", "expected"),
    [
        (-1.5, 1.0, BELOW),
        (-1.0, 1.0, WITHIN),
        (0.5, 1.0, WITHIN),
        (1.5, 1.0, ABOVE),
        (5.0, -10.0, BELOW),
        (12.0, -10.0, ABOVE),
    ],
)
def test_verdict(difference: float, tolerance: float, expected: str) -> None:
    assert verdict(difference, tolerance, "available") == expected


def test_seeds_evaluated_on_different_images_are_refused(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    write_run(reports, "a-s0", "ifn-ds-synthetic", 0, same_counts((1, 1, 1, 1), images=3))
    write_run(reports, "a-s1", "ifn-ds-synthetic", 1, same_counts((1, 1, 1, 1), images=4))
    with pytest.raises(DataError, match=r"a-s1\.csv: its tiles test images differ"):
        per_image_counts(reports / "per_image", ["a-s0", "a-s1"], "fixed")


def test_runs_outside_params_are_ignored_and_duplicate_seeds_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    write_run(reports, "ifn-ds-synthetic", "ifn-ds-synthetic", 0, same_counts((4, 1, 1, 10)))
    # The name it had when the experiment listed several seeds: not a run of params.yaml now.
    write_run(reports, "ifn-ds-synthetic-s0", "ifn-ds-synthetic", 0, same_counts((1, 1, 1, 1)))
    params_path = params_file(tmp_path, {"ifn-ds-synthetic": [0], "bsfnet-sisb-synthetic": [0]})
    expected = ExpectedRuns.from_params(load_params(params_path))
    runs = load_runs(reports / "metrics", expected)
    assert list(runs["run"]) == ["ifn-ds-synthetic"]
    with pytest.raises(DataError, match=r"both hold ifn-ds-synthetic seed 0; delete the stale"):
        load_runs(reports / "metrics")
    params = ["--params", str(params_path)]
    check_args = ["check", "--reports", str(reports), "--profile", "demo"]
    assert main([*params, *check_args]) == 1  # the other demo runs have no results
    err = capsys.readouterr().err
    assert "ignored 1 metrics file(s) of runs that" in err and "ifn-ds-synthetic-s0.json" in err


def test_bad_metrics_files_name_the_file(tmp_path: Path) -> None:
    metrics, records = tmp_path / "metrics", tmp_path / "runs"
    metrics.mkdir()
    with pytest.raises(DataError, match="no metrics files"):
        load_runs(metrics)
    (metrics / "broken.json").write_text("{}")
    with pytest.raises(DataError, match=r"metrics/broken\.json: its record .*runs/broken\.json"):
        load_runs(metrics)
    records.mkdir()
    (records / "broken.json").write_text("{")
    with pytest.raises(DataError, match=r"runs/broken.json: not valid JSON.*evaluate@broken"):
        load_runs(metrics)
    (records / "broken.json").write_text(json.dumps({"run": "broken"}))
    with pytest.raises(DataError, match=r"runs/broken\.json: missing experiment"):
        load_runs(metrics)
    (records / "broken.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"broken\.json: expected a JSON object, found list"):
        load_runs(metrics)


def test_metrics_file_is_the_records_headline_in_percent(tmp_path: Path) -> None:
    """The file DVC shows holds numbers only, each the percent the record's counts give; one
    edited, missing or added figure is refused, naming the file and the expected value."""
    reports = tmp_path / "reports"
    run = "bsfnet-sisb-synthetic"
    write_run(reports, run, run, 0, same_counts((4, 1, 1, 10)))  # F1 8/10, IoU 4/6
    path = reports / "metrics" / f"{run}.json"
    shown = json.loads(path.read_text())
    assert shown["fixed"] == {"f1": 80.0, "iou": 66.67}
    assert set(shown) == {"fixed", "val_threshold"}  # test_best_optimistic stays in the record
    assert all(isinstance(v, float) for figures in shown.values() for v in figures.values())
    (loaded,) = load_runs(reports / "metrics").to_dict("records")
    assert loaded["fixed/tp"] == 16 and loaded["experiment"] == run  # the record's fields
    for edited, expected in (
        ({**shown, "fixed": {"f1": 81.0, "iou": 66.67}}, r"fixed\.f1 is 81\.0, expected 80\.0"),
        ({"fixed": shown["fixed"]}, r"val_threshold\.f1 is 'absent'"),
        ({**shown, "seed": 0}, r"seed is not expected"),
    ):
        path.write_text(json.dumps(edited))
        with pytest.raises(DataError, match=rf"metrics/{run}\.json: {expected}.*evaluate@{run}"):
            load_runs(reports / "metrics")


# -------------------------------------------------------------------------------------- tables


def test_tables_ablation_latex_and_unmatched_references(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    for loss, counts in (("sisb", (4, 1, 1, 10)), ("bce", (3, 2, 2, 9))):
        write_run(
            reports, f"bsfnet-{loss}-synthetic", f"bsfnet-{loss}-synthetic", 0, same_counts(counts)
        )
    references = load_references(REPO / "references.yaml")
    summary = summarise(load_runs(reports / "metrics"), references, reports / "per_image")
    ablation = ablation_table(summary)
    assert list(ablation["loss"]) == ["sisb", "bce"]
    assert ablation.iloc[1]["Δ F1 vs SISB (val-chosen)"] == "-20.00"  # 60 - 80
    unmatched = [r for r in references if r.profile == "full"]
    paths = write_tables(summary, unmatched, reports)
    assert sorted(p.name for p in paths) == sorted(
        ["comparison.md", "comparison.csv", "comparison.tex", "ablation.csv", "ablation.tex"]
    )
    markdown = (reports / "comparison.md").read_text()
    assert "## synthetic" in markdown and "## Loss ablation" in markdown
    assert "bsfnet/sisb cdd fixed" in markdown and "reference missing" in markdown
    assert "| 80.00 " in markdown
    tex = (reports / "comparison.tex").read_text()
    assert r"\toprule" in tex and r"$\Delta$ F1" in tex and "best on test" in tex
    assert "ifn_ds" not in tex and "bsfnet" in tex
    table = pd.read_csv(reports / "comparison.csv")
    assert {"f1", "f1_std", "f1_ci_low", "ref_f1", "verdict"} <= set(table.columns)


# --------------------------------------------------------------------------------------- check


def test_check_statuses(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    write_run(reports, "ifn-ds-synthetic", "ifn-ds-synthetic", 0, same_counts((4, 1, 1, 10)))
    path = references_file(
        tmp_path,
        {
            "demo": [
                {
                    "model": "ifn",
                    "loss": "ifn_ds",
                    "dataset": "synthetic",
                    "protocol": "fixed",
                    "values": {"f1": 80.5, "iou": 70.0},
                },
                {
                    "model": "ifn",
                    "loss": "ifn_ds",
                    "dataset": "synthetic",
                    "protocol": "val_threshold",
                    "values": {"f1": 85.0},
                    "tolerance": 4.0,
                },
                {
                    "model": "bsfnet",
                    "loss": "sisb",
                    "dataset": "synthetic",
                    "protocol": "fixed",
                    "values": {"f1": 10.0},
                },
                {
                    "model": "bsfnet",
                    "loss": "bce",
                    "dataset": "synthetic",
                    "protocol": "fixed",
                    "values": {},
                },
            ]
        },
    )
    runs, references = load_runs(reports / "metrics"), load_references(path)
    result = check(runs, references, "demo", tolerance=1.0, metrics=("f1", "iou"))
    statuses = [
        (row.reference.split()[0], row.protocol, row.metric, row.status) for row in result.rows
    ]
    assert statuses == [
        ("ifn/ifn_ds", "fixed", "f1", PASS),  # 80 >= 80.5 - 1
        ("ifn/ifn_ds", "fixed", "iou", FAIL),  # 4/6 = 66.7 < 70 - 1
        ("ifn/ifn_ds", "val_threshold", "f1", FAIL),  # 80 < 85 - 4
        ("bsfnet/sisb", "fixed", "f1", NO_RESULTS),
        ("bsfnet/bce", "fixed", "f1", MISSING),
    ]
    assert not result.passed and len(result.failed) == 3
    strict = check(runs, references, "demo", fail_missing=True)
    assert [row.status for row in strict.rows][-1] == FAIL


def test_check_command_passes_then_fails_naming_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    write_run(reports, "ifn-ds-synthetic", "ifn-ds-synthetic", 0, same_counts((4, 1, 1, 10)))
    row = {
        "model": "ifn",
        "loss": "ifn_ds",
        "dataset": "synthetic",
        "protocol": "fixed",
        "values": {"f1": 78.0},
        "tolerance": 5.0,
    }
    missing = {
        "model": "bsfnet",
        "loss": "sisb",
        "dataset": "cdd",
        "protocol": "fixed",
        "values": {},
        "citation": "a letter",
    }
    path = references_file(tmp_path, {"demo": [row], "full": [missing]})
    params_path = params_file(tmp_path, {"ifn-ds-synthetic": [0]})
    args = ["--params", str(params_path), "check", "--reports", str(reports)]
    args += ["--references", str(path)]
    assert main([*args, "--profile", "demo"]) == 0
    result = json.loads((reports / "check.json").read_text())
    assert result["passed"] and result["counts"]["pass"] == 1
    assert "passed (demo profile)" in capsys.readouterr().out
    # The full profile's only row is missing: listed, neither passes nor fails...
    assert main([*args, "--profile", "full"]) == 0
    assert "reference missing" in capsys.readouterr().out
    # ...unless asked.
    assert main([*args, "--profile", "full", "--fail-missing"]) == 1
    capsys.readouterr()
    # An impossible tolerance (demand 100 points above the reference) fails, naming the row.
    references_file(tmp_path, {"demo": [{**row, "tolerance": -100.0}], "full": [missing]})
    assert main([*args, "--profile", "demo"]) == 1
    out = capsys.readouterr().out
    assert "FAILED (demo profile): ifn/ifn_ds synthetic fixed f1 (fail)" in out
    assert json.loads((reports / "check.json").read_text())["passed"] is False


# -------------------------------------------------------------------------------------- report


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


# ----------------------------------------------------- never credit a number that was not computed


def tamper(reports: Path, name: str, changes: dict[str, object]) -> None:
    """Edit fields of run record `name`.json in place (as a hand-edit would)."""
    path = reports / "runs" / f"{name}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def report_args(tmp_path: Path, params_path: Path, reports: Path) -> list[str]:
    return [
        "--params",
        str(params_path),
        "report",
        "--reports",
        str(reports),
        "--references",
        str(REPO / "references.yaml"),
        "--resamples",
        "20",
        "--no-tracking",
    ]


def demo_f1_reference(tmp_path: Path, f1: float) -> Path:
    """references.yaml with one demo row: bsfnet/sisb synthetic fixed F1 `f1`, tolerance 5."""
    row = {
        "model": "bsfnet",
        "loss": "sisb",
        "dataset": "synthetic",
        "protocol": "fixed",
        "values": {"f1": f1},
        "tolerance": 5.0,
    }
    return references_file(tmp_path, {"demo": [row]})


def test_tampered_rate_is_refused_by_check_and_by_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A metrics file hand-edited to F1 0.99, counts unchanged, once showed "pass +60"."""
    reports = tmp_path / "reports"
    params_path = params_file(tmp_path, {"bsfnet-sisb-synthetic": [0]})
    run = "bsfnet-sisb-synthetic"
    write_run(reports, run, run, 0, same_counts((4, 1, 1, 10)))  # F1 = 8/10
    references = demo_f1_reference(tmp_path, 39.0)
    check_args = ["--params", str(params_path), "check", "--reports", str(reports)]
    check_args += ["--references", str(references), "--profile", "demo"]
    assert main(report_args(tmp_path, params_path, reports)) == 0
    before = (reports / "comparison.md").read_text()
    assert main(check_args) == 0  # 80 >= 39 - 5: the honest file passes
    capsys.readouterr()

    tamper(reports, run, {"fixed/f1": 0.99})
    assert main(check_args) == 1
    captured = capsys.readouterr()
    message = (
        f"{reports / 'runs' / run}.json: protocol fixed: f1 is 0.99 but its counts "
        f"tp=16 fp=4 fn=4 tn=40 give 0.8000; the file was edited or is corrupt; re-run "
        f"`dvc repro evaluate@{run}`"
    )
    assert message in captured.err and "pass" not in captured.out
    assert main(report_args(tmp_path, params_path, reports)) == 1
    assert message in capsys.readouterr().err
    assert (reports / "comparison.md").read_text() == before  # nothing written over it


def test_every_rate_is_recomputed_and_rounding_is_tolerated(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run = "ifn-ds-synthetic"
    metrics = write_run(reports, run, run, 0, same_counts((3, 2, 2, 9)))
    exact = metrics["val_threshold/kappa"]
    # Rounded to 9 digits (within RATE_RTOL): accepted, and the exact value is what is used.
    tamper(reports, run, {"val_threshold/kappa": round(exact, 9)})
    (loaded,) = load_runs(reports / "metrics").to_dict("records")
    assert loaded["val_threshold/kappa"] == exact
    for rate in ("precision", "recall", "iou", "oa", "kappa"):
        tamper(reports, run, {f"val_threshold/{rate}": exact + 0.01})
        with pytest.raises(DataError, match=rf"protocol val_threshold: {rate} is "):
            load_runs(reports / "metrics")
        write_run(reports, run, run, 0, same_counts((3, 2, 2, 9)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fixed/tp": 4.5}, r"counts must be non-negative integers, found tp=4\.5"),
        ({"fixed/fn": -1}, r"counts must be non-negative integers, found fn=-1"),
        ({"fixed/tn": True}, r"counts must be non-negative integers, found tn=True"),
        ({"fixed/f1": "0.8"}, r"protocol fixed: f1 is '0\.8' but its counts"),
        ({"whole_fixed/f1": 0.5}, r"protocol whole_fixed: no tp, fp, fn, tn, so its rates"),
        ({"stale_checkpoint": "no"}, r"stale_checkpoint is 'no', expected null or the override"),
    ],
)
def test_counts_that_cannot_give_the_rates_are_refused(
    tmp_path: Path, changes: dict, message: str
) -> None:
    reports = tmp_path / "reports"
    write_run(reports, "ifn-ds-synthetic", "ifn-ds-synthetic", 0, same_counts((4, 1, 1, 10)))
    tamper(reports, "ifn-ds-synthetic", changes)
    with pytest.raises(DataError, match=message):
        load_runs(reports / "metrics")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seed": 1}, "seed is 1 but {params} says run 'bsfnet-sisb-synthetic-s0' has seed 0"),
        ({"seed": "0"}, "seed is '0' but {params} says run 'bsfnet-sisb-synthetic-s0' has seed 0"),
        (
            {"experiment": "bsfnet-bce-synthetic"},
            "experiment is 'bsfnet-bce-synthetic' but {params} says run "
            "'bsfnet-sisb-synthetic-s0' has experiment 'bsfnet-sisb-synthetic'",
        ),
        ({"model": "ifn"}, "model is 'ifn' but {params} says run"),
        ({"loss": "bce"}, "loss is 'bce' but {params} says run"),
        ({"dataset": "cdd"}, "dataset is 'cdd' but {params} says run"),
        ({"recipe": "ifn-opencd"}, "recipe is 'ifn-opencd' but {params} says run"),
        (
            {"run": "bsfnet-sisb-synthetic-s1"},
            "run is 'bsfnet-sisb-synthetic-s1' but its file name says 'bsfnet-sisb-synthetic-s0'",
        ),
    ],
)
def test_identity_that_disagrees_with_params_or_the_file_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict, message: str
) -> None:
    reports = tmp_path / "reports"
    params_path = params_file(tmp_path, {"bsfnet-sisb-synthetic": [0, 1]})
    for seed in (0, 1):
        run = f"bsfnet-sisb-synthetic-s{seed}"
        write_run(reports, run, "bsfnet-sisb-synthetic", seed, same_counts((4, 1, 1, 10)))
    tamper(reports, "bsfnet-sisb-synthetic-s0", changes)
    expected = ExpectedRuns.from_params(load_params(params_path), str(params_path))
    text = message.format(params=params_path)
    with pytest.raises(DataError, match=re.escape(text)):
        load_runs(reports / "metrics", expected)
    check_args = ["--params", str(params_path), "check", "--reports", str(reports)]
    check_args += ["--references", str(demo_f1_reference(tmp_path, 10.0)), "--profile", "demo"]
    assert main(check_args) == 1
    err = capsys.readouterr().err
    assert "bsfnet-sisb-synthetic-s0.json: " in err and text in err
    assert main(report_args(tmp_path, params_path, reports)) == 1
    assert text in capsys.readouterr().err


def test_params_that_changed_under_a_metrics_file_refuse_it(tmp_path: Path) -> None:
    """The file is untouched; params.yaml now says the experiment's model is ifn."""
    reports = tmp_path / "reports"
    run = "bsfnet-sisb-synthetic"
    write_run(reports, run, run, 0, same_counts((4, 1, 1, 10)))
    path = params_file(tmp_path, {run: [0]})
    content = yaml.safe_load(path.read_text())
    content["experiments"][run].update(model="ifn", loss="ifn_ds")
    path.write_text(yaml.safe_dump(content))
    expected = ExpectedRuns.from_params(load_params(path), "params.yaml")
    with pytest.raises(DataError, match=re.escape("model is 'bsfnet' but params.yaml says run")):
        load_runs(reports / "metrics", expected)


def test_without_params_a_name_must_fit_its_experiment_and_seed(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    write_run(reports, "ifn-ds-synthetic-s3", "ifn-ds-synthetic", 3, same_counts((1, 1, 1, 1)))
    assert list(load_runs(reports / "metrics")["run"]) == ["ifn-ds-synthetic-s3"]
    tamper(reports, "ifn-ds-synthetic-s3", {"seed": 4})
    with pytest.raises(DataError, match=r"seed 4 would be named .*not 'ifn-ds-synthetic-s3'"):
        load_runs(reports / "metrics")


def test_per_image_counts_that_do_not_add_up_are_refused_by_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    params_path = params_file(tmp_path, {"ifn-ds-synthetic": [0]})
    write_run(reports, "ifn-ds-synthetic", "ifn-ds-synthetic", 0, same_counts((4, 1, 1, 10)))
    per_image = reports / "per_image" / "ifn-ds-synthetic.csv"
    table = pd.read_csv(per_image)
    table.loc[0, "val_threshold/tp"] += 5
    table.to_csv(per_image, index=False)
    assert main(report_args(tmp_path, params_path, reports)) == 1
    assert (
        "ifn-ds-synthetic.csv: protocol val_threshold: its per-image tp/fp/fn/tn add up to "
        "21 4 4 40 but the pooled counts of ifn-ds-synthetic.json are 16 4 4 40"
    ) in capsys.readouterr().err
    assert not (reports / "comparison.md").exists()


def test_missing_seeds_are_said_and_fail_the_check_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    params_path = params_file(tmp_path, {"bsfnet-sisb-synthetic": [0, 1, 2]})
    write_run(
        reports,
        "bsfnet-sisb-synthetic-s0",
        "bsfnet-sisb-synthetic",
        0,
        same_counts((4, 1, 1, 10)),
    )
    references = demo_f1_reference(tmp_path, 79.0)  # ours 80: the number alone would pass
    check_args = ["--params", str(params_path), "check", "--reports", str(reports)]
    check_args += ["--references", str(references), "--profile", "demo"]
    assert main(check_args) == 1
    out = capsys.readouterr().out
    assert "| 1 of 3 " in out and "1 of 3 seeds evaluated (missing: seed 1, 2)" in out
    assert "FAILED (demo profile): bsfnet/sisb synthetic fixed f1 (seeds missing)" in out
    result = json.loads((reports / "check.json").read_text())
    (row,) = result["rows"]
    assert (row["status"], row["seeds"], row["seeds_listed"]) == (SEEDS_MISSING, 1, 3)

    assert main([*check_args, "--allow-missing-seeds"]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 seeds evaluated" in out and "1 passed with a note (allowed)" in out
    assert json.loads((reports / "check.json").read_text())["rows"][0]["status"] == PASS

    assert main(report_args(tmp_path, params_path, reports)) == 0  # a partial report is fine
    markdown = (reports / "comparison.md").read_text()
    assert "| 1 of 3 " in markdown and "## Caveats" in markdown
    assert "- bsfnet-sisb-synthetic: 1 of 3 seeds evaluated (missing: seed 1, 2)" in markdown
    assert "evaluate@bsfnet-sisb-synthetic-s1 evaluate@bsfnet-sisb-synthetic-s2" in markdown
    table = pd.read_csv(reports / "comparison.csv", keep_default_na=False)
    assert set(table["missing_seeds"]) == {"1 2"} and set(table["seeds_listed"]) == {3}


def test_all_seeds_evaluated_have_no_caveat(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    params_path = params_file(tmp_path, {"bsfnet-sisb-synthetic": [0, 1]})
    for seed in (0, 1):
        run = f"bsfnet-sisb-synthetic-s{seed}"
        write_run(reports, run, "bsfnet-sisb-synthetic", seed, same_counts((4, 1, 1, 10)))
    expected = ExpectedRuns.from_params(load_params(params_path))
    summary = summarise(load_runs(reports / "metrics", expected), [], expected=expected)
    assert set(summary["caveat"]) == {""} and set(summary["seeds_listed"]) == {2}
    references = load_references(demo_f1_reference(tmp_path, 79.0))
    result = check(load_runs(reports / "metrics", expected), references, "demo", expected=expected)
    assert [row.status for row in result.rows] == [PASS] and result.rows[0].note == ""


def test_a_stale_checkpoints_run_is_marked_and_fails_the_check_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    run = "bsfnet-sisb-synthetic"
    params_path = params_file(tmp_path, {run: [0]})
    write_run(reports, run, run, 0, same_counts((4, 1, 1, 10)))
    stale = {"checkpoint_digest": "a" * 64, "current_digest": "b" * 64, "differences": []}
    tamper(reports, run, {"stale_checkpoint": stale})
    check_args = ["--params", str(params_path), "check", "--reports", str(reports)]
    check_args += ["--references", str(demo_f1_reference(tmp_path, 79.0)), "--profile", "demo"]
    assert main(check_args) == 1
    out = capsys.readouterr().out
    assert f"stale checkpoint (--allow-stale-checkpoint): {run}" in out
    assert f"({STALE})" in out
    assert main([*check_args, "--allow-stale-checkpoint"]) == 0
    capsys.readouterr()
    assert main(report_args(tmp_path, params_path, reports)) == 0
    markdown = (reports / "comparison.md").read_text()
    assert "| 80.00† " in markdown
    assert f"- † {run}: {run} scored from a checkpoint trained under another" in markdown


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


# ------------------------------------- at a glance, per-seed values, baseline, paired ablation


def fabricated_runs(
    per_image_dir: Path, runs: dict[str, tuple[int, list[tuple[int, int, int, int]]]]
) -> pd.DataFrame:
    """The frame `load_runs` gives for synthetic runs {name: (seed, per-image counts)} (the same
    counts under every protocol), and their per-image files in `per_image_dir`."""
    per_image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (seed, images) in runs.items():
        experiment = name.rsplit("-s", 1)[0]
        row: dict = {
            "run": name,
            "experiment": experiment,
            "model": "bsfnet",
            "loss": experiment.split("-")[1],
            "dataset": "synthetic",
            "recipe": "demo",
            "seed": seed,
            "weights_provenance": "trained run",
            "stale_checkpoint": None,
        }
        pooled = Counts(*np.sum(images, axis=0).tolist())
        table: dict = {"view": "tiles", "name": [f"test_{i:04d}" for i in range(len(images))]}
        for protocol in PROTOCOLS:
            row.update({f"{protocol}/{k}": v for k, v in pooled.as_dict().items()})
            row.update({f"{protocol}/{k}": v for k, v in pooled.scores().items()})
            for k, key in enumerate(("tp", "fp", "fn", "tn")):
                table[f"{protocol}/{key}"] = [image[k] for image in images]
        pd.DataFrame(table).to_csv(per_image_dir / f"{name}.csv", index=False)
        rows.append(row)
    return pd.DataFrame(rows)


def test_ablation_rows_carry_the_paired_test_and_comparison_md_opens_at_a_glance(
    tmp_path: Path,
) -> None:
    from benchmark.reporting.paired import ablation_tests, p_cell
    from benchmark.reporting.tables import Baseline, add_per_seed, render_markdown

    rng = np.random.default_rng(0)

    def images(found: float) -> list[tuple[int, int, int, int]]:
        changed = rng.integers(20, 60, size=12)
        tp = rng.binomial(changed, found)
        return [(int(t), 5, int(c - t), 900) for t, c in zip(tp, changed, strict=True)]

    per_image = tmp_path / "per_image"
    runs = fabricated_runs(
        per_image,
        {
            "bsfnet-sisb-synthetic-s0": (0, images(0.8)),
            "bsfnet-sisb-synthetic-s1": (1, images(0.7)),
            "bsfnet-bce-synthetic-s0": (0, images(0.3)),
            "bsfnet-bce-synthetic-s1": (1, images(0.4)),
        },
    )
    tests = ablation_tests(runs, per_image, "sisb", ("sisb", "bce", "contrastive"), resamples=400)
    (test,) = tests.to_dict("records")  # bce against sisb; no contrastive run
    summary = add_per_seed(summarise(runs, []), runs)
    f1 = summary.set_index(["experiment", "protocol"])["f1"]
    observed = (
        f1["bsfnet-bce-synthetic", "val_threshold"] - f1["bsfnet-sisb-synthetic", "val_threshold"]
    )
    assert test["delta"] == pytest.approx(observed)
    assert test["low"] < test["delta"] < test["high"] < 0
    assert test["p_value"] < 0.05
    assert (test["seeds"], test["images"], test["resamples"]) == (2, 12, 400)

    table = ablation_table(summary, tests).set_index("loss")
    assert table.at["bce", "p (paired)"] == p_cell(test["p_value"])
    assert table.at["bce", "Δ 95% CI (paired)"] == f"[{test['low']:+.1f}, {test['high']:+.1f}]"
    assert table.at["sisb", "p (paired)"] == ""

    baseline = Baseline(27.5, "plain differencing", "data/prepared/synthetic/manifest.json")
    markdown = render_markdown(summary, [], tests=tests, baselines={"synthetic": baseline})
    glance = markdown[markdown.index("## At a glance") : markdown.index("## How to read")]
    lines = [line for line in glance.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == [
        "bsfnet",
        "bsfnet",
        "pixel difference",
    ]
    sisb = runs[runs["experiment"] == "bsfnet-sisb-synthetic"]["val_threshold/f1"] * 100
    cell = f"{sisb.mean():.2f} ± {sisb.std():.2f} ({sisb.iloc[0]:.1f}, {sisb.iloc[1]:.1f})"
    assert cell in lines[1]  # mean ± std (seed 0, seed 1), val-chosen threshold
    assert "27.50" in lines[3] and "best on test (optimistic)" in lines[3]
    assert cell in markdown[markdown.index("## synthetic") :]  # the full table's F1 too
    assert "| pixel difference" in markdown[markdown.index("## synthetic") :]
    assert "drawn with replacement 400 times (random seed 0)" in markdown


def test_headline_protocol_is_the_published_one_when_val_chosen_has_none() -> None:
    from benchmark.reporting.tables import headline_protocol

    rows = pd.DataFrame({"protocol": list(PROTOCOLS), "ref_status": ["available", "none", "none"]})
    assert headline_protocol(rows) == "fixed"
    assert headline_protocol(rows.assign(ref_status="none")) == "val_threshold"
    assert headline_protocol(rows.assign(ref_status="available")) == "val_threshold"


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
