"""Reading evaluations back (benchmark/reporting/results.py): every metrics file checked
against its record, its counts and params.yaml; seeds aggregated, bootstrapped and judged;
runs scored from released checkpoint files read apart from the trained ones.

Runs are fabricated with tests/data/evaluations.py: each is a set of per-image confusion
counts, and its metrics file is computed from them as `cdbench evaluate` pools them, so the
expectations below are worked out by hand from the counts.
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
from benchmark.errors import DataError
from benchmark.models.released import RELEASED_PROVENANCE
from benchmark.reporting.check import MISSING
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
from tests.data.evaluations import (
    demo_f1_reference,
    params_file,
    references_file,
    report_args,
    same_counts,
    tamper,
    write_run,
)

REPO = Path(__file__).resolve().parents[1]


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


def _released_run(reports: Path, run: str, provenance: str) -> None:
    """What `evaluate --weights` adds to a run's record: provenance and the file's hash."""
    from tests.data.evaluations import same_counts, write_run

    base = run.removesuffix("-released").removesuffix("-weights")
    experiment = base.rsplit("-s", 1)[0]
    write_run(reports, run, experiment, 0, same_counts((1, 1, 5, 9)))
    path = reports / "runs" / f"{run}.json"
    metrics = json.loads(path.read_text())
    metrics.update(weights_provenance=provenance, weights_sha256="ab" * 32)
    path.write_text(json.dumps(metrics))


def test_the_report_shows_released_rows_apart_and_check_never_credits_them(
    tmp_path: Path,
) -> None:
    from benchmark.config import load_params
    from benchmark.reporting.report import write_report
    from benchmark.reporting.results import ExpectedRuns, load_runs, stray_files
    from tests.data.evaluations import REPO, params_file, same_counts, write_run

    reports = tmp_path / "reports"
    for seed in (0, 1):
        run = f"bsfnet-sisb-synthetic-s{seed}"
        write_run(reports, run, "bsfnet-sisb-synthetic", seed, same_counts((4, 1, 1, 10)))
    _released_run(reports, "bsfnet-sisb-synthetic-s0-released", RELEASED_PROVENANCE)
    params = params_file(tmp_path, {"bsfnet-sisb-synthetic": [0, 1]})
    expected = ExpectedRuns.from_params(load_params(params))

    # Accepted by name, not stray; read only when asked (the report), never by check's loader.
    assert stray_files(reports / "metrics", expected.identities) == []
    assert list(load_runs(reports / "metrics", expected)["run"]) == [
        "bsfnet-sisb-synthetic-s0",
        "bsfnet-sisb-synthetic-s1",
    ]
    report = write_report(
        reports, REPO / "references.yaml", resamples=20, tracking=False, expected=expected
    )
    rows = report.summary[report.summary["protocol"] == "fixed"]
    assert list(rows["weights_provenance"]) == ["trained run", RELEASED_PROVENANCE]
    assert list(rows["seeds"]) == [2, 1]  # never averaged with the trained seeds
    assert list(rows["f1"].round(2)) == [80.0, 25.0]  # 2*4/(8+1+1); 2*1/(2+1+5)
    text = (reports / "comparison.md").read_text()
    trained_part, released_part = text.split("## Checkpoint files, scored under our protocols")
    assert "bsfnet-sisb-synthetic-s0-released" in released_part.split("\n## ")[0]
    assert "25.00" not in trained_part and "80.00" in trained_part


@pytest.mark.parametrize(
    ("run", "provenance"),
    [
        ("bsfnet-sisb-synthetic-s0-released", "trained run"),
        ("bsfnet-sisb-synthetic-s0-weights", RELEASED_PROVENANCE),
        ("bsfnet-sisb-synthetic-s0", RELEASED_PROVENANCE),
        ("bsfnet-sisb-synthetic-s7-released", RELEASED_PROVENANCE),
    ],
)
def test_a_file_whose_name_and_provenance_disagree_is_refused(
    tmp_path: Path, run: str, provenance: str
) -> None:
    from benchmark.config import load_params
    from benchmark.errors import DataError
    from benchmark.reporting.results import ExpectedRuns, load_runs, stray_files
    from tests.data.evaluations import params_file

    reports = tmp_path / "reports"
    _released_run(reports, run, provenance)
    expected = ExpectedRuns.from_params(
        load_params(params_file(tmp_path, {"bsfnet-sisb-synthetic": [0, 1]}))
    )
    if run.endswith("-s7-released"):  # a seed params.yaml does not list: stray, not read
        assert stray_files(reports / "metrics", expected.identities) == [
            reports / "metrics" / f"{run}.json"
        ]
        with pytest.raises(DataError, match="no metrics files"):
            load_runs(reports / "metrics", expected, from_files=True)
        return
    with pytest.raises(DataError, match=rf"{run}\.json: weights_provenance is '{provenance}'"):
        load_runs(reports / "metrics", expected, from_files=True)


def test_the_suffixes_agree_between_evaluate_and_the_report() -> None:
    from benchmark.models.released import RUN_SUFFIX
    from benchmark.reporting.results import FROM_FILE

    assert FROM_FILE == RUN_SUFFIX
