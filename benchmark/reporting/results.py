"""Our results, aggregated: one row per experiment and protocol, beside its reference.

Reads what `cdbench evaluate` wrote (benchmark/evaluation/evaluate.py):
`reports/metrics/<run>.json` (one per experiment x seed) and `reports/per_image/<run>.csv`.

For each experiment and protocol: the mean and sample standard deviation over seeds of every
figure (percent), the number of seeds, and a 95 % bootstrap interval of F1 over TEST IMAGES:
the test pairs are resampled with replacement (the same draw for every seed, so seeds stay
paired), each seed's counts are pooled over the drawn pairs, F1 is averaged over seeds, and
the 2.5th and 97.5th percentiles of that mean over the resamples are the interval. The
threshold is held at the value each run's protocol chose, so the interval reflects which test
images were drawn, not the choice of threshold (for `test_best_optimistic` it is therefore
optimistic too). Seed spread (training noise) and this interval (test-set noise) answer
different questions and are reported side by side.

Each row is matched to the reference with the same model, loss, dataset and protocol
(benchmark/reporting/references.py), with the difference ours - reference and a verdict on
F1: `within tolerance`, `below`, `above`, `reference missing` (a known source not
transcribed), or empty when no source gives that protocol.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import DataError
from benchmark.reporting.references import METRICS, PROTOCOLS, Reference

IDENTITY = ("run", "experiment", "model", "loss", "dataset", "recipe", "seed")
"""Fields every metrics file carries (design.md, "Metrics file")."""
DATASET_ORDER = ("cdd", "levir-cd", "synthetic")
LOSS_ORDER = ("sisb", "bce", "contrastive", "ifn_ds")
RESAMPLES = 1000
"""Bootstrap resamples of the test images."""
COUNTS = ("tp", "fp", "fn", "tn")

WITHIN, BELOW, ABOVE, MISSING = "within tolerance", "below", "above", "reference missing"


def stray_files(metrics_dir: Path, runs: Collection[str]) -> list[Path]:
    """Metrics files of runs that are not in `runs` (e.g. left by an experiment since removed
    from params.yaml, or named before its seeds were several)."""
    return [path for path in sorted(metrics_dir.glob("*.json")) if path.stem not in runs]


def load_runs(metrics_dir: Path, only: Collection[str] | None = None) -> pd.DataFrame:
    """One row per run from `metrics_dir/*.json`, sorted by dataset, model, loss and seed.

    Args:
        metrics_dir: reports/metrics.
        only: the run names to read (the runs of params.yaml); None reads every file.

    Raises:
        DataError: no metrics file, a file that is not JSON or lacks the identity fields, two
            files for the same experiment and seed.
    """
    rows = []
    seen: dict[tuple[str, int], Path] = {}
    paths = sorted(metrics_dir.glob("*.json"))
    for path in paths if only is None else [p for p in paths if p.stem in only]:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}: not valid JSON ({exc}); rerun `dvc repro evaluate@{path.stem}`"
            ) from None
        missing = [key for key in (*IDENTITY, "fixed/f1") if key not in data]
        if missing:
            raise DataError(
                f"{path}: missing {', '.join(missing)}; not written by `cdbench evaluate`? "
                f"rerun `dvc repro evaluate@{path.stem}`"
            )
        key = (data["experiment"], data["seed"])
        if key in seen:
            raise DataError(
                f"{path} and {seen[key]} both hold {data['experiment']} seed {data['seed']}; "
                f"delete the stale one"
            )
        seen[key] = path
        rows.append(data)
    if not rows:
        raise DataError(
            f"{metrics_dir}: no metrics files; evaluate some runs first (`make demo`, or "
            f"`dvc repro evaluate@<run>`)"
        )
    runs = pd.DataFrame(rows)
    return runs.sort_values(
        ["dataset", "model", "loss", "seed"],
        key=lambda column: column.map(_rank) if column.name in ("dataset", "loss") else column,
        ignore_index=True,
    )


def _rank(value: Any) -> int:
    order = DATASET_ORDER + LOSS_ORDER
    return order.index(value) if value in order else len(order)


def protocols_of(runs: pd.DataFrame) -> list[str]:
    """The protocols (in report order) that at least one run was measured with."""
    return [p for p in PROTOCOLS if f"{p}/f1" in runs and runs[f"{p}/f1"].notna().any()]


def per_image_counts(per_image_dir: Path, runs: list[str], protocol: str) -> np.ndarray | None:
    """(seeds, images, 4) counts of `protocol` for `runs`, images paired by name; None when a
    run has no per-image file (e.g. evaluated by an older cdbench).

    Raises:
        DataError: the runs' test images differ, or a file lacks the protocol's columns.
    """
    view = "whole" if protocol.startswith("whole_") else "tiles"
    base = protocol.removeprefix("whole_")
    columns = [f"{base}/{name}" for name in COUNTS]
    tables = []
    for run in runs:
        path = per_image_dir / f"{run}.csv"
        if not path.exists():
            return None
        table = pd.read_csv(path)
        absent = [c for c in ("view", "name", *columns) if c not in table]
        if absent:
            raise DataError(f"{path}: missing column(s) {', '.join(absent)}; rerun its evaluation")
        table = table[table["view"] == view].set_index("name").sort_index()
        if tables and not table.index.equals(tables[0].index):
            raise DataError(
                f"{path}: its {view} test images differ from {per_image_dir / runs[0]}.csv's; "
                f"every seed of an experiment must be evaluated on the same test split"
            )
        tables.append(table)
    if not tables or tables[0].empty:
        return None
    return np.stack([table[columns].to_numpy(dtype=np.float64) for table in tables])


def bootstrap_f1(
    counts: np.ndarray, resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval (percent) of the seed-mean pooled F1 over resampled images.

    Args:
        counts: (seeds, images, 4) tp, fp, fn, tn of each image (same images for every seed).
        resamples: number of bootstrap draws.
        seed: the draws' random seed (the interval is reproducible).
        level: the interval's coverage.
    """
    _, images, _ = counts.shape
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, images, size=(resamples, images))
    weights = np.zeros((resamples, images))
    np.add.at(weights, (np.repeat(np.arange(resamples), images), draws.ravel()), 1.0)
    pooled = np.einsum("rn,snk->srk", weights, counts)  # (seeds, resamples, 4)
    tp, fp, fn = pooled[..., 0], pooled[..., 1], pooled[..., 2]
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    mean = f1.mean(axis=0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(mean, [tail, 100 - tail])
    return float(low * 100), float(high * 100)


def summarise(
    runs: pd.DataFrame,
    references: list[Reference],
    per_image_dir: Path | None = None,
    tolerance: float = 1.0,
    resamples: int = RESAMPLES,
) -> pd.DataFrame:
    """One row per (experiment, protocol): our mean/std over seeds (percent), the bootstrap
    interval of F1 (when `per_image_dir` is given), and the matching reference.

    Columns: experiment, model, loss, dataset, recipe, protocol, seeds, runs, `<m>` and
    `<m>_std` for m in METRICS, f1_ci_low, f1_ci_high, reference, citation, ref_status
    ("available" | "missing" | "none"), `ref_<m>`, `diff_<m>`, tolerance, verdict, note.
    """
    by_key = {reference.key: reference for reference in references}
    rows = []
    for experiment, group in runs.groupby("experiment", sort=False):
        first = group.iloc[0]
        for protocol in protocols_of(group):
            row: dict[str, Any] = {
                "experiment": experiment,
                "model": first["model"],
                "loss": first["loss"],
                "dataset": first["dataset"],
                "recipe": first["recipe"],
                "protocol": protocol,
                "seeds": len(group),
                "runs": " ".join(group["run"]),
            }
            for metric in METRICS:
                values = group[f"{protocol}/{metric}"].astype(float) * 100
                row[metric] = values.mean()
                row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            row["f1_ci_low"] = row["f1_ci_high"] = np.nan
            if per_image_dir is not None:
                counts = per_image_counts(per_image_dir, list(group["run"]), protocol)
                if counts is not None:
                    row["f1_ci_low"], row["f1_ci_high"] = bootstrap_f1(counts, resamples)
            key = (first["model"], first["loss"], first["dataset"], protocol)
            row.update(_reference_columns(row, by_key.get(key), tolerance))
            rows.append(row)
    return pd.DataFrame(rows)


def _reference_columns(
    ours: dict[str, Any], reference: Reference | None, tolerance: float
) -> dict[str, Any]:
    columns: dict[str, Any] = {
        "reference": reference.source if reference else "",
        "citation": reference.citation if reference else "",
        "note": reference.note if reference else "",
        "ref_status": "none"
        if reference is None
        else "missing"
        if reference.missing
        else "available",
    }
    values = reference.values.as_dict() if reference else {}
    for metric in METRICS:
        value = values.get(metric)
        columns[f"ref_{metric}"] = np.nan if value is None else value
        columns[f"diff_{metric}"] = ours[metric] - columns[f"ref_{metric}"]
    limit = tolerance if reference is None or reference.tolerance is None else reference.tolerance
    columns["tolerance"] = limit
    columns["verdict"] = verdict(columns["diff_f1"], limit, columns["ref_status"])
    return columns


def verdict(difference: float, tolerance: float, status: str) -> str:
    """The verdict on one figure: ours - reference = `difference` percentage points."""
    if status == "none":
        return ""
    if status == "missing" or np.isnan(difference):
        return MISSING
    if difference < -tolerance:
        return BELOW
    return WITHIN if difference <= abs(tolerance) else ABOVE


def unmatched(references: list[Reference], summary: pd.DataFrame) -> list[Reference]:
    """References whose model, loss, dataset and protocol have no row in `summary`."""
    present = (
        set(
            zip(
                summary["model"],
                summary["loss"],
                summary["dataset"],
                summary["protocol"],
                strict=True,
            )
        )
        if len(summary)
        else set()
    )
    return [reference for reference in references if reference.key not in present]
