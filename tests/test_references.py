"""references.yaml loaded and checked, and the tolerances its rows give
(benchmark/reporting/references.py)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from benchmark.errors import ConfigError
from benchmark.reporting.references import TOLERANCE_SIGMAS, load_references, tolerance_for
from tests.data.evaluations import references_file
from tests.data.reference_rows import SPREAD, plain_row, spread_row

REPO = Path(__file__).resolve().parents[1]


def test_tolerance_is_derived_from_the_spread_and_the_seeds_evaluated(tmp_path: Path) -> None:
    (reference,) = load_references(references_file(tmp_path, {"demo": [spread_row()]}))
    assert TOLERANCE_SIGMAS == 3.0
    one, four = tolerance_for(reference, 1, 1.0), tolerance_for(reference, 4, 1.0)
    assert (one.value, one.origin, one.formula) == (12.0, "spread", "3 x 4.00 / sqrt(1)")
    assert (four.value, four.formula) == (6.0, "3 x 4.00 / sqrt(4)")  # 3 * 4 / 2
    assert four.cell() == "6.00 = 3 x 4.00 / sqrt(4)"
    # No result yet: counted as one seed, the widest.
    assert tolerance_for(reference, 0, 1.0).value == 12.0
    # An explicit tolerance wins over the spread; a row with neither takes the default.
    (explicit,) = load_references(references_file(tmp_path, {"demo": [spread_row(tolerance=2.5)]}))
    assert (tolerance_for(explicit, 4, 1.0).value, tolerance_for(explicit, 4, 1.0).origin) == (
        2.5,
        "references.yaml",
    )
    (plain,) = load_references(references_file(tmp_path, {"demo": [plain_row()]}))
    assert tolerance_for(plain, 4, 1.5).value == 1.5
    assert tolerance_for(plain, 4, 1.5).origin == "--tolerance"
    assert tolerance_for(None, 4, 1.5).value == 1.5


def test_a_larger_pooled_std_widens_the_tolerance_a_smaller_one_does_not(tmp_path: Path) -> None:
    """A row measured over few runs may carry the pooled std of all demo rows: the larger of
    the two is used, so a lucky tight pair of runs cannot make the check brittle."""
    wide = spread_row(spread={**SPREAD, "pooled_std": 5.0})
    narrow = spread_row(spread={**SPREAD, "pooled_std": 2.0}, protocol="fixed")
    by_protocol = {
        r.protocol: r for r in load_references(references_file(tmp_path, {"demo": [wide, narrow]}))
    }
    pooled = tolerance_for(by_protocol["val_threshold"], 1, 1.0)
    assert (pooled.value, pooled.formula) == (15.0, "3 x 5.00 / sqrt(1)")
    own = tolerance_for(by_protocol["fixed"], 1, 1.0)
    assert (own.value, own.formula) == (12.0, "3 x 4.00 / sqrt(1)")
    bad = spread_row(spread={**SPREAD, "pooled_std": -1.0})
    with pytest.raises(ConfigError, match=r"demo\[0\]\.spread\.pooled_std: expected points"):
        load_references(references_file(tmp_path, {"demo": [bad]}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"std": -0.1}, r"demo\[0\]\.spread\.std: expected points of F1 in 0\.\.100, got -0\.1"),
        ({"max": 100.5}, r"demo\[0\]\.spread\.max: expected points of F1 in 0\.\.100"),
        ({"std": math.nan}, r"demo\[0\]\.spread\.std: expected a finite number, got nan"),
        ({"min": 90.0}, r"expected min <= mean <= max, got min 90\.0, mean 87\.0, max 95\.0"),
        ({"mean": 96.0}, r"expected min <= mean <= max"),
        (
            {"runs": 1, "seeds": [0], "kernel_paths": ["default"]},
            r"spread\.runs: a standard deviation needs at least 2 runs, got 1",
        ),
        ({"runs": 7}, r"spread\.runs: 3 seeds on 2 kernel paths are 3 to 6 runs, got 7"),
        ({"runs": 2}, r"spread\.runs: 3 seeds on 2 kernel paths are 3 to 6 runs, got 2"),
        ({"seeds": [0, 0, 1]}, r"spread\.seeds: expected distinct seeds, got \[0, 0, 1\]"),
        ({"kernel_paths": []}, r"spread\.kernel_paths: expected distinct names"),
        ({"kernel_paths": ["default", "default"]}, r"spread\.kernel_paths: expected distinct"),
        ({"command": " "}, r"spread\.command: give the command that measured the spread"),
        ({"median": 86.0}, r"unknown key\(s\) demo\[0\]\.spread\.median; Spread accepts"),
        ({"runs": 6.5}, r"demo\[0\]\.spread\.runs: expected an integer"),
    ],
)
def test_impossible_spreads_are_refused_naming_the_row(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    row = spread_row(spread={**SPREAD, **changes})
    with pytest.raises(ConfigError, match=message):
        load_references(references_file(tmp_path, {"demo": [row]}))


def test_a_reference_outside_its_measured_range_is_refused(tmp_path: Path) -> None:
    row = spread_row(values={"f1": 70.0})  # measured 78..95
    with pytest.raises(
        ConfigError, match=r"demo\[0\]\.values\.f1: 70\.0 lies outside the measured range 78"
    ):
        load_references(references_file(tmp_path, {"demo": [row]}))
    # The same row is accepted once its value is in range (the spread is optional).
    assert load_references(references_file(tmp_path, {"demo": [spread_row()]}))[0].spread


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
