"""`cdbench evaluate`: score a trained run on the test split under every protocol.

Protocols (all pooled over the split: TP/FP/FN/TN summed over every pixel, then the ratios):
- `fixed`: the fixed threshold of the recipe's source (BSFNet's test script: distance > 1;
  open-cd: probability > 0.3; CDLab: > 0.5). Exact counts.
- `val_threshold`: the threshold that maximises F1 on the VALIDATION split, applied to test.
  The honest choice when a source gives no threshold.
- `test_best_optimistic`: the best F1 over thresholds chosen on the TEST split itself, as
  BSFNet's validation code (`MaxF`) reports it. Optimistic by construction: labelled so.
- LEVIR-CD: each of the above on the 2048 test tiles (256 x 256) and, prefixed `whole_`, on
  the 128 whole 1024 x 1024 test images (open-cd's protocol).

Thresholds are searched on a binned histogram of the score (2000 bins; benchmark/evaluation/
metrics.py), which keeps memory constant; a pixel is changed when its score is strictly above
the threshold, everywhere. Outputs, read by `cdbench report`:
- `reports/runs/<run>.json`, the run's record: flat, identity and provenance fields, then
  `<protocol>/<figure>` (threshold, counts, rates); `reports/metrics/<run>.json`, its headline
  (numbers only, what DVC shows as metrics): benchmark/evaluation/outputs.py;
- `reports/curves/<run>.json`: the test precision-recall curve(s) (`test`, `whole_test`) and
  the training history (`training`: the records of checkpoints/<run>/summary.json);
- `reports/pr/<run>.csv`, `reports/training/<run>.csv`, `reports/selection/<run>.csv`: the
  tiles' test PR curve, the training history and the model-selection scores (validation
  split unless the recipe selects on test) as CSV tables, which DVC's `plots:` draw (rates in
  percent, as every table; thresholds, losses and learning rates in their own units);
- `reports/per_image/<run>.csv`: each test pair's tp/fp/fn/tn at the threshold of each
  protocol (from per-image histograms; the report's bootstrap resamples these rows);
- `reports/predictions/<run>.npz`: a few test pairs as arrays (images A and B, label, score
  map, prediction at the validation-chosen threshold; benchmark/evaluation/thumbnails.py).
Evaluation draws nothing: `cdbench report` draws every figure from these files.
The training run's MLflow record gets the test metrics and these files as artifacts.
They are written into a staging folder, then published as one set, the metrics file last
(`output_paths`; the guarantee is `benchmark.publish.StagedOutputs`'): a reader sees the
previous evaluation or the new one, never metrics beside another model's prediction maps; an
evaluation killed while publishing leaves at worst a set without its metrics file, which every
reader takes as "not evaluated".

The checkpoint must have been trained under the current configuration: its stored digest must
be the one `cdbench train` would compute now (benchmark/run.py `resolved_config` and
`digest`: params.yaml's experiment, recipe and seed, with this command's runtime, so
`--bf16` and the like count as at training). Otherwise the run's numbers would be labelled
with a recipe that did not produce them, so `evaluate` refuses, naming the settings that differ.
`allow_stale_checkpoint` (`--allow-stale-checkpoint`) scores it anyway, and then every record
says so: the run record's `stale_checkpoint` ({checkpoint_digest, current_digest,
differences}; null otherwise), the MLflow tags `stale_checkpoint`, `checkpoint_digest`,
`current_config_digest`, and the report's and `cdbench check`'s rows (a mark and a note;
check fails on them unless told otherwise). `config_digest` is always the checkpoint's.

Checked against BSFNet's `utils/metric.py` (pooled counts, threshold sweep) and mmseg's
`IoUMetric` (pooled per-class intersection and union) for the meaning of each figure.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import Params, RunSpec, RuntimeConfig
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.datasets import DATASETS
from benchmark.errors import CdbenchError
from benchmark.evaluation.metrics import Counts
from benchmark.evaluation.outputs import headline
from benchmark.evaluation.predict import SplitScores, new_split_scores, score_kind, score_split
from benchmark.evaluation.thumbnails import Thumbnails
from benchmark.models.released import RUN_SUFFIX, load_weights, sha256_of
from benchmark.progress import progress_bar
from benchmark.publish import StagedOutputs
from benchmark.run import (
    Trainable,
    digest,
    eval_loader,
    load_selected,
    normalizer,
    prepared_root,
    resolved_config,
    to_scoring_device,
    untrained,
)
from benchmark.runlock import run_lock
from benchmark.tracking.glance import SELECTION_RATE_FIGURES

THUMBNAILS = 4
"""Test pairs drawn as prediction maps for the report."""


def evaluate_run(
    params: Params,
    spec: RunSpec,
    checkpoint_dir: Path,
    reports: Path = Path("reports"),
    runtime: RuntimeConfig | None = None,
    tracking: bool = True,
    allow_stale_checkpoint: bool = False,
    weights: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the selected model of `spec` (checkpoint_dir/best.pt); returns the metrics.

    One evaluation of a run at a time: it holds `evaluate_lock_path(reports, run)`
    (benchmark/runlock.py) while it scores and writes, so a second one is refused, naming
    the holder's PID, instead of racing to write the same files.

    `weights`: score this checkpoint file instead (`--weights`; benchmark/models/released.py:
    one of ours, or an author's released one through its key table) with the experiment's
    model, data and protocols. Its results are written as run `<run>-released` (an author's
    file) or `<run>-weights` (ours), never over the trained run's, and record the file's
    SHA-256 and provenance (`weights`, `weights_sha256`, `weights_provenance`; MLflow tags
    of a run of that name). The trained run's checkpoint folder is not read.

    Raises:
        CdbenchError: another process evaluates this run into `reports`, no finished run, a
            checkpoint of another run, or one trained under another configuration (unless
            `allow_stale_checkpoint`; see the module docstring); with `weights`, a file that
            does not load (benchmark/models/released.py `load_weights`: the key is named).
    """
    runtime = runtime or params.runtime
    from_file = None
    if weights is not None:  # its name (<run>-released / -weights) depends on what it holds
        from_file = load_scoring_model(params, spec, checkpoint_dir, runtime, weights=weights)
    name = from_file.run if from_file else spec.name
    with run_lock(evaluate_lock_path(reports, name), f"cdbench evaluate {name}"):
        model = from_file or load_scoring_model(
            params, spec, checkpoint_dir, runtime, allow_stale_checkpoint
        )
        return _score_and_write(params, spec, model, reports, runtime, tracking)


