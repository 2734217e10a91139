"""The two JSON files `cdbench evaluate` writes per run, and how one is derived from the other.

- `reports/runs/<run>.json`, the run's record: identity (run, experiment, model, loss,
  dataset, recipe, seed), provenance (config digest, weights, MLflow run id, git commit), the
  selection, and per protocol the threshold, the pooled counts tp/fp/fn/tn and every rate.
  Readers recompute every rate from these counts (benchmark/reporting/results.py).
- `reports/metrics/<run>.json`, the run's headline, numbers only: F1 and IoU in percent, two
  decimals, of the protocols a reader compares first (`HEADLINE_PROTOCOLS`), nested
  `{protocol: {figure: value}}`. It is what DVC declares as metrics, so `dvc metrics show`
  and `dvc metrics diff` stay one terminal line per run; it is written last, so a run
  without it is not evaluated; readers check it against the record's counts.

Numbers-only metrics files follow DVC's example-get-started (`evaluation/metrics.json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADLINE_PROTOCOLS = ("val_threshold", "fixed", "whole_val_threshold", "whole_fixed")
"""The honest protocols (threshold chosen on validation; the source's fixed threshold), on
tiles and, for LEVIR-CD, on whole images; `test_best_optimistic` stays in the record."""
HEADLINE_FIGURES = ("f1", "iou")
"""The figures change-detection papers lead with."""
DECIMALS = 2
"""Percent with two decimals: the precision every table of the report shows."""


def record_path(metrics_path: Path) -> Path:
    """`reports/runs/<run>.json`: the record beside headline `reports/metrics/<run>.json`."""
    return metrics_path.parent.parent / "runs" / metrics_path.name


def headline(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The metrics file of `record`: `{protocol: {figure: percent}}` for every protocol of
    `HEADLINE_PROTOCOLS` that the record holds, from its rates (fractions)."""
    return {
        protocol: {
            figure: round(float(record[f"{protocol}/{figure}"]) * 100, DECIMALS)
            for figure in HEADLINE_FIGURES
        }
        for protocol in HEADLINE_PROTOCOLS
        if f"{protocol}/f1" in record
    }
