"""Our results, aggregated: one row per experiment and protocol, beside its reference.

Reads what `cdbench evaluate` wrote (benchmark/evaluation/evaluate.py): per run (experiment x
seed) the headline `reports/metrics/<run>.json` (its presence means "evaluated"), the record
`reports/runs/<run>.json` beside it (identity, provenance, counts; benchmark/evaluation/
outputs.py) and `reports/per_image/<run>.csv`. A run's data is its record.

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

Nothing is credited that was not computed here (the metrics files of
benchmark/evaluation/evaluate.py). `load_runs`
refuses, naming the file, the protocol or field, and the fix:
- a file whose identity (run, experiment, model, loss, dataset, recipe, seed) disagrees with
  its file name, or, when params.yaml is given (`ExpectedRuns`), with what params.yaml says
  that run is (its experiment's model, loss, dataset, recipe; a seed it lists);
- a protocol whose stored precision/recall/F1/IoU/OA/kappa differs from the one its pooled
  counts tp/fp/fn/tn give (`Counts.scores`, benchmark/evaluation/metrics.py: the one formula)
  by more than `RATE_RTOL` relative: the file was edited or is corrupt. Every rate the report
  and `cdbench check` use is the recomputed one, never the stored one;
- a headline metrics file without its record, or whose numbers are not those the record's
  counts give (`outputs.headline` of the recomputed rates);
and `per_image_counts` refuses a per-image file whose counts do not add up to the metrics
file's pooled counts (the bootstrap resamples those rows).
Metrics files of runs that params.yaml does not list are not read at all: the commands list
them as ignored (`stray_files`) and go on, since a removed experiment's old file must not
block the report of the current ones, nor be credited in it.

Runs scored from a checkpoint FILE (`cdbench evaluate --weights`, benchmark/models/released.py)
are accepted by name, explicitly: `<run>-released` (an author's released checkpoint) or
`<run>-weights` (one of ours), where `<run>` is a run params.yaml lists, the file's
`weights_provenance` must be the one its suffix says (`FROM_FILE`), and every other identity
field must be that run's. `load_runs` reads them only when asked (`from_files=True`: the
report), so `cdbench check` never credits them; `summarise` keeps them in rows of their own
(column `weights_provenance`), which the report shows apart from the trained runs.

Each row also carries its caveats: `seeds_listed` (how many seeds params.yaml lists),
`missing_seeds` (those not evaluated) and `stale_runs` (runs scored from a checkpoint trained
under another configuration, `cdbench evaluate --allow-stale-checkpoint`), summed up in
`caveat`. The report shows them; `cdbench check` fails on them unless told otherwise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.config import Params
from benchmark.data.datasets import DATASETS
from benchmark.errors import DataError
from benchmark.evaluation.metrics import Counts
from benchmark.evaluation.outputs import headline, record_path
from benchmark.reporting.references import METRICS, PROTOCOLS, Reference, tolerance_for

IDENTITY = ("run", "experiment", "model", "loss", "dataset", "recipe", "seed")
"""Fields every metrics file carries (benchmark/evaluation/evaluate.py)."""
DATASET_ORDER = tuple(DATASETS)
LOSS_ORDER = ("sisb", "bce", "contrastive", "ifn_ds")
RESAMPLES = 1000
"""Bootstrap resamples of the test images."""
COUNTS = ("tp", "fp", "fn", "tn")
RATES = ("precision", "recall", "f1", "iou", "oa", "kappa")
"""The figures a metrics file stores per protocol, each recomputed from its counts."""
RATE_RTOL = 1e-6
"""How far (relative) a stored rate may be from the recomputed one: rounding, no more."""

WITHIN, BELOW, ABOVE, MISSING = "within tolerance", "below", "above", "reference missing"

TRAINED = "trained run"
"""`weights_provenance` of a run scored from its own training (and of files that predate it)."""
FROM_FILE = {"released checkpoint": "-released", "cdbench checkpoint": "-weights"}
"""`weights_provenance` of a run scored with --weights -> the suffix of its name
(benchmark/models/released.py `RUN_SUFFIX`)."""


def split_run_name(stem: str) -> tuple[str, str | None]:
    """(the trained run's name, the provenance its suffix names) for `<run>-released` /
    `<run>-weights`; (stem, None) for any other name."""
    for provenance, suffix in FROM_FILE.items():
        if stem.endswith(suffix):
            return stem.removesuffix(suffix), provenance
    return stem, None


@dataclass(frozen=True)
class ExpectedRuns:
    """What params.yaml says the runs are: the reference a metrics file's identity is checked
    against, and the seeds each experiment should have."""

    identities: dict[str, dict[str, Any]]
    """run name -> {run, experiment, model, loss, dataset, recipe, seed}."""
    seeds: dict[str, list[int]]
    """experiment -> the seeds it lists."""
    source: str = "params.yaml"
    """Where they come from (named in errors)."""

    @staticmethod
    def from_params(params: Params, source: str = "params.yaml") -> ExpectedRuns:
        identities = {}
        for spec in params.runs():
            experiment = params.experiments[spec.experiment]
            identities[spec.name] = {
                "run": spec.name,
                "experiment": spec.experiment,
                "model": experiment.model,
                "loss": experiment.loss,
                "dataset": experiment.dataset,
                "recipe": experiment.recipe,
                "seed": spec.seed,
            }
        seeds = {name: list(e.seeds) for name, e in params.experiments.items()}
        return ExpectedRuns(identities, seeds, source)


def stray_files(metrics_dir: Path, runs: Collection[str]) -> list[Path]:
    """Metrics files of runs that are not in `runs` (e.g. left by an experiment since removed
    from params.yaml, or named before its seeds were several)."""
    return [
        path
        for path in sorted(metrics_dir.glob("*.json"))
        if path.stem not in runs and split_run_name(path.stem)[0] not in runs
    ]


def load_runs(
    metrics_dir: Path, expected: ExpectedRuns | None = None, from_files: bool = False
) -> pd.DataFrame:
    """One row per run from `metrics_dir/*.json`, sorted by dataset, model, loss and seed,
    every rate recomputed from its counts (see the module docstring).

    Args:
        metrics_dir: reports/metrics.
        expected: the runs of params.yaml: only their files are read, and each file's identity
            must be the one params.yaml gives; None reads every file, checking each identity
            against its file name only.
        from_files: also read the runs scored from a checkpoint file (`<run>-released`,
            `<run>-weights`); False leaves them out (`cdbench check` credits trained runs only).

    Raises:
        DataError: no metrics file, a file that is not JSON or lacks the identity fields, an
            identity that disagrees with the file name or params.yaml, a stored rate that its
            counts do not give, two files for the same experiment and seed.
    """
    rows = []
    seen: dict[tuple[str, int, str], Path] = {}
    paths = sorted(metrics_dir.glob("*.json"))
    if not from_files:
        paths = [path for path in paths if split_run_name(path.stem)[1] is None]
    if expected is not None:
        paths = [path for path in paths if split_run_name(path.stem)[0] in expected.identities]
    for path in paths:
        data = verified_metrics(path, expected)
        key = (data["experiment"], data["seed"], data["weights_provenance"])
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
        ["dataset", "model", "loss", "weights_provenance", "seed"],
        key=_sort_key,
        ignore_index=True,
    )


def _sort_key(column: pd.Series) -> pd.Series:
    """Datasets and losses in report order; trained runs before runs scored from a file."""
    if column.name in ("dataset", "loss"):
        return column.map(_rank)
    if column.name == "weights_provenance":
        return column.map(lambda value: value != TRAINED)
    return column


def verified_metrics(metrics_path: Path, expected: ExpectedRuns | None = None) -> dict[str, Any]:
    """The record of headline file `metrics_path` (`outputs.record_path`), its identity
    checked and every rate replaced by the one its counts give (a stored rate that differs is
    refused), the headline checked against those rates; `stale_checkpoint` is None when absent.

    Raises:
        DataError: see `load_runs`.
    """
    path = record_path(metrics_path)
    rerun = f"re-run `dvc repro evaluate@{path.stem}`"
    if not path.exists():
        raise DataError(
            f"{metrics_path}: its record {path} (identity, provenance, counts) is missing, so "
            f"its numbers cannot be checked and are not credited; {rerun}"
        )
    data = _json_object(path, rerun)
    missing = [key for key in (*IDENTITY, *(f"fixed/{c}" for c in COUNTS)) if key not in data]
    if missing:
        raise DataError(
            f"{path}: missing {', '.join(missing)}; not written by `cdbench evaluate`? {rerun}"
        )
    data.setdefault("weights_provenance", TRAINED)
    _check_identity(path, data, expected)
    for protocol in sorted({key.split("/")[0] for key in data if key.count("/") == 1}):
        _recompute_rates(path, data, protocol)
    _check_headline(metrics_path, _json_object(metrics_path, rerun), data, rerun)
    stale = data.setdefault("stale_checkpoint", None)
    if stale is not None and not isinstance(stale, dict):
        raise DataError(
            f"{path}: stale_checkpoint is {stale!r}, expected null or the override's record "
            f"{{checkpoint_digest, current_digest, differences}}; {rerun}"
        )
    return data


def _json_object(path: Path, rerun: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); {rerun}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(data).__name__}; {rerun}")
    return data


def _check_headline(path: Path, found: dict[str, Any], record: dict[str, Any], rerun: str) -> None:
    """Refuse headline file `path` unless it holds exactly `outputs.headline(record)` (the
    record's rates already recomputed from its counts), up to float rounding."""
    want = headline(record)
    flat_found = _flat_numbers(found)
    flat_want = _flat_numbers(want)
    wrong = [
        f"{key} is {flat_found.get(key, 'absent')!r}, expected {value!r}"
        for key, value in flat_want.items()
        if not isinstance(flat_found.get(key), int | float)
        or not math.isclose(flat_found[key], value, abs_tol=1e-9)
    ]
    wrong += [f"{key} is not expected" for key in flat_found.keys() - flat_want.keys()]
    if wrong:
        raise DataError(
            f"{path}: {'; '.join(wrong)} (the percent its record {record_path(path)}'s counts "
            f"give); the file was edited or is stale; {rerun}"
        )


def _flat_numbers(nested: dict[str, Any]) -> dict[str, Any]:
    """`{protocol: {figure: value}}` as `{"protocol.figure": value}` (as DVC names them)."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    return flat


def _check_identity(path: Path, data: dict[str, Any], expected: ExpectedRuns | None) -> None:
    """The identity fields against the file name and, when given, params.yaml."""
    edited = f"the file was edited, renamed or copied; re-run `dvc repro evaluate@{path.stem}`"
    base, named = split_run_name(path.stem)
    provenance = data["weights_provenance"]
    if named is not None or provenance != TRAINED:
        if provenance != named:
            raise DataError(
                f"{path}: weights_provenance is {provenance!r}, but its name says "
                f"{named or TRAINED!r} (a run scored with --weights is named <run>"
                f"{'/<run>'.join(FROM_FILE.values())}); {edited}"
            )
        edited = (
            f"the file was edited, renamed or copied; re-run `cdbench evaluate {base} --weights`"
        )
    if data["run"] != path.stem:
        raise DataError(
            f"{path}: run is {data['run']!r} but its file name says {path.stem!r}; {edited}"
        )
    if expected is None:
        names = {data["experiment"], f"{data['experiment']}-s{data['seed']}"}
        if base not in names:
            raise DataError(
                f"{path}: experiment {data['experiment']!r} seed {data['seed']!r} would be "
                f"named {' or '.join(sorted(map(repr, names)))}, not {path.stem!r}; {edited}"
            )
        return
    want = {**expected.identities[base], "run": path.stem}
    for field in IDENTITY:
        found = data[field]
        if found != want[field] or type(found) is not type(want[field]):
            raise DataError(
                f"{path}: {field} is {found!r} but {expected.source} says run {path.stem!r} "
                f"has {field} {want[field]!r} (experiments.{want['experiment']}); the file was "
                f"edited or written for another configuration; re-run "
                f"`dvc repro evaluate@{path.stem}`"
            )


def _recompute_rates(path: Path, data: dict[str, Any], protocol: str) -> None:
    """Replace `protocol`'s rates in `data` by those of its counts; refuse a stored rate that
    differs by more than `RATE_RTOL`, and rates without counts."""
    rerun = f"re-run `dvc repro evaluate@{path.stem}`"
    stored = {rate: data[f"{protocol}/{rate}"] for rate in RATES if f"{protocol}/{rate}" in data}
    present = {name: data[f"{protocol}/{name}"] for name in COUNTS if f"{protocol}/{name}" in data}
    if not stored and not present:
        return  # e.g. `<protocol>/threshold` alone
    if len(present) < len(COUNTS):
        absent = [name for name in COUNTS if name not in present]
        raise DataError(
            f"{path}: protocol {protocol}: no {', '.join(absent)}, so its rates cannot be "
            f"recomputed and are not credited; {rerun}"
        )
    bad = {k: v for k, v in present.items() if type(v) is not int or v < 0}
    if bad:
        raise DataError(
            f"{path}: protocol {protocol}: counts must be non-negative integers, found "
            + ", ".join(f"{k}={v!r}" for k, v in bad.items())
            + f"; the file was edited or is corrupt; {rerun}"
        )
    counts = Counts(**present)
    for rate, value in counts.scores().items():
        found = stored.get(rate, value)
        if not _same(found, value):
            counted = " ".join(f"{k}={v}" for k, v in present.items())
            raise DataError(
                f"{path}: protocol {protocol}: {rate} is {found!r} but its counts {counted} "
                f"give {value:.4f}; the file was edited or is corrupt; {rerun}"
            )
        data[f"{protocol}/{rate}"] = value


def _same(stored: Any, recomputed: float) -> bool:
    if isinstance(stored, bool) or not isinstance(stored, int | float):
        return False
    return math.isclose(stored, recomputed, rel_tol=RATE_RTOL, abs_tol=1e-12)


def _rank(value: Any) -> int:
    order = DATASET_ORDER + LOSS_ORDER
    return order.index(value) if value in order else len(order)


def protocols_of(runs: pd.DataFrame) -> list[str]:
    """The protocols (in report order) that at least one run was measured with."""
    return [p for p in PROTOCOLS if f"{p}/f1" in runs and runs[f"{p}/f1"].notna().any()]


def per_image_counts(
    per_image_dir: Path, runs: list[str], protocol: str, pooled: np.ndarray | None = None
) -> np.ndarray | None:
    """(seeds, images, 4) counts of `protocol` for `runs`, images paired by name; None when a
    run has no per-image file (e.g. evaluated by an older cdbench).

    `pooled`: (seeds, 4) tp, fp, fn, tn of each run's metrics file; each run's per-image
    counts must add up to them exactly.

    Raises:
        DataError: the runs' test images differ, a file lacks the protocol's columns, or its
            counts do not add up to the pooled ones.
    """
    view = "whole" if protocol.startswith("whole_") else "tiles"
    base = protocol.removeprefix("whole_")
    columns = [f"{base}/{name}" for name in COUNTS]
    tables: list[pd.DataFrame] = []
    for run in runs:
        path = per_image_dir / f"{run}.csv"
        if not path.exists():
            return None
        table = pd.read_csv(path)
        absent = [c for c in ("view", "name", *columns) if c not in table]
        if absent:
            raise DataError(f"{path}: missing column(s) {', '.join(absent)}; rerun its evaluation")
        table = table[table["view"] == view].set_index("name").sort_index()
        if pooled is not None and not table.empty:
            sums = table[columns].sum().to_numpy()
            expected = pooled[len(tables)]
            if not np.array_equal(sums, expected):
                raise DataError(
                    f"{path}: protocol {protocol}: its per-image {'/'.join(COUNTS)} add up to "
                    f"{' '.join(str(int(v)) for v in sums)} but the pooled counts of "
                    f"{run}.json are {' '.join(str(int(v)) for v in expected)}; one of the two "
                    f"was edited or is stale; re-run `dvc repro evaluate@{run}`"
                )
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
    expected: ExpectedRuns | None = None,
) -> pd.DataFrame:
    """One row per (experiment, protocol): our mean/std over seeds (percent), the bootstrap
    interval of F1 (when `per_image_dir` is given), the matching reference, and the caveats.

    Runs scored from a checkpoint file get rows of their own (one per experiment, provenance
    and protocol; no missing-seed caveat).

    Columns: experiment, model, loss, dataset, recipe, protocol, weights_provenance, seeds,
    runs, `<m>` and `<m>_std` for m in METRICS, f1_ci_low, f1_ci_high, seeds_listed, missing_seeds,
    stale_runs, caveat, reference, citation, ref_status ("available" | "missing" | "none"),
    `ref_<m>`, `diff_<m>`, tolerance, tolerance_from, tolerance_formula
    (`references.tolerance_for`), verdict, note. `seeds_listed` is params.yaml's count when
    `expected` is given, else the evaluated count.
    """
    by_key = {reference.key: reference for reference in references}
    rows = []
    if "weights_provenance" not in runs:
        runs = runs.assign(weights_provenance=TRAINED)
    keys = ["experiment", "weights_provenance"]
    for (experiment, provenance), group in runs.groupby(keys, sort=False):
        first = group.iloc[0]
        trained = provenance == TRAINED
        caveats = _caveats(str(experiment), group, expected if trained else None)
        for protocol in protocols_of(group):
            row: dict[str, Any] = {
                "experiment": experiment,
                "model": first["model"],
                "loss": first["loss"],
                "dataset": first["dataset"],
                "recipe": first["recipe"],
                "protocol": protocol,
                "weights_provenance": provenance,
                "seeds": len(group),
                "runs": " ".join(group["run"]),
            }
            for metric in METRICS:
                values = group[f"{protocol}/{metric}"].astype(float) * 100
                row[metric] = values.mean()
                row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            row["f1_ci_low"] = row["f1_ci_high"] = np.nan
            if per_image_dir is not None:
                pooled = group[[f"{protocol}/{name}" for name in COUNTS]].to_numpy(np.float64)
                counts = per_image_counts(per_image_dir, list(group["run"]), protocol, pooled)
                if counts is not None:
                    row["f1_ci_low"], row["f1_ci_high"] = bootstrap_f1(counts, resamples)
            row.update(caveats)
            key = (first["model"], first["loss"], first["dataset"], protocol)
            row.update(_reference_columns(row, by_key.get(key), tolerance))
            rows.append(row)
    return pd.DataFrame(rows)


def _caveats(experiment: str, group: pd.DataFrame, expected: ExpectedRuns | None) -> dict[str, Any]:
    """seeds_listed, missing_seeds ("1 2"), stale_runs and the sentence `caveat` saying them."""
    evaluated = [int(seed) for seed in group["seed"]]
    listed = expected.seeds.get(experiment, evaluated) if expected is not None else evaluated
    missing = [seed for seed in listed if seed not in evaluated]
    records = group["stale_checkpoint"] if "stale_checkpoint" in group else [None] * len(group)
    stale = [
        str(run)
        for run, record in zip(group["run"], records, strict=True)
        if isinstance(record, dict)
    ]
    sentences = []
    if missing:
        sentences.append(
            f"{len(listed) - len(missing)} of {len(listed)} seeds evaluated "
            f"(missing: seed {', '.join(map(str, missing))})"
        )
    if stale:
        sentences.append(f"stale checkpoint (--allow-stale-checkpoint): {', '.join(stale)}")
    return {
        "seeds_listed": len(listed),
        "missing_seeds": " ".join(map(str, missing)),
        "stale_runs": " ".join(stale),
        "caveat": "; ".join(sentences),
    }


def seeds_cell(evaluated: int, listed: int) -> str:
    """`3`, or `1 of 3` when fewer seeds were evaluated than params.yaml lists."""
    return f"{evaluated} of {listed}" if evaluated < listed else str(evaluated)


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
    limit = tolerance_for(reference, int(ours["seeds"]), tolerance)
    columns["tolerance"] = limit.value
    columns["tolerance_from"] = limit.origin
    columns["tolerance_formula"] = limit.formula
    columns["verdict"] = verdict(columns["diff_f1"], limit.value, columns["ref_status"])
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