def evaluate_lock_path(reports: Path, run: str) -> Path:
    """`reports/.locks/evaluate-<run>.lock`: beside the run's outputs, outside every folder
    that DVC tracks (reports/metrics, ... are the report stage's dependencies)."""
    return reports / ".locks" / f"evaluate-{run}.lock"


@dataclass(frozen=True)
class ScoringModel:
    """A model ready to score (`load_scoring_model`) and the identity of its weights."""

    trainable: Trainable
    device: torch.device
    run: str
    """The name its results go under: the run's, or `<run>-released` / `<run>-weights`."""
    checkpoint: Path
    """The file its weights were read from."""
    step: int | None
    """The training step of those weights (None for an author's file)."""
    selection: dict[str, Any]
    """How the step was selected (best.pt's `selection`; empty for a weights file)."""
    summary: dict[str, Any]
    """The training run's summary.json (empty for a weights file)."""
    identity: dict[str, Any]
    """config_digest, stale_checkpoint, weights, weights_sha256, weights_provenance: the
    identity fields of the metrics file."""


def load_scoring_model(
    params: Params,
    spec: RunSpec,
    checkpoint_dir: Path,
    runtime: RuntimeConfig,
    allow_stale_checkpoint: bool = False,
    weights: Path | None = None,
) -> ScoringModel:
    """The experiment's model and loss with the weights to score, on `runtime`'s device in
    eval mode: what `cdbench evaluate` and `cdbench predict` score with.

    Without `weights`: the selected model of the finished run (`checkpoint_dir/best.pt` and
    summary.json, benchmark/run.py `load_selected`), refused when trained under another
    configuration than the current one unless `allow_stale_checkpoint` (see the module
    docstring). With `weights` (`--weights` / `--released`): that file, read by
    benchmark/models/released.py `load_weights` (ours, or an author's through its key table);
    the run's checkpoint folder is not read.

    Raises:
        CdbenchError: no finished run, a checkpoint of another run or a stale one; with
            `weights`, a file that is missing or does not load (the message names the file
            or the key).
    """
    experiment = params.experiment(spec.experiment)
    trainable = untrained(experiment, params.recipes[experiment.recipe])
    if weights is not None:
        loaded = load_weights(weights, experiment.model, trainable)
        step = loaded.details.get("trained_step")
        return ScoringModel(
            trainable=trainable,
            device=to_scoring_device(trainable, runtime),
            run=spec.name + RUN_SUFFIX[loaded.provenance],
            checkpoint=weights,
            step=None if step is None else int(step),
            selection={},
            summary={},
            identity={
                "config_digest": "",
                "stale_checkpoint": None,
                "weights": loaded.record(),
                "weights_sha256": loaded.sha256,
                "weights_provenance": loaded.provenance,
            },
        )
    best_path = checkpoint_dir / "best.pt"
    best, summary = load_selected(checkpoint_dir, spec)
    stale = stale_checkpoint(best, resolved_config(params, spec, runtime))
    if stale is not None and not allow_stale_checkpoint:
        raise CdbenchError(
            f"{best_path}: trained under another configuration than the current one "
            f"(checkpoint digest {stale['checkpoint_digest'][:12]}, current "
            f"{stale['current_digest'][:12]}; differing: {_listed(stale['differences'])}); its "
            f"results would be labelled with a recipe that did not produce them. Retrain it "
            f"(`dvc repro train@{spec.name}`, or `cdbench train {spec.experiment} --seed "
            f"{spec.seed}`, which sets the old checkpoint aside), or pass "
            f"--allow-stale-checkpoint to use it anyway (evaluate records it as stale)"
        )
    trainable.load_state_dict(best["model_and_loss"])
    return ScoringModel(
        trainable=trainable,
        device=to_scoring_device(trainable, runtime),
        run=spec.name,
        checkpoint=best_path,
        step=int(best["step"]),
        selection=dict(best["selection"]),
        summary=summary,
        identity={
            "config_digest": best.get("digest") or "",
            "stale_checkpoint": stale,
            "weights": None,
            "weights_sha256": sha256_of(best_path),
            "weights_provenance": "trained run",
        },
    )


