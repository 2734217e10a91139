"""`cdbench check` (benchmark/reporting/check.py): each reference row's status, missing seeds
and stale checkpoints, and a demo check honest about its spread: the tolerance a demo row
derives from its measured spread, and the per-run floor over the pixel-difference baseline.

Runs are fabricated with tests/data/evaluations.py (metrics files computed from per-image
counts, identities from a params.yaml), so every F1 below is worked out by hand: counts
(tp, fp, fn, tn) = (4, 1, 1, 10) give F1 = 2*4 / (2*4 + 1 + 1) = 80 %, (3, 2, 2, 9) give 60 %,
(1, 4, 4, 7) give 20 %.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from benchmark.cli import main
from benchmark.config import load_params
from benchmark.reporting.check import (
    FAIL,
    MISSING,
    NO_RESULTS,
    PASS,
    SEEDS_MISSING,
    STALE,
    check,
    pixel_difference_baseline,
)
from benchmark.reporting.references import load_references, tolerance_for
from benchmark.reporting.results import BELOW, WITHIN, ExpectedRuns, load_runs, summarise
from benchmark.reporting.tables import write_tables
from tests.data.evaluations import (
    demo_f1_reference,
    params_file,
    references_file,
    report_args,
    same_counts,
    tamper,
    write_run,
)
from tests.data.reference_rows import plain_row, spread_row

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "ifn-ds-synthetic"


def seeded_runs(tmp_path: Path, seeds: list[int], counts: dict[int, tuple] | None = None) -> Path:
    """params.yaml listing EXPERIMENT with `seeds`, each seed evaluated (F1 80 unless
    `counts` says otherwise); returns the params file."""
    reports = tmp_path / "reports"
    for seed in seeds:
        run = EXPERIMENT if len(seeds) == 1 else f"{EXPERIMENT}-s{seed}"
        write_run(
            reports, run, EXPERIMENT, seed, same_counts((counts or {}).get(seed, (4, 1, 1, 10)))
        )
    return params_file(tmp_path, {EXPERIMENT: seeds})


# ------------------------------------------------------------------------- derived tolerance


@pytest.mark.parametrize(
    ("seeds", "tolerance", "status", "verdict"),
    [
        ([0], 12.0, PASS, WITHIN),  # 80 >= 87 - 12
        ([0, 1, 2, 3], 6.0, FAIL, BELOW),  # 80 < 87 - 6
    ],
)
def test_check_and_report_judge_a_spread_row_with_the_same_tolerance(
    tmp_path: Path, seeds: list[int], tolerance: float, status: str, verdict: str
) -> None:
    params_path = seeded_runs(tmp_path, seeds)
    expected = ExpectedRuns.from_params(load_params(params_path))
    runs = load_runs(tmp_path / "reports" / "metrics", expected)
    references = load_references(references_file(tmp_path, {"demo": [spread_row()]}))
    (row,) = check(runs, references, "demo", tolerance=1.0, expected=expected).rows
    formula = f"3 x 4.00 / sqrt({len(seeds)})"
    assert (row.status, row.tolerance, row.seeds) == (status, tolerance, len(seeds))
    assert (row.tolerance_from, row.tolerance_formula) == ("spread", formula)
    summary = summarise(runs, references, tolerance=1.0, expected=expected)
    judged = summary[summary["protocol"] == "val_threshold"].iloc[0]
    assert (judged["tolerance"], judged["verdict"]) == (tolerance, verdict)
    write_tables(summary, [], tmp_path / "reports")
    markdown = (tmp_path / "reports" / "comparison.md").read_text()
    assert f"| {tolerance:.2f} = {formula} " in markdown


def test_check_command_shows_how_the_tolerance_was_derived(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_path = seeded_runs(tmp_path, [0, 1, 2, 3])
    explicit = spread_row(protocol="fixed", values={"f1": 82.0}, tolerance=5.0)
    references = references_file(tmp_path, {"demo": [spread_row(), explicit]})
    args = ["--params", str(params_path), "check", "--reports", str(tmp_path / "reports")]
    assert main([*args, "--references", str(references), "--profile", "demo"]) == 1
    out = capsys.readouterr().out
    assert "| 6.00 = 3 x 4.00 / sqrt(4) | -7.00 " in out  # 80 - 87, spread-derived
    assert re.search(r"\| 5 +\| -2\.00 ", out)  # 80 - 82, the row's own tolerance
    assert "FAILED (demo profile): ifn/ifn_ds synthetic val_threshold f1 (fail)" in out
    rows = json.loads((tmp_path / "reports" / "check.json").read_text())["rows"]
    assert [(r["tolerance"], r["tolerance_from"], r["tolerance_formula"]) for r in rows] == [
        (6.0, "spread", "3 x 4.00 / sqrt(4)"),
        (5.0, "references.yaml", ""),
    ]


# ------------------------------------------------------------------- the baseline floor


def with_manifest(params_path: Path, tmp_path: Path, best_f1: float | None) -> Path:
    """Point params.yaml's data.prepared_dir into tmp_path and, unless `best_f1` is None,
    write the synthetic manifest with that pixel-difference baseline F1 (a fraction)."""
    params = yaml.safe_load(params_path.read_text())
    prepared = tmp_path / "prepared"
    params["data"]["prepared_dir"] = str(prepared)
    params_path.write_text(yaml.safe_dump(params))
    if best_f1 is not None:
        (prepared / "synthetic").mkdir(parents=True)
        manifest = {"pixel_difference_baseline": {"best_f1": best_f1, "split": "test"}}
        (prepared / "synthetic" / "manifest.json").write_text(json.dumps(manifest))
    return prepared / "synthetic" / "manifest.json"


def squeezed(text: str) -> str:
    """`text` with runs of spaces made one (markdown tables pad their columns)."""
    return re.sub(r" +", " ", text)


def check_args(tmp_path: Path, params_path: Path, row: dict[str, Any]) -> list[str]:
    references = references_file(tmp_path, {"demo": [row]})
    return [
        "--params",
        str(params_path),
        "check",
        "--reports",
        str(tmp_path / "reports"),
        "--references",
        str(references),
        "--profile",
        "demo",
    ]


def test_every_run_must_beat_the_baseline_by_the_gain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seed 1 stopped learning: F1 20 < 27.2 + 10; the mean (80 + 20) / 2 = 50 still passes
    # its reference (45, tolerance 10), so only the floor catches it.
    params_path = seeded_runs(tmp_path, [0, 1], {1: (1, 4, 4, 7)})
    manifest = with_manifest(params_path, tmp_path, 0.272)
    row = {**plain_row(), "values": {"f1": 45.0}, "tolerance": 10.0}
    args = check_args(tmp_path, params_path, row)
    assert main(args) == 0  # the floor is off by default
    capsys.readouterr()

    assert main([*args, "--min-gain-over-baseline", "10"]) == 1
    out = squeezed(capsys.readouterr().out)
    assert f"pixel-difference baseline 27.20 + 10 = 37.20 ({manifest})" in out
    assert "| ifn-ds-synthetic-s0 | 80.00 | 37.20 | +42.80 | pass " in out
    assert "| ifn-ds-synthetic-s1 | 20.00 | 37.20 | -17.20 | fail " in out
    assert "FAILED (demo profile): ifn-ds-synthetic-s1 below the baseline floor (fail)" in out
    result = json.loads((tmp_path / "reports" / "check.json").read_text())
    assert result["passed"] is False and result["min_gain_over_baseline"] == 10.0
    assert [(r["run"], r["status"]) for r in result["floor_rows"]] == [
        ("ifn-ds-synthetic-s0", PASS),
        ("ifn-ds-synthetic-s1", FAIL),
    ]
    assert result["rows"][0]["status"] == PASS

    # Seed 1 re-evaluated at F1 60 >= 37.2: every run passes.
    write_run(tmp_path / "reports", "ifn-ds-synthetic-s1", EXPERIMENT, 1, same_counts((3, 2, 2, 9)))
    assert main([*args, "--min-gain-over-baseline", "10"]) == 0
    out = squeezed(capsys.readouterr().out)
    assert "| ifn-ds-synthetic-s1 | 60.00 | 37.20 | +22.80 | pass " in out
    assert "2 run(s) at or above the baseline floor" in out
    # A higher bar (60 < 27.2 + 40) fails that run again: the gain is applied, not ignored.
    assert main([*args, "--min-gain-over-baseline", "40"]) == 1
    assert "ifn-ds-synthetic-s1 below the baseline floor (fail)" in capsys.readouterr().out


def test_floor_without_any_synthetic_run_fails(tmp_path: Path) -> None:
    params_path = seeded_runs(tmp_path, [0])
    with_manifest(params_path, tmp_path, 0.272)
    expected = ExpectedRuns.from_params(load_params(params_path))
    references = load_references(references_file(tmp_path, {"demo": [spread_row()]}))
    floor = pixel_difference_baseline(tmp_path / "prepared" / "synthetic", 10.0)
    assert floor.floor == pytest.approx(37.2)
    result = check(None, references, "demo", expected=expected, floor=floor)
    assert [row.status for row in result.floor_rows] == [NO_RESULTS] and not result.passed


def test_missing_manifest_names_the_file_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_path = seeded_runs(tmp_path, [0])
    manifest = with_manifest(params_path, tmp_path, None)
    args = check_args(tmp_path, params_path, spread_row())
    assert main([*args, "--min-gain-over-baseline", "10"]) == 1
    err = capsys.readouterr().err
    assert f"{manifest}: not found" in err and "`dvc repro synth`" in err
    assert not (tmp_path / "reports" / "check.json").exists()


def test_make_demo_checks_the_floor_of_10_points() -> None:
    makefile = (REPO / "Makefile").read_text()
    demo = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "cdbench check --profile demo --min-gain-over-baseline 10" in demo


def test_demo_spread_summarise_writes_rows_that_load_with_the_pooled_std(tmp_path: Path) -> None:
    """scripts/demo_spread.py --summarise: per-experiment spreads, the pooled within-experiment
    std per protocol (sqrt of the summed squared deviations over runs - experiments), a later
    line replacing an earlier one of the same run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_spread", REPO / "scripts/demo_spread.py")
    assert spec is not None and spec.loader is not None
    demo_spread = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_spread)

    def line(experiment: str, seed: int, path: str, val: float, fixed: float) -> str:
        run = {"experiment": experiment, "seed": seed, "path": path}
        return json.dumps({**run, "val_threshold_f1": val, "fixed_f1": fixed})

    runs = tmp_path / "runs.jsonl"
    runs.write_text(
        "\n".join(
            [
                line("bsfnet-bce-synthetic", 0, "A", 99.0, 1.0),  # replaced below
                line("bsfnet-bce-synthetic", 0, "A", 50.0, 40.0),
                line("bsfnet-bce-synthetic", 1, "A", 54.0, 44.0),
                line("bsfnet-bce-synthetic", 0, "B", 52.0, 42.0),
                line("ifn-ds-synthetic", 0, "A", 60.0, 50.0),
                line("ifn-ds-synthetic", 1, "A", 62.0, 50.0),
            ]
        )
        + "\n"
    )
    text = demo_spread.summarise([str(runs)], str(REPO / "params.yaml"))
    references = load_references(references_file(tmp_path, {"demo": yaml.safe_load(text)}))
    rows = {(r.loss, r.protocol): r for r in references}
    bce = rows[("bce", "val_threshold")]
    assert bce.values.f1 == 52.0 and bce.spread is not None
    assert (bce.spread.runs, bce.spread.seeds, bce.spread.kernel_paths) == (3, (0, 1), ("A", "B"))
    assert (bce.spread.min, bce.spread.max, bce.spread.std) == (50.0, 54.0, 2.0)
    # val: bce deviations -2, 2, 0 (8), ifn -1, 1 (2): sqrt(10 / (5 - 2))
    assert bce.spread.pooled_std == round(math.sqrt(10 / 3), 2)
    ifn = rows[("ifn_ds", "fixed")]
    assert ifn.spread is not None and ifn.spread.std == 0.0
    assert ifn.spread.pooled_std == round(math.sqrt(8 / 3), 2)  # fixed: bce 8, ifn 0
    assert tolerance_for(ifn, 1, 1.0).formula == f"3 x {math.sqrt(8 / 3):.2f} / sqrt(1)"


