"""`cdbench train`: train one run (an experiment and a seed) to its recipe, resumably.

What a run does, in order:
1. Resolve the configuration (experiment + recipe + seed + runtime) and its digest; seed torch;
   build the model and loss (`benchmark.models`, `benchmark.losses`) and the training data
   (`ChangeDetectionDataset` + the recipe's augmentation under per-sample seeds:
   `training_samples` in benchmark/training/recipe.py), loaded by `training_batches`
   (benchmark/training/batches.py; open-cd's photometric distortion, drawn there, is applied
   to each batch on the device); `runtime` may switch on the fused optimiser,
   channels_last, bf16 autocast and `torch.compile` (`cdbench parity` checks they leave the
   validation F1 within noise).
2. If `<out>/last.pt` exists and was written for the same configuration, restore everything
   from it (model, loss, optimiser, scheduler, RNG, step, best score, history, MLflow run id)
   and continue from the next batch; a checkpoint of another configuration is set aside and the
   run starts afresh. A finished run is not trained again.
3. Train to `iterations` (or `epochs` x batches per epoch) optimiser steps. Every `val_every`
   epochs/iterations, score the selection split (VALIDATION by default; the released BSFNet
   code selected on TEST, which the recipe can reproduce with `selection_split: test`, and then
   every record says so), step a plateau schedule, keep the best model in `best.pt`, log to
   MLflow (its rates in percent) and write `last.pt`. `last.pt` is also written every
   `runtime.checkpoint_every` steps.
   The training loss (mean since the last point) and learning rate go to MLflow every
   `runtime.log_every` steps and at each record, so its curves have many points.
4. Write `summary.json` (steps, best step and score, MLflow run id, time).

One process at a time: the run holds an exclusive lock on `<out>.lock` (next to the checkpoint
folder; benchmark/runlock.py) while it trains, so a second `cdbench train` of the same run is
refused with a message naming the holder's PID; the kernel releases the lock when the holder
dies, even by kill -9. Under torchrun, rank 0 holds it.

A non-finite training loss stops the run (`CdbenchError`) with a message naming the first such
step and the optimiser settings that usually cause it (lr, weight_decay). The loss is checked on
the device at every step (no synchronisation), and the check is read, with a check that every
weight is finite, every 10 steps and before anything is validated or saved: `last.pt` and
`best.pt` never hold non-finite weights, and the last finite `last.pt` is kept. A `last.pt`
with non-finite weights (written by an older version) is refused on resume.

MLflow hiccups never stop training: `RunTracker` retries with backoff and queues what it
cannot log (benchmark/tracking/recorder.py); the queue is saved in `last.pt` and logged on resume.

Under `torchrun` the same function trains with DistributedDataParallel
(benchmark/training/distributed.py): each rank takes its share of every global batch, the
selection split is scored in shards and the counts summed, and rank 0 alone writes.

Determinism: with `runtime.deterministic` (the default) and the same device and world size, a
run killed at any point and resumed ends with bit-identical weights and metrics
(tests/test_training.py). Metric points logged to MLflow between the last checkpoint and the
kill are logged again on resume (MLflow keeps both values of such a step).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import Subset
from tqdm import tqdm

from benchmark import checkpoint
from benchmark.config import Params, RecipeConfig, RunSpec, RuntimeConfig
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.datasets import DATASETS
from benchmark.data.photometric import photometric_distortion
from benchmark.data.transforms import PairNormalize
from benchmark.errors import CdbenchError, DataError
from benchmark.evaluation.predict import (
    new_split_scores,
    score_kind,
    score_split,
    selection_score,
)
from benchmark.losses import ScoreKind
from benchmark.progress import progress_bar
from benchmark.run import (
    Trainable,
    build_trainable,
    digest,
    eval_loader,
    loader_workers,
    normalizer,
    prepared_root,
    resolve_device,
    resolved_config,
)
from benchmark.runlock import run_lock
from benchmark.tracking.glance import training_metrics
from benchmark.training.batches import training_batches
from benchmark.training.distributed import Distributed
from benchmark.training.recipe import (
    Scheduler,
    build_optimizer,
    build_scheduler,
    training_samples,
)
from benchmark.training.sampler import epoch_indices


@dataclass
class TrainResult:
    run: str
    out: Path
    steps: int
    best_step: int
    best_score: float
    mlflow_run_id: str | None
    resumed_from: int
    seconds: float


@dataclass
class TrainingData:
    """The training samples and the selection split's shard of this rank, with the counts
    that set the schedule."""

    train_set: Any
    workers: int
    steps_per_epoch: int
    total: int
    val_interval: int
    val_shard: Subset[Any]


@dataclass
class Training:
    """What stays fixed while a run trains: its configuration, device, modules and data."""

    spec: RunSpec
    recipe_name: str
    recipe: RecipeConfig
    runtime: RuntimeConfig
    config: dict[str, Any]
    digest: str
    out: Path
    world: Distributed
    device: torch.device
    trainable: Trainable
    forward: Any
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    normalize: PairNormalize
    kind: ScoreKind
    threshold: float
    data: TrainingData


@dataclass
class LoopState:
    """What changes while a run trains, and what `last.pt` keeps of it.

    `bad_step` is the first step whose training loss was not finite (-1: none yet) and
    `bad_loss` that loss, kept on the device so that checking every step costs no
    synchronisation; `saved_step` is the step of last.pt (None: none written) and
    `saved_pending` the MLflow records it holds."""

    loss_sum: Tensor
    bad_step: Tensor
    bad_loss: Tensor
    curve_sum: Tensor
    step: int = 0
    best_score: float = -math.inf
    best_step: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None
    loss_count: int = 0
    saved_step: int | None = None
    saved_pending: int = 0
    interval_start: float = 0.0
    interval_steps: int = 0
    curve_count: int = 0


def lock_path(out: Path) -> Path:
    """The lock file of the run whose checkpoints are in `out`: `<out>.lock`, beside the
    folder (not inside it, which DVC tracks as the stage's output)."""
    return out.parent / f"{out.name}.lock"


def train_run(
    params: Params,
    spec: RunSpec,
    out: Path,
    runtime: RuntimeConfig | None = None,
    tracking: bool = True,
) -> TrainResult:
    """Train `spec` to its recipe in `out` (see the module docstring). Returns the summary.

    Raises:
        CdbenchError: Another process trains this run (`out`'s lock is held), the training
            loss became non-finite, or the data or configuration is unusable.
    """
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun's other ranks: rank 0 holds the lock
        return _train_run(params, spec, out, runtime, tracking)
    with run_lock(lock_path(out), f"cdbench train {spec.name}"):
        return _train_run(params, spec, out, runtime, tracking)


def _train_run(
    params: Params,
    spec: RunSpec,
    out: Path,
    runtime: RuntimeConfig | None,
    tracking: bool,
) -> TrainResult:
    """`train_run`'s work, under the run's lock: set up, resume, train, summarise."""
    runtime = runtime or params.runtime
    started = time.perf_counter()
    run = setup(params, spec, out, runtime)

    out.mkdir(parents=True, exist_ok=True)
    checkpoint.clean_scratch(out)
    saved = _resume_state(out / "last.pt", run.digest, run.world.is_main)
    state = resume(run, saved)
    resumed_from = state.step
    tracker = _tracker(run.config, spec, state.run_id, runtime, tracking and run.world.is_main)
    state.run_id = tracker.run_id if tracker is not None else state.run_id
    start_logging(tracker, run.config, saved)

    bar = progress_bar(
        total=run.data.total,
        initial=state.step,
        desc=spec.name,
        unit="step",
        enabled=runtime.progress and run.world.is_main,
    )
    state.interval_start, state.interval_steps = time.perf_counter(), 0
    status = "FAILED"
    try:
        train(run, state, tracker, bar)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        bar.close()
        finish_logging(run, state, tracker, status)

    result = TrainResult(
        run=spec.name,
        out=out,
        steps=state.step,
        best_step=state.best_step,
        best_score=state.best_score,
        mlflow_run_id=state.run_id,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - started,
    )
    if run.world.is_main:
        write_summary(run, result, state.history)
    run.world.barrier()
    return result


def setup(params: Params, spec: RunSpec, out: Path, runtime: RuntimeConfig) -> Training:
    """Resolve the run, pick the device, seed torch, build the model, loss, data, optimiser
    and schedule (in this order: the order torch's random numbers are drawn in)."""
    experiment = params.experiment(spec.experiment)
    recipe = params.recipes[experiment.recipe]
    config = resolved_config(params, spec, runtime)
    root = prepared_root(params, experiment.dataset)

    wants_cuda = runtime.device.startswith("cuda") or (
        runtime.device == "auto" and torch.cuda.is_available()
    )
    world = Distributed.from_env("cuda" if wants_cuda else "cpu")
    device = resolve_device(runtime.device, world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _set_determinism(runtime.deterministic)

    torch.manual_seed(spec.seed)
    trainable: Trainable = build_trainable(experiment, recipe, Path(params.data.weights_dir))
    trainable = trainable.to(device)
    if runtime.channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)
    kind = score_kind(trainable.loss)
    data = training_data(root, experiment.recipe, recipe, spec.seed, runtime, world)

    optimizer = build_optimizer(recipe, trainable.parameters(), fused=runtime.fused_optimizer)
    scheduler = build_scheduler(recipe, optimizer, data.total)
    model: nn.Module = trainable
    if world.enabled:
        if device.type == "cuda":
            trainable = nn.SyncBatchNorm.convert_sync_batchnorm(trainable)
        model = DistributedDataParallel(
            trainable, device_ids=[device.index] if device.type == "cuda" else None
        )
    return Training(
        spec=spec,
        recipe_name=experiment.recipe,
        recipe=recipe,
        runtime=runtime,
        config=config,
        digest=digest(config),
        out=out,
        world=world,
        device=device,
        trainable=trainable,
        forward=torch.compile(model) if runtime.compile else model,
        optimizer=optimizer,
        scheduler=scheduler,
        normalize=normalizer(recipe),
        kind=kind,
        threshold=getattr(recipe.thresholds, kind),
        data=data,
    )


def training_data(
    root: Path,
    recipe_name: str,
    recipe: RecipeConfig,
    seed: int,
    runtime: RuntimeConfig,
    world: Distributed,
) -> TrainingData:
    """The training samples (uint8: normalised on the device) under the recipe's seeded
    augmentation, and this rank's shard of the selection split (normalised)."""
    train_pairs = ChangeDetectionDataset(root, "train", whole=recipe.train_on_whole)
    train_set = training_samples(recipe, train_pairs, seed)
    steps_per_epoch = len(train_set) // recipe.batch_size
    if steps_per_epoch == 0:
        raise DataError(
            f"{root}/train: {len(train_set)} pairs, fewer than one batch of "
            f"{recipe.batch_size} (recipes.{recipe_name}.batch_size)"
        )
    val_set: Any = ChangeDetectionDataset(
        root, recipe.selection_split, normalizer(recipe), whole=recipe.train_on_whole
    )
    if recipe.max_val_pairs is not None:
        val_set = Subset(val_set, range(min(recipe.max_val_pairs, len(val_set))))
    return TrainingData(
        train_set=train_set,
        workers=loader_workers(recipe, train_pairs, runtime.workers),
        steps_per_epoch=steps_per_epoch,
        total=recipe.iterations or recipe.epochs * steps_per_epoch,
        val_interval=recipe.val_every * (steps_per_epoch if recipe.epochs else 1),
        val_shard=Subset(val_set, range(world.rank, len(val_set), world.world_size)),
    )


def resume(run: Training, saved: dict[str, Any] | None) -> LoopState:
    """The loop's state: fresh, or restored from `saved` (last.pt) with the model, loss,
    optimiser, scheduler and RNG states, so the run continues from the next batch."""
    device = run.device
    state = LoopState(
        loss_sum=torch.zeros((), device=device),  # training loss since the last record
        bad_step=torch.full((), -1, dtype=torch.long, device=device),
        bad_loss=torch.zeros((), device=device),
        curve_sum=torch.zeros((), device=device),  # training loss since the last MLflow point
    )
    if saved is None:
        return state
    run.trainable.load_state_dict(saved["model_and_loss"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    checkpoint.set_rng_state(saved["rng"])
    state.step, state.best_score, state.best_step = (
        saved["step"],
        saved["best_score"],
        saved["best_step"],
    )
    state.history, state.run_id = saved["history"], saved["mlflow_run_id"]
    state.loss_sum += saved["loss_sum"].to(device)
    state.loss_count = saved["loss_count"]
    state.saved_step = state.step
    state.saved_pending = _pending_count(saved.get("mlflow_pending", {}))
    return state


def start_logging(tracker: Any, config: dict[str, Any], saved: dict[str, Any] | None) -> None:
    """A new MLflow run gets the configuration; a resumed one the records an earlier process
    could not log (MLflow unavailable) before its checkpoint."""
    if tracker is not None and saved is None:
        tracker.log_params(config)
        tracker.log_text(json.dumps(config, indent=2), "config.json")
        manifest = config["data_manifest"] or "none"
        tracker.log_dataset(
            config["dataset"],
            manifest,
            config["data_root"],
            {"manifest_sha256": manifest},
            "train",
        )
    if tracker is not None and saved is not None:
        tracker.restore_pending(saved.get("mlflow_pending", {}))
        tracker.flush()


def train(run: Training, state: LoopState, tracker: Any, bar: tqdm[Any]) -> None:
    """Train from `state.step` to the last step, epoch by epoch in the seeded order, with
    the records, validations and checkpoints of `after_step`."""
    data = run.data
    while state.step < data.total:
        epoch, start_batch = divmod(state.step, data.steps_per_epoch)
        items = epoch_indices(
            len(data.train_set),
            run.spec.seed,
            epoch,
            run.recipe.batch_size,
            start_batch,
            run.world.rank,
            run.world.world_size,
        )
        loader = training_batches(
            data.train_set,
            items,
            run.recipe.batch_size // run.world.world_size,
            data.workers,
            pin_memory=run.device.type == "cuda",
        )
        run.trainable.train()
        for batch in loader:
            loss = train_step(run, state, batch)
            bar.update(1)
            after_step(run, state, tracker, bar, loss)
            if state.step >= data.total:
                break


def train_step(run: Training, state: LoopState, batch: dict[str, Tensor]) -> Tensor:
    """One optimiser step on `batch`; returns its (detached) training loss, which is
    accumulated and checked for finiteness on the device."""
    device, runtime = run.device, run.runtime
    image = batch["image"].to(device, non_blocking=True)
    if "colour" in batch:  # open-cd's photometric distortion, drawn by the loader
        colour = batch["colour"].to(device, non_blocking=True)
        image = photometric_distortion(image, colour)
    image = run.normalize.images(image)
    mask = batch["mask"].to(device, non_blocking=True)
    t0, t1 = image[:, 0], image[:, 1]
    if runtime.channels_last:
        t0 = t0.contiguous(memory_format=torch.channels_last)
        t1 = t1.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=runtime.bf16):
        total_loss, _parts = run.forward(t0, t1, mask)
    run.optimizer.zero_grad(set_to_none=True)
    total_loss.backward()
    run.optimizer.step()
    if not isinstance(run.scheduler, ReduceLROnPlateau):
        run.scheduler.step()
    state.step += 1
    state.interval_steps += 1
    loss: Tensor = total_loss.detach()
    first_bad = (state.bad_step < 0) & ~torch.isfinite(loss)
    state.bad_step = torch.where(first_bad, state.step, state.bad_step)
    state.bad_loss = torch.where(first_bad, loss.float(), state.bad_loss)
    state.loss_sum += loss
    state.loss_count += 1
    return loss


def after_step(run: Training, state: LoopState, tracker: Any, bar: tqdm[Any], loss: Tensor) -> None:
    """After a step: check finiteness every 10 steps, show progress; at the end of an epoch
    log a record, validating every `val_every`; save last.pt at validations and every
    `runtime.checkpoint_every` steps."""
    step, data = state.step, run.data
    end_of_epoch = step % data.steps_per_epoch == 0
    validate_now = step % data.val_interval == 0 or step == data.total
    if step % 10 == 0 or end_of_epoch or validate_now:
        stop_if_not_finite(run, state, f"at step {step}")
    if step % 10 == 0 or step == data.total:
        rate = bar.format_dict.get("rate") or 0.0
        bar.set_postfix(
            loss=f"{float(loss):.4f}",
            lr=f"{_lr(run.optimizer):.2e}",
            pairs_per_s=f"{rate * run.recipe.batch_size:.1f}",
        )
    if tracker is not None:
        log_curves(run, state, tracker, loss, end_of_epoch or validate_now)
    if end_of_epoch or validate_now:
        record = training_record(run, state)
        if validate_now:
            record.update(validate(run, state))
        state.history.append({"step": step, **record})
        if tracker is not None:  # train/loss and train/lr: log_curves' points; rates in %
            curves = ("train/loss", "train/lr")
            logged = training_metrics({k: v for k, v in record.items() if k not in curves})
            tracker.log_metrics(logged, step=step)
        state.interval_start, state.interval_steps = time.perf_counter(), 0
    if validate_now or step % run.runtime.checkpoint_every == 0:
        save_last(run, state, tracker)


def log_curves(run: Training, state: LoopState, tracker: Any, loss: Tensor, record: bool) -> None:
    """Log `train/loss` (mean since the last point) and `train/lr` to MLflow every
    `runtime.log_every` steps and at each record (`record`). Reads the loss only then, so it
    synchronises with the device no more often; the records of `history` are unchanged."""
    state.curve_sum += loss
    state.curve_count += 1
    if state.step % run.runtime.log_every != 0 and not record:
        return
    mean = float(state.curve_sum) / state.curve_count
    tracker.log_metrics({"train/loss": mean, "train/lr": _lr(run.optimizer)}, step=state.step)
    state.curve_sum.zero_()
    state.curve_count = 0


def training_record(run: Training, state: LoopState) -> dict[str, float]:
    """The training figures since the last record (mean loss, lr, speed, epoch); resets the
    loss sum."""
    seconds = time.perf_counter() - state.interval_start
    record: dict[str, float] = {
        "train/loss": float(state.loss_sum) / max(state.loss_count, 1),
        "train/lr": _lr(run.optimizer),
        "train/pairs_per_s": state.interval_steps * run.recipe.batch_size / seconds,
        "train/epoch": state.step / run.data.steps_per_epoch,
    }
    state.loss_sum.zero_()
    state.loss_count = 0
    return record


def validate(run: Training, state: LoopState) -> dict[str, float]:
    """Score the selection split (each rank its shard; the counts summed), step a plateau
    schedule, keep a better model in best.pt; the `<split>/<figure>` record entries.

    The main rank shows a transient bar `validate <run> <split>` over its shard's pairs
    (`runtime.progress`): below the training bar on a terminal, one line in a log."""
    recipe, split = run.recipe, run.recipe.selection_split
    run.trainable.eval()
    scores = new_split_scores(run.kind, [run.threshold], run.device)
    with progress_bar(
        desc=f"validate {run.spec.name} {split}",
        total=len(run.data.val_shard),
        unit="pair",
        leave=False,
        enabled=run.runtime.progress and run.world.is_main,
    ) as bar:
        score_split(
            run.trainable.model,
            run.trainable.loss,
            eval_loader(run.data.val_shard, recipe.train_on_whole, recipe, run.runtime, run.device),
            scores,
            run.device,
            bf16=run.runtime.bf16,
            channels_last=run.runtime.channels_last,
            progress=bar,
        )
    run.world.all_reduce_(scores.tensors())
    figures = selection_score(scores, recipe.selection_metric)
    record = {f"{split}/{k}": v for k, v in figures.items()}
    if isinstance(run.scheduler, ReduceLROnPlateau):
        run.scheduler.step(figures["selection"])
    if figures["selection"] > state.best_score:
        state.best_score, state.best_step = figures["selection"], state.step
        if run.world.is_main:
            save_best(run, state)
    record[f"{split}/best_selection"] = state.best_score
    run.trainable.train()
    return record


def model_payload(run: Training, state: LoopState) -> dict[str, Any]:
    """What both checkpoints hold: the configuration and the model and loss weights."""
    return {
        "config": run.config,
        "digest": run.digest,
        "step": state.step,
        "model_and_loss": run.trainable.state_dict(),
    }


def save_best(run: Training, state: LoopState) -> None:
    """Write best.pt: the selected model and how it was selected."""
    selection = {
        "split": run.recipe.selection_split,
        "metric": run.recipe.selection_metric,
        "score": state.best_score,
    }
    checkpoint.save_atomic(
        {**model_payload(run, state), "selection": selection}, run.out / "best.pt"
    )


def save_last(run: Training, state: LoopState, tracker: Any) -> None:
    """Write last.pt once every rank reaches here, after checking nothing is non-finite."""
    stop_if_not_finite(run, state, f"before saving {run.out / 'last.pt'}")
    write_last(run, state, tracker)
    run.world.barrier()


def write_last(run: Training, state: LoopState, tracker: Any) -> None:
    """Write last.pt (rank 0), with MLflow records still waiting to be logged."""
    if not run.world.is_main:
        return
    checkpoint.save_atomic(
        {
            **model_payload(run, state),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": checkpoint.rng_state(),
            "best_score": state.best_score,
            "best_step": state.best_step,
            "history": state.history,
            "loss_sum": state.loss_sum,
            "loss_count": state.loss_count,
            "mlflow_run_id": state.run_id or "",
            "mlflow_pending": tracker.pending_state() if tracker is not None else {},
        },
        run.out / "last.pt",
    )
    state.saved_step = state.step
    state.saved_pending = tracker.pending_count if tracker is not None else 0


def stop_if_not_finite(run: Training, state: LoopState, at: str) -> None:
    """Raise when a training loss so far was not finite or a weight is not: nothing
    non-finite is ever validated or saved, and the last finite last.pt is kept."""
    first = int(state.bad_step)
    if first < 0 and checkpoint.finite_weights(run.trainable.state_dict()):
        return
    optimiser = run.recipe.optimizer
    if first >= 0:
        what = f"the training loss was {float(state.bad_loss)} at step {first}"
    else:
        what = f"the weights became non-finite by step {state.step} (the loss was finite)"
    kept = (
        f"{run.out / 'last.pt'} of step {state.saved_step} (finite) is kept"
        if state.saved_step is not None
        else "No last.pt was written"
    )
    raise CdbenchError(
        f"{run.spec.name}: {what}; training stopped {at}. Likely cause: "
        f"recipes.{run.recipe_name}.optimizer.lr = {optimiser.lr} or "
        f"weight_decay = {optimiser.weight_decay} too large (or not finite), or bad input "
        f"data. {kept}; lower the setting and rerun (a changed recipe starts afresh and "
        f"sets the old checkpoint aside)"
    )


def finish_logging(run: Training, state: LoopState, tracker: Any, status: str) -> None:
    """End the MLflow run with `status`; a finished run keeps in last.pt what MLflow could
    not take yet, for the next `cdbench train` of it."""
    if tracker is None:
        return
    tracker.finish(status)
    if status == "FINISHED" and tracker.pending_count != state.saved_pending:
        write_last(run, state, tracker)
    if status == "FINISHED" and tracker.pending_count:
        spec = run.spec
        print(
            f"{spec.name}: {tracker.pending_count} MLflow record(s) could not be logged "
            f"yet; kept in {run.out / 'last.pt'} and logged when `cdbench train "
            f"{spec.experiment} --seed {spec.seed}` runs again"
        )


def write_summary(run: Training, result: TrainResult, history: list[dict[str, Any]]) -> None:
    """`<out>/summary.json`: the result, how the model was selected, and the history."""
    summary = {
        **{k: v for k, v in dataclasses.asdict(result).items() if k != "out"},
        "selection_split": run.recipe.selection_split,
        "selection_metric": run.recipe.selection_metric,
        "score_kind": run.kind,
        "history": history,
    }
    (run.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _set_determinism(deterministic: bool) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def _pending_count(pending: dict[str, list[Any]]) -> int:
    """The number of MLflow records in a checkpoint's `mlflow_pending`."""
    return sum(len(records) for records in pending.values())


def _resume_state(path: Path, digest: str, is_main: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None (no checkpoint, or one of another config)."""
    if not path.exists():
        return None
    state = checkpoint.load(path)
    if state.get("digest") != digest:
        if is_main:
            stale = path.with_name("last.stale.pt")
            os.replace(path, stale)
            best = path.with_name("best.pt")
            if best.exists():
                os.replace(best, path.with_name("best.stale.pt"))
            print(
                f"{path}: written for another configuration; moved to {stale.name} "
                f"and starting afresh"
            )
        return None
    if not checkpoint.finite_weights(state["model_and_loss"]):
        raise CdbenchError(
            f"{path}: holds non-finite weights (step {state.get('step')}; written by a run "
            f"that diverged, before cdbench refused to save such checkpoints); it cannot be "
            f"resumed. Delete it (and best.pt beside it) and lower the recipe's lr or "
            f"weight_decay before training again"
        )
    return state


def _tracker(
    config: dict[str, Any],
    spec: RunSpec,
    run_id: str | None,
    runtime: RuntimeConfig,
    enabled: bool,
) -> Any:
    if not enabled:
        return None
    from benchmark.tracking import RunTracker, git_commit
    from benchmark.tracking.glance import experiment_description, headline_view, source_tags

    commit = git_commit(Path.cwd())
    tags = {
        "model": config["model"],
        "loss": config["loss"],
        "dataset": config["dataset"],
        "recipe": config["recipe_name"],
        "seed": str(spec.seed),
        "experiment": spec.experiment,
        "git_commit": commit,
        "dvc_stage": f"train@{spec.name}",
        "selection_split": config["recipe"]["selection_split"],
        **source_tags("cdbench train", commit),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    experiment = f"cdbench-{config['dataset']}"
    return RunTracker(
        experiment=experiment,
        run_name=spec.name,
        tags=tags,
        run_id=run_id or None,
        system_metrics=runtime.system_metrics,
        description=experiment_description(experiment),
        view=headline_view(whole=DATASETS[config["dataset"]].has_whole),
    )