def _score_and_write(
    params: Params,
    spec: RunSpec,
    model: ScoringModel,
    reports: Path,
    runtime: RuntimeConfig,
    tracking: bool,
) -> dict[str, Any]:
    """Score `model` on the experiment's test split under every protocol and publish the
    metrics, curves, per-image counts and prediction maps as run `model.run`."""
    experiment = params.experiment(spec.experiment)
    recipe = params.recipes[experiment.recipe]
    trainable, device, run = model.trainable, model.device, model.run
    summary, identity = model.summary, model.identity
    kind = score_kind(trainable.loss)
    threshold = getattr(recipe.thresholds, kind)
    root = prepared_root(params, experiment.dataset)

    views = [("", False)]
    if DATASETS[experiment.dataset].has_whole:
        views.append(("whole_", True))
    metrics: dict[str, Any] = {
        "run": run,
        "experiment": spec.experiment,
        "model": experiment.model,
        "loss": experiment.loss,
        "dataset": experiment.dataset,
        "recipe": experiment.recipe,
        "seed": spec.seed,
        "config_digest": identity["config_digest"],
        "stale_checkpoint": identity["stale_checkpoint"],
        "weights_provenance": identity["weights_provenance"],
        "weights_sha256": identity["weights_sha256"],
        "weights": identity["weights"],
        "mlflow_run_id": summary.get("mlflow_run_id") or "",
        "git_commit": _git_commit(),
        "score_kind": kind,
        "selected_step": model.step,
        "selection_split": model.selection.get("split"),
        "selection_metric": model.selection.get("metric"),
        "selection_score": model.selection.get("score"),
    }
    if tracking and identity["weights"] is not None:
        metrics["mlflow_run_id"] = _new_mlflow_run(metrics)
    curves: dict[str, Any] = {}
    per_image: list[dict[str, Any]] = []
    thumbnails: list[torch.Tensor] = []
    thumbnail_threshold = threshold
    for prefix, whole in views:
        val, _ = score_named_split(
            trainable, root, "val", whole, kind, threshold, recipe, runtime, device, label=run
        )
        keep = 0 if whole else THUMBNAILS
        test, kept = score_named_split(
            trainable, root, "test", whole, kind, threshold, recipe, runtime, device, keep, True,
            label=run,
        )  # fmt: skip
        val_threshold, _ = val.histogram.best_threshold()
        test_threshold, test_best = test.histogram.best_threshold()
        if kept:
            thumbnails, thumbnail_threshold = kept, val_threshold
        protocols = {
            "fixed": (threshold, test.fixed.counts()[0]),
            "val_threshold": (val_threshold, test.histogram.counts_at_threshold(val_threshold)),
            "test_best_optimistic": (test_threshold, test_best),
        }
        for name, (value, counts) in protocols.items():
            metrics.update(_flat(f"{prefix}{name}", value, counts))
        metrics[f"{prefix}test_pairs"] = test.pairs
        curves[f"{prefix}test"] = _rounded(test.histogram.pr_curve())
        per_image += _per_image_rows(test, "whole" if whole else "tiles", protocols)
    metrics["thumbnail_threshold"] = round(float(thumbnail_threshold), 6)
    curves["selected_step"] = model.step
    curves["training"] = summary.get("history", [])

    targets = output_paths(reports, run)
    with StagedOutputs(targets, last="metrics", label=f"evaluate-{run}") as staged:
        staged.path("record").write_text(json.dumps(metrics, indent=2) + "\n")
        staged.path("metrics").write_text(json.dumps(headline(metrics), indent=2) + "\n")
        staged.path("curves").write_text(json.dumps(curves) + "\n")
        _write_records(_in_percent(_pr_records(curves["test"]), PR_RATES), staged.path("pr"))
        _write_records(_history_records(curves["training"], "train/"), staged.path("training"))
        split = f"{metrics['selection_split'] or 'val'}/"
        selection = _in_percent(_history_records(curves["training"], split), SELECTION_RATE_FIGURES)
        _write_records(selection, staged.path("selection"))
        _write_per_image(per_image, staged.path("per_image"))
        _write_thumbnails(root, thumbnails, thumbnail_threshold, kind, staged.path("predictions"))
        staged.publish()
        if tracking and metrics["mlflow_run_id"]:
            files = [targets[key] for key in LOGGED_OUTPUTS]
            trained = model.checkpoint if identity["weights"] is None else None
            _log(metrics, files, spec, trained)
    return metrics


