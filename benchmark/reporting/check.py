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
A row that fails on its numbers stays `fail`, with the same notes. The rates compared are those
recomputed from each metrics file's counts, the files' identity checked against params.yaml
(benchmark/reporting/results.py `load_runs`); a file that disagrees stops the check before
any row is judged. The result is printed as a table and written as JSON
(`reports/check.json`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from benchmark.reporting.references import Reference, for_profile
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


@dataclass(frozen=True)
class CheckResult:
    profile: str
    tolerance: float
    metrics: tuple[str, ...]
    fail_missing: bool
    rows: list[CheckRow]
    allow_missing_seeds: bool = False
    allow_stale: bool = False

    @property
    def failed(self) -> list[CheckRow]:
        """The rows that make the check fail (`FAILING` statuses)."""
        return [row for row in self.rows if row.status in FAILING]

    @property
    def passed(self) -> bool:
        return not self.failed

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
        limit = reference.tolerance if reference.tolerance is not None else tolerance
        values = reference.values.as_dict()
        gated = [m for m in metrics if values[m] is not None] or [metrics[0]]
        for metric in gated:
            published = values[metric]
            mine = float(ours[metric].iloc[0]) if len(ours) else None
            status, difference = _status(mine, published, limit, fail_missing)
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
                    seeds=int(ours["seeds"].iloc[0]) if len(ours) else 0,
                    published=published,
                    tolerance=limit,
                    difference=difference,
                    status=status,
                    source=reference.source,
                    seeds_listed=int(ours["seeds_listed"].iloc[0]) if len(ours) else 0,
                    note=str(ours["caveat"].iloc[0]) if len(ours) else "",
                )
            )
    return CheckResult(
        profile, tolerance, tuple(metrics), fail_missing, rows, allow_missing_seeds, allow_stale
    )


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
                "tolerance": f"{row.tolerance:g}",
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
    if result.failed:
        names = "; ".join(f"{row.reference} {row.metric} ({row.status})" for row in result.failed)
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
            f"reference(s) missing" + (f", {noted} passed with a note (allowed)" if noted else "")
        )
    return "\n".join(lines)


def write_check(result: CheckResult, path: Path) -> None:
    """reports/check.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