def test_demo_spread_tells_runs_apart_by_path_and_cpu(tmp_path: Path) -> None:
    """The same seed and path on two CPUs are two runs, named "<path> on <cpu>"; the command
    repeats each path once; the CPU's ISA is read from /proc/cpuinfo's flags."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_spread", REPO / "scripts/demo_spread.py")
    assert spec is not None and spec.loader is not None
    demo_spread = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_spread)

    def line(cpu: str, val: float) -> str:
        run = {"experiment": "bsfnet-bce-synthetic", "seed": 0, "path": "OMP_NUM_THREADS=1"}
        return json.dumps({**run, "cpu": cpu, "val_threshold_f1": val, "fixed_f1": val})

    runs = tmp_path / "runs.jsonl"
    runs.write_text(line("avx2", 50.0) + "\n" + line("avx512", 54.0) + "\n")
    assert sorted(key[2] for key in demo_spread.read_runs([str(runs)])) == [
        "OMP_NUM_THREADS=1 on avx2", "OMP_NUM_THREADS=1 on avx512"
    ]  # fmt: skip
    rows = yaml.safe_load(demo_spread.summarise([str(runs)], str(REPO / "params.yaml")))
    (row,) = [r for r in rows if r["protocol"] == "val_threshold"]
    assert row["spread"]["runs"] == 2 and row["values"]["f1"] == 52.0
    assert row["spread"]["command"].count("--path OMP_NUM_THREADS=1;") == 1
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert demo_spread.cpu_isa(cpuinfo) == "avx2"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx avx2 avx512f avx512bw\n")
    assert demo_spread.cpu_isa(cpuinfo) == "avx512"
    assert demo_spread.cpu_isa(tmp_path / "missing") == "unknown"


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