def _new_mlflow_run(metrics: dict[str, Any]) -> str:
    """A new MLflow run for a checkpoint file scored with --weights (named like its metrics
    file, `<run>-released` / `<run>-weights`): its id; `_log` then fills it."""
    from benchmark.tracking import RunTracker
    from benchmark.tracking.glance import source_tags

    tags = source_tags("cdbench evaluate --weights", metrics["git_commit"])
    with RunTracker(
        experiment=f"cdbench-{metrics['dataset']}", run_name=metrics["run"], tags=tags
    ) as tracker:
        return tracker.run_id or ""


def output_paths(reports: Path, run: str) -> dict[str, Path]:
    """The files and folder `cdbench evaluate` writes for `run`, in the order it publishes them.

    They are published as one set (`benchmark.publish.StagedOutputs`), the metrics file last:
    an evaluation killed while publishing leaves at worst a set without its metrics file, and
    a run without its metrics file is not evaluated, for the report, `cdbench check` and DVC.
    """
    return {
        "curves": reports / "curves" / f"{run}.json",
        "pr": reports / "pr" / f"{run}.csv",
        "training": reports / "training" / f"{run}.csv",
        "selection": reports / "selection" / f"{run}.csv",
        "per_image": reports / "per_image" / f"{run}.csv",
        "predictions": reports / "predictions" / f"{run}.npz",
        "record": reports / "runs" / f"{run}.json",
        "metrics": reports / "metrics" / f"{run}.json",
    }


