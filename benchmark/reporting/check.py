"""`cdbench check`: do our results reach the references of a profile?

For every reference of the profile (references.yaml) and every gated figure it gives (F1 by
default), our mean over seeds under the reference's protocol is compared with the reference
minus the tolerance (the row's own `tolerance`, else `--tolerance`, in percentage points).
Statuses:
- `pass`: ours >= reference - tolerance;
- `fail`: ours < reference - tolerance (exit status 1, the row named);
- `reference missing`: the source is known but its values are not transcribed; neither passes
  nor fails, unless `fail_missing` (then it fails);
- `no results`: no evaluated run of that model, loss and dataset; fails, since nothing shows
  that the reference holds (run the pipeline first);
- `seeds missing`: ours would pass, but the experiment has fewer evaluated seeds than
  params.yaml lists (the note says "1 of 3 seeds evaluated"): fails, since one seed is not the
  mean the reference is compared with, unless `allow_missing_seeds` (then `pass`, the note
  kept);
- `stale checkpoint`: ours would pass, but a run was scored from a checkpoint trained under
  another configuration (`cdbench evaluate --allow-stale-checkpoint`): fails, since the number
  is not that of params.yaml's recipe, unless `allow_stale` (then `pass`, the note kept).
A row that fails on its numbers stays `fail`, with the same notes. The tolerance is
`references.tolerance_for`'s (the one the report uses too): the row's own, else for a row with a
measured `spread` 3 x spread.std / sqrt(seeds evaluated), else `--tolerance`; each row shows it
and how it was derived.

The per-run floor (`BaselineFloor`, `--min-gain-over-baseline POINTS`): every evaluated run of
the synthetic dataset must reach, at the validation-chosen threshold, the F1 of plain pixel
differencing (the dataset's manifest: `pixel_difference_baseline.best_f1`, its threshold chosen
on test, so an optimistic baseline) plus POINTS. One row per run, `pass` or `fail`: a mean over
seeds that passes must not hide a seed that stopped learning.

The rates compared are those recomputed from each metrics file's counts, the files' identity
checked against params.yaml (benchmark/reporting/results.py `load_runs`); a file that disagrees
stops the check before any row is judged. The result is printed as tables and written as JSON
(`reports/check.json`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from benchmark.errors import DataError
from benchmark.reporting.references import (
    PROFILES,
    Reference,
    for_profile,
    tolerance_cell,
    tolerance_for,
)
from benchmark.reporting.results import ExpectedRuns, seeds_cell, summarise

PASS, FAIL, MISSING, NO_RESULTS = "pass", "fail", "reference missing", "no results"
SEEDS_MISSING, STALE = "seeds missing", "stale checkpoint"
FAILING = (FAIL, NO_RESULTS, SEEDS_MISSING, STALE)


@dataclass(frozen=True)
class CheckRow:
    """One reference figure against ours."""

    reference: str
    experiment: str
    protocol: str
    metric: str
    ours: float | None
    seeds: int
    published: float | None
    tolerance: float
    difference: float | None
    status: str
    source: str
    seeds_listed: int = 0
    """How many seeds params.yaml lists for the experiment (0: no results)."""
    note: str = ""
    """The caveats: seeds missing, stale checkpoints."""
    tolerance_from: str = "--tolerance"
    """Where `tolerance` comes from: "references.yaml" (the row's own), "--tolerance", or
    "spread" (derived from the row's measured spread, `references.tolerance_for`)."""
    tolerance_formula: str = ""
    """How a spread-derived tolerance was computed, e.g. "3 x 4.10 / sqrt(2)"."""


@dataclass(frozen=True)
class BaselineFloor:
    """`--min-gain-over-baseline`: every synthetic run's val-chosen F1 must reach the
    pixel-difference baseline's F1 + `gain` (points)."""

    baseline_f1: float
    """Points (the manifest stores a fraction)."""
    gain: float
    source: str
    """The manifest it was read from."""

    @property
    def floor(self) -> float:
        return self.baseline_f1 + self.gain


@dataclass(frozen=True)
class FloorRow:
    """One run against the baseline floor."""

    run: str
    experiment: str
    seed: int | None
    f1: float | None
    """The run's val_threshold F1 (points, recomputed from its counts); None if not scored."""
    baseline_f1: float
    floor: float
    margin: float | None
    """f1 - floor."""
    status: str


@dataclass(frozen=True)
class CheckResult:
    profile: str
    tolerance: float
    metrics: tuple[str, ...]
    fail_missing: bool
    rows: list[CheckRow]
    allow_missing_seeds: bool = False
    allow_stale: bool = False
    floor: BaselineFloor | None = None
    floor_rows: tuple[FloorRow, ...] = ()

    @property
    def failed(self) -> list[CheckRow]:
        """The reference rows that make the check fail (`FAILING` statuses)."""
        return [row for row in self.rows if row.status in FAILING]

    @property
    def failed_floor(self) -> list[FloorRow]:
        """The runs below the baseline floor (or with no synthetic run evaluated)."""
        return [row for row in self.floor_rows if row.status in FAILING]

    @property
    def passed(self) -> bool:
        return not self.failed and not self.failed_floor

    def as_dict(self) -> dict[str, object]:
        statuses = (PASS, FAIL, MISSING, NO_RESULTS, SEEDS_MISSING, STALE)
        counts = {s: sum(r.status == s for r in self.rows) for s in statuses}
        return {
            "profile": self.profile,
            "tolerance": self.tolerance,
            "metrics": list(self.metrics),
            "fail_missing": self.fail_missing,
            "allow_missing_seeds": self.allow_missing_seeds,
            "allow_stale_checkpoint": self.allow_stale,
            "passed": self.passed,
            "counts": counts,
            "rows": [asdict(row) for row in self.rows],
            "min_gain_over_baseline": None if self.floor is None else self.floor.gain,
            "baseline": None if self.floor is None else asdict(self.floor),
            "floor_rows": [asdict(row) for row in self.floor_rows],
        }


def check(
    runs: pd.DataFrame | None,
    references: list[Reference],
    profile: str,
    tolerance: float = 1.0,
    metrics: tuple[str, ...] = ("f1",),
    fail_missing: bool = False,
    expected: ExpectedRuns | None = None,
    allow_missing_seeds: bool = False,
    allow_stale: bool = False,
    floor: BaselineFloor | None = None,
) -> CheckResult:
    """Compare every reference of `profile` with our mean under its protocol.

    Args:
        runs: `results.load_runs`' frame (None when nothing was evaluated yet).
        references: every row of references.yaml.
        profile: "demo" or "full".
        tolerance: points below a reference still accepted, for rows without their own.
        metrics: the figures gated (each reference is checked on those it gives).
        fail_missing: a reference without values fails instead of being only listed.
        expected: params.yaml's runs (the seeds each experiment lists); None takes the
            evaluated seeds as all there are.
        allow_missing_seeds: an experiment with seeds not evaluated may pass (noted).
        allow_stale: a run scored from a stale checkpoint may pass (noted).
        floor: the per-run floor over the pixel-difference baseline (None: not checked).
    """
    summary = (
        summarise(runs, [], tolerance=tolerance, expected=expected)
        if runs is not None
        else pd.DataFrame()
    )
    rows = []
    for reference in for_profile(references, profile):
        model, loss, dataset, protocol = reference.key
        ours = (
            summary[
                (summary["model"] == model)
                & (summary["loss"] == loss)
                & (summary["dataset"] == dataset)
                & (summary["protocol"] == protocol)
            ]
            if len(summary)
            else summary
        )
        seeds = int(ours["seeds"].iloc[0]) if len(ours) else 0
        limit = tolerance_for(reference, seeds, tolerance)
        values = reference.values.as_dict()
        gated = [m for m in metrics if values[m] is not None] or [metrics[0]]
        for metric in gated:
            published = values[metric]
            mine = float(ours[metric].iloc[0]) if len(ours) else None
            status, difference = _status(mine, published, limit.value, fail_missing)
            missing_seeds = bool(len(ours)) and bool(ours["missing_seeds"].iloc[0])
            stale = bool(len(ours)) and bool(ours["stale_runs"].iloc[0])
            if status == PASS and missing_seeds and not allow_missing_seeds:
                status = SEEDS_MISSING
            elif status == PASS and stale and not allow_stale:
                status = STALE
            rows.append(
                CheckRow(
                    reference=reference.label(),
                    experiment=str(ours["experiment"].iloc[0]) if len(ours) else "",
                    protocol=protocol,
                    metric=metric,
                    ours=mine,
                    seeds=seeds,
                    published=published,
                    tolerance=limit.value,
                    difference=difference,
                    status=status,
                    source=reference.source,
                    seeds_listed=int(ours["seeds_listed"].iloc[0]) if len(ours) else 0,
                    note=str(ours["caveat"].iloc[0]) if len(ours) else "",
                    tolerance_from=limit.origin,
                    tolerance_formula=limit.formula,
                )
            )
    return CheckResult(
        profile,
        tolerance,
        tuple(metrics),
        fail_missing,
        rows,
        allow_missing_seeds,
        allow_stale,
        floor,
        tuple(floor_rows(runs, floor)) if floor is not None else (),
    )


def default_profile(runs: pd.DataFrame | None, references: list[Reference]) -> tuple[str, str]:
    """The profile `cdbench check` uses when none is named, and why: `full` when a run on a
    dataset of the published references (CDD, LEVIR-CD) is evaluated, else `demo` when a run
    on a dataset of the demo references (synthetic) is, else `full` (nothing evaluated)."""
    evaluated = set() if runs is None else set(runs["dataset"])
    for profile in PROFILES:
        datasets = {reference.key[2] for reference in for_profile(references, profile)}
        found = sorted(evaluated & datasets)
        if found:
            return profile, f"evaluated runs on {', '.join(found)}"
    return PROFILES[0], "no evaluated run yet"


def pixel_difference_baseline(prepared: Path, gain: float) -> BaselineFloor:
    """The floor `gain` points above the pixel-difference baseline F1 recorded in
    `prepared/manifest.json` (`cdbench synth` writes it; `prepared` is
    params.data.prepared("synthetic")).

    Raises:
        DataError: the manifest is missing, not JSON, or has no baseline F1 in 0..1.
    """
    path = prepared / "manifest.json"
    fix = "generate the synthetic dataset first: `dvc repro synth` (or `cdbench synth`)"
    if not path.exists():
        raise DataError(
            f"{path}: not found, so --min-gain-over-baseline has no pixel-difference baseline "
            f"to compare with; {fix}"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); {fix}") from None
    baseline = manifest.get("pixel_difference_baseline") if isinstance(manifest, dict) else None
    f1 = baseline.get("best_f1") if isinstance(baseline, dict) else None
    if isinstance(f1, bool) or not isinstance(f1, int | float) or not 0 <= f1 <= 1:
        raise DataError(
            f"{path}: expected pixel_difference_baseline.best_f1, an F1 in 0..1, got {f1!r}; "
            f"the manifest is from an older cdbench or was edited; {fix}"
        )
    return BaselineFloor(float(f1) * 100, gain, str(path))


def floor_rows(runs: pd.DataFrame | None, floor: BaselineFloor) -> list[FloorRow]:
    """One row per evaluated synthetic run: its val_threshold F1 against `floor.floor`; a
    single `no results` row when no synthetic run was evaluated."""
    synthetic = runs[runs["dataset"] == "synthetic"] if runs is not None else pd.DataFrame()
    if synthetic.empty:
        return [FloorRow("", "", None, None, floor.baseline_f1, floor.floor, None, NO_RESULTS)]
    rows = []
    for _, run in synthetic.iterrows():
        value = run.get("val_threshold/f1")
        f1 = None if value is None or pd.isna(value) else float(value) * 100
        margin = None if f1 is None else f1 - floor.floor
        rows.append(
            FloorRow(
                run=str(run["run"]),
                experiment=str(run["experiment"]),
                seed=int(run["seed"]),
                f1=f1,
                baseline_f1=floor.baseline_f1,
                floor=floor.floor,
                margin=margin,
                status=PASS if margin is not None and margin >= 0 else FAIL,
            )
        )
    return rows


def _status(
    ours: float | None, published: float | None, tolerance: float, fail_missing: bool
) -> tuple[str, float | None]:
    if published is None:
        return (FAIL if fail_missing else MISSING), None
    if ours is None or math.isnan(ours):
        return NO_RESULTS, None
    difference = ours - published
    return (PASS if difference >= -tolerance else FAIL), difference


def format_check(result: CheckResult) -> str:
    """The printed table and a one-line verdict naming the failing rows."""
    table = pd.DataFrame(
        [
            {
                "reference": row.reference,
                "metric": row.metric,
                "ours": "–" if row.ours is None else f"{row.ours:.2f}",
                "seeds": seeds_cell(row.seeds, row.seeds_listed),
                "reference value": "–" if row.published is None else f"{row.published:.2f}",
                "tolerance": tolerance_cell(row.tolerance, row.tolerance_formula),
                "difference": "" if row.difference is None else f"{row.difference:+.2f}",
                "status": row.status,
                "note": row.note,
            }
            for row in result.rows
        ]
    )
    if len(table) and not table["note"].astype(bool).any():
        table = table.drop(columns="note")
    lines = [
        table.to_markdown(index=False, disable_numparse=True)
        if len(table)
        else "(no references in this profile)"
    ]
    if result.floor is not None:
        lines += ["", _floor_table(result.floor, result.floor_rows)]
    if result.failed or result.failed_floor:
        names = "; ".join(
            [f"{row.reference} {row.metric} ({row.status})" for row in result.failed]
            + [
                f"{row.run} below the baseline floor ({row.status})"
                if row.run
                else f"baseline floor: no synthetic run evaluated ({row.status})"
                for row in result.failed_floor
            ]
        )
        lines.append(f"FAILED ({result.profile} profile): {names}")
        statuses = {row.status for row in result.failed}
        if SEEDS_MISSING in statuses:
            lines.append(
                "  seeds missing: evaluate every seed params.yaml lists (`dvc repro`), or pass "
                "--allow-missing-seeds to accept the mean of fewer"
            )
        if STALE in statuses:
            lines.append(
                "  stale checkpoint: retrain the run (`dvc repro train@<run>`), or pass "
                "--allow-stale-checkpoint to accept it"
            )
    else:
        noted = sum(bool(r.note) and r.status == PASS for r in result.rows)
        lines.append(
            f"passed ({result.profile} profile): {sum(r.status == PASS for r in result.rows)} "
            f"reference figure(s) reached, {sum(r.status == MISSING for r in result.rows)} "
            f"reference(s) missing"
            + (f", {noted} passed with a note (allowed)" if noted else "")
            + (
                f"; {len(result.floor_rows)} run(s) at or above the baseline floor"
                if result.floor is not None
                else ""
            )
        )
    return "\n".join(lines)


def _floor_table(floor: BaselineFloor, rows: tuple[FloorRow, ...]) -> str:
    """The per-run floor: a heading naming the baseline, then one line per run."""
    heading = (
        f"Per-run floor: val-chosen F1 >= pixel-difference baseline {floor.baseline_f1:.2f} "
        f"+ {floor.gain:g} = {floor.floor:.2f} ({floor.source})"
    )
    table = pd.DataFrame(
        [
            {
                "run": row.run or "(no synthetic run evaluated)",
                "val-chosen F1": "–" if row.f1 is None else f"{row.f1:.2f}",
                "floor": f"{row.floor:.2f}",
                "margin": "" if row.margin is None else f"{row.margin:+.2f}",
                "status": row.status,
            }
            for row in rows
        ]
    )
    return heading + "\n" + table.to_markdown(index=False, disable_numparse=True)


def write_check(result: CheckResult, path: Path) -> None:
    """reports/check.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