LOGGED_OUTPUTS = ("record", "metrics", "curves", "per_image", "predictions")
"""The outputs attached to the run's MLflow record (the CSVs for DVC's plots repeat `curves`)."""


PR_RATES = ("recall", "precision", "f1")
"""The rate columns of `reports/pr/<run>.csv`, written in percent (the reports' unit)."""


def _in_percent(rows: list[dict[str, Any]], rates: tuple[str, ...]) -> list[dict[str, Any]]:
    """`rows` with the columns named in `rates` times 100: the plot tables (`dvc plots`) in
    the percent of every other view; thresholds, steps and losses unchanged."""
    return [{k: 100.0 * v if k in rates else v for k, v in row.items()} for row in rows]


def _pr_records(curve: dict[str, list[float]]) -> list[dict[str, float]]:
    """The test split's precision-recall curve (tiles; `curves["test"]`) as one record per
    threshold, the list-of-records shape `dvc plots` draws (x: recall, y: precision)."""
    keys = ("threshold", "recall", "precision", "f1")
    return [
        dict(zip(keys, values, strict=True))
        for values in zip(*(curve[k] for k in keys), strict=True)
    ]


def _history_records(history: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The training history's records that hold `prefix` figures (`train/`: loss, lr, ... at
    every logged step; `val/`, or the recipe's selection split: the figures of each model
    selection, `selection` among them), prefix dropped, with their step: one CSV row each."""
    rows = []
    for record in history:
        figures = {k.removeprefix(prefix): v for k, v in record.items() if k.startswith(prefix)}
        if figures:
            rows.append({"step": record["step"], **figures})
    return rows


def _write_records(rows: list[dict[str, Any]], path: Path) -> None:
    """`rows` as CSV with a header (the columns of every row, first seen first)."""
    columns = list(dict.fromkeys(key for row in rows for key in row)) or ["step"]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def stale_checkpoint(best: dict[str, Any], current: dict[str, Any]) -> dict[str, Any] | None:
    """None when checkpoint `best` was trained under `current` (the resolved configuration of
    the run now: same digest); else {checkpoint_digest, current_digest, differences}, where
    differences lists, as "key: checkpoint -> now", the settings that change the digest."""
    current_digest = digest(current)
    stored = str(best.get("digest") or "")
    if stored == current_digest:
        return None
    differences = []
    for key, (was, now) in _leaf_differences(best.get("config") or {}, current).items():
        probe = _with_value(current, key, was)
        if probe is None or digest(probe) != current_digest:
            differences.append(f"{key}: {was!r} -> {now!r}")
    return {
        "checkpoint_digest": stored,
        "current_digest": current_digest,
        "differences": differences,
    }


_ABSENT = "<absent>"


def _leaf_differences(
    old: dict[str, Any], new: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old value, new value) for every leaf that differs."""
    found: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(old) | set(new), key=str):
        was, now = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(was, dict) and isinstance(now, dict):
            found.update(_leaf_differences(was, now, f"{prefix}{key}."))
        elif was != now:
            found[f"{prefix}{key}"] = (was, now)
    return found


def _with_value(config: dict[str, Any], dotted: str, value: Any) -> dict[str, Any] | None:
    """A copy of `config` with `dotted` set to `value` (None where the path is absent, or
    `value` is absent: the digest cannot be probed, so the key is listed as a difference)."""
    if value == _ABSENT:
        return None
    copy: dict[str, Any] = json.loads(json.dumps(config))
    *parents, leaf = dotted.split(".")
    node = copy
    for part in parents:
        if not isinstance(node.get(part), dict):
            return None
        node = node[part]
    if leaf not in node:
        return None
    node[leaf] = value
    return copy


def _listed(differences: list[str], most: int = 6) -> str:
    shown = "; ".join(differences[:most]) or "the digest's definition itself (older cdbench?)"
    return shown + (f"; and {len(differences) - most} more" if len(differences) > most else "")


def _flat(protocol: str, threshold: float, counts: Counts) -> dict[str, float | int]:
    figures: dict[str, float | int] = {f"{protocol}/threshold": round(float(threshold), 6)}
    figures.update({f"{protocol}/{k}": v for k, v in counts.as_dict().items()})
    figures.update({f"{protocol}/{k}": v for k, v in counts.scores().items()})
    return figures


def score_named_split(
    trainable: Trainable,
    root: Path,
    split: str,
    whole: bool,
    kind: Any,
    threshold: float,
    recipe: Any,
    runtime: RuntimeConfig,
    device: torch.device,
    keep: int = 0,
    per_image: bool = False,
    label: str = "",
) -> tuple[SplitScores, list[torch.Tensor]]:
    """Score one split; also return the score maps of its first `keep` pairs (thumbnails).
    A progress bar `evaluate <label> <split> [whole]` counts the pairs (`runtime.progress`)."""
    scores = new_split_scores(kind, [threshold], device, per_image)
    dataset = ChangeDetectionDataset(root, split, normalizer(recipe), whole=whole)
    loader = eval_loader(dataset, whole, recipe, runtime, device)
    desc = " ".join(part for part in ("evaluate", label, split, "whole" if whole else "") if part)
    with progress_bar(desc=desc, total=len(dataset), unit="pair", enabled=runtime.progress) as bar:
        kept = score_split(
            trainable.model,
            trainable.loss,
            loader,
            scores,
            device,
            bf16=runtime.bf16,
            channels_last=runtime.channels_last,
            keep=keep,
            progress=bar,
        )
    return scores, kept


def _rounded(curve: dict[str, list[float]]) -> dict[str, list[float]]:
    return {key: [round(v, 5) for v in values] for key, values in curve.items()}


PER_IMAGE_FIGURES = ("tp", "fp", "fn", "tn")


def _per_image_rows(
    test: SplitScores, view: str, protocols: dict[str, tuple[float, Counts]]
) -> list[dict[str, Any]]:
    """One row per test pair: its counts at the threshold each protocol chose (bin edges)."""
    assert test.images is not None, "the test split is scored with per_image=True"
    rows: list[dict[str, Any]] = [{"view": view, "name": name} for name in test.names]
    for protocol, (threshold, _) in protocols.items():
        counts = test.images.counts_at_threshold(threshold).tolist()
        for row, values in zip(rows, counts, strict=True):
            figures = zip(PER_IMAGE_FIGURES, values, strict=True)
            row.update({f"{protocol}/{k}": v for k, v in figures})
    return rows


def _write_per_image(rows: list[dict[str, Any]], path: Path) -> None:
    """reports/per_image/<run>.csv: view, name, then <protocol>/{tp,fp,fn,tn} per protocol."""
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["view", "name"])
        writer.writeheader()
        writer.writerows(rows)


def _write_thumbnails(
    root: Path, scores: list[torch.Tensor], threshold: float, kind: str, path: Path
) -> Thumbnails:
    """Write the first test pairs with their score maps to `path` (`.npz`, arrays only).

    `scores` are the (1, H, W) float32 score maps of the split's first pairs; `threshold` is
    the validation-chosen one (the honest protocol; `thumbnail_threshold` in the metrics
    file), applied here to the float32 score. The report draws the pictures from this file.
    """
    raw = ChangeDetectionDataset(root, "test")
    samples = [raw[index] for index in range(len(scores))]
    thumbnails = Thumbnails(
        names=np.array([str(sample["name"]) for sample in samples], dtype=np.str_),
        image_a=_stacked([s["image"][0].permute(1, 2, 0).numpy() for s in samples], np.uint8, 3),
        image_b=_stacked([s["image"][1].permute(1, 2, 0).numpy() for s in samples], np.uint8, 3),
        label=_stacked([s["mask"][0].numpy() for s in samples], np.uint8),
        prediction=_stacked([(score[0] > threshold).numpy() for score in scores], np.uint8),
        score=_stacked([score[0].numpy() for score in scores], np.float16),
        threshold=float(threshold),
        score_kind=kind,
    )
    thumbnails.save(path)
    return thumbnails


def _stacked(arrays: list[np.ndarray], dtype: type, channels: int = 0) -> np.ndarray:
    """The (H, W[, C]) `arrays` as one (N, H, W[, C]) array of `dtype`; (0, 0, 0[, C]) if none."""
    if not arrays:
        return np.zeros((0, 0, 0, channels) if channels else (0, 0, 0), dtype)
    return np.stack(arrays).astype(dtype)


def _git_commit() -> str:
    from benchmark.tracking import git_commit

    return git_commit(Path.cwd())


def _log(
    metrics: dict[str, Any], files: list[Path], spec: RunSpec, checkpoint: Path | None
) -> None:
    """Add the evaluation to the run's MLflow record: the headline and test metrics, rates in
    percent (`benchmark.tracking.glance.evaluation_metrics`), the confusion counts as a JSON
    artifact, the output files as artifacts, tags saying what was scored, and the scored
    `checkpoint` of a trained run as its MLflow model, registered as `<experiment>-s<seed>`."""
    from benchmark.tracking import RunTracker
    from benchmark.tracking.glance import (
        COUNTS_ARTIFACT,
        confusion_counts,
        evaluation_metrics,
        model_name,
    )

    stale = metrics["stale_checkpoint"]
    tags = {
        "evaluated": "true",
        "dvc_stage_evaluate": f"evaluate@{spec.name}",
        "stale_checkpoint": "true" if stale else "false",
        "checkpoint_digest": metrics["config_digest"],
        "current_config_digest": stale["current_digest"] if stale else metrics["config_digest"],
        "weights_provenance": metrics["weights_provenance"],
        "weights_sha256": metrics["weights_sha256"],
    }
    if metrics["weights"] is not None:  # --weights: a file, not the stage's trained run
        tags["dvc_stage_evaluate"] = ""
        tags["weights_path"] = metrics["weights"]["path"]
        tags["weights_format"] = metrics["weights"]["format"]
    with RunTracker(
        experiment=f"cdbench-{metrics['dataset']}",
        run_name=metrics["run"],
        tags=tags,
        run_id=metrics["mlflow_run_id"],
    ) as tracker:
        tracker.log_metrics(evaluation_metrics(metrics))
        tracker.log_text(json.dumps(confusion_counts(metrics), indent=2), COUNTS_ARTIFACT)
        for path in files:  # evaluation/{metrics,curves,per_image,predictions}/<run>.*
            tracker.log_artifact(path, f"evaluation/{path.parent.name}")
        if checkpoint is not None:
            name = model_name(metrics["experiment"], metrics["seed"])
            tracker.log_model(
                name,
                checkpoint,
                metrics["weights_sha256"],
                metrics["selected_step"],
                f"The selected checkpoint (best.pt) of {metrics['experiment']}, seed "
                f"{metrics['seed']}: one version per evaluation, its source the file.",
                {"experiment": metrics["experiment"], "seed": str(metrics["seed"])},
            )
