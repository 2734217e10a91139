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
   MLflow and write `last.pt`. `last.pt` is also written every `runtime.checkpoint_every` steps.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from benchmark.config import (
    RESULT_RUNTIME,
    ExperimentConfig,
    Params,
    RecipeConfig,
    RunSpec,
    RuntimeConfig,
)
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.photometric import photometric_distortion
from benchmark.errors import CdbenchError, DataError
from benchmark.evaluation.predict import (
    SplitScores,
    new_split_scores,
    score_kind,
    score_split,
)
from benchmark.losses import build_loss
from benchmark.models import build_model
from benchmark.runlock import run_lock
from benchmark.training import checkpoint
from benchmark.training.batches import training_batches
from benchmark.training.distributed import Distributed
from benchmark.training.recipe import (
    build_optimizer,
    build_scheduler,
    normalizer,
    training_samples,
)
from benchmark.training.sampler import epoch_indices


class Trainable(nn.Module):
    """The model and its loss as one module, so that DDP and the optimiser see the loss's own
    parameters (the `bce` arm's scale and offset) along with the model's."""

    def __init__(self, model: nn.Module, loss: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, t0: Tensor, t1: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss(self.model(t0, t1), mask)


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


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` -> cuda:<local rank> when CUDA is present, else cpu; else the name given."""
    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CdbenchError(f"device {name!r} requested but CUDA is not available here")
    return device


def resolved_config(params: Params, spec: RunSpec, runtime: RuntimeConfig) -> dict[str, Any]:
    """Everything that defines the run, as plain data (saved in checkpoints, logged to MLflow)."""
    experiment = params.experiment(spec.experiment)
    recipe = params.recipes[experiment.recipe]
    return {
        "run": spec.name,
        "experiment": spec.experiment,
        "seed": spec.seed,
        "model": experiment.model,
        "loss": experiment.loss,
        "dataset": experiment.dataset,
        "recipe_name": experiment.recipe,
        "model_options": dict(experiment.model_options),
        # the loss's options as built: the recipe's, updated with the experiment's own (config.py)
        "loss_options": dict(experiment.loss_options),
        # so the recipe's own loss_options are not repeated here
        "recipe": {k: v for k, v in dataclasses.asdict(recipe).items() if k != "loss_options"},
        "runtime": dataclasses.asdict(runtime),
        "data_root": str(params.data.prepared(experiment.dataset)),
        "data_manifest": _manifest_digest(params.data.prepared(experiment.dataset)),
    }


def _manifest_digest(root: Path) -> str | None:
    """sha256 of the prepared dataset's manifest.json (per-file hashes, counts, and for the
    synthetic data its generator's settings), None where there is none yet: the identity of
    the data a run trains on."""
    manifest = root / "manifest.json"
    return checkpoint.file_sha256(manifest) if manifest.is_file() else None


def _digest(config: dict[str, Any]) -> str:
    """Digest of everything that changes the result: the run (experiment, seed, model, loss
    and their options), the recipe, the data (its manifest's hash: regenerated or re-prepared
    data never resumes or skips an old checkpoint) and the runtime settings of RESULT_RUNTIME
    with the values in effect (command-line overrides included). Not the device, the data's
    folder, workers, checkpoint_every, system metrics or progress bars, which do not."""
    keys = ("experiment", "seed", "model", "loss", "dataset", "model_options", "loss_options")
    key_config = {key: config[key] for key in keys}
    key_config["recipe"] = config["recipe"]
    key_config["data_manifest"] = config["data_manifest"]
    key_config["runtime"] = {key: config["runtime"][key] for key in RESULT_RUNTIME}
    return checkpoint.config_digest(key_config)


def build_trainable(
    experiment: ExperimentConfig, recipe: RecipeConfig, weights_dir: Path | None = None
) -> Trainable:
    """The model and the loss, in training mode. A `recipe.pretrained` encoder starts from the
    ImageNet weights in `weights_dir` (`params.data.weights_dir`; never downloaded), which such
    a recipe requires; callers that restore a checkpoint pass a recipe with pretrained False."""
    if recipe.pretrained and weights_dir is None:
        raise ValueError(
            f"build_trainable({experiment.model!r}): the recipe is pretrained, so the ImageNet "
            f"weights folder (params.data.weights_dir) is needed; got weights_dir=None"
        )
    model = build_model(
        experiment.model,
        weights_dir=weights_dir if recipe.pretrained else None,
        **experiment.model_options,
    )
    loss = build_loss(experiment.loss, **experiment.loss_options)
    return Trainable(model, loss)


def loader_workers(recipe: RecipeConfig, dataset: ChangeDetectionDataset, workers: int) -> int:
    """Loading workers for the training loader (threads or processes, see
    benchmark/training/batches.py): none when a sample is only a read from the split's
    decoded-pairs cache (no augmentation, no crop), since then passing batches between
    processes costs more than making them (BSFNet's recipe on 2 CPU cores: about 5700 pairs/s
    in the main process, 800 with 2 workers; `cdbench bench`); else `workers`."""
    plain = recipe.augment == "none" and recipe.crop is None and dataset.cache is not None
    return 0 if plain else workers


def prepared_root(params: Params, dataset: str) -> Path:
    root = params.data.prepared(dataset)
    if not (root / "manifest.json").is_file():
        stage = "synth" if dataset == "synthetic" else f"prepare@{dataset}"
        raise DataError(
            f"{root}: no prepared {dataset} dataset (no manifest.json); "
            f"run `dvc repro {stage}` first"
        )
    return root


def selection_score(scores: SplitScores, metric: str) -> dict[str, float]:
    """The recipe's selection metric and the validation figures logged with it."""
    counts = scores.fixed.counts()[0]
    fixed = counts.scores()
    best_threshold, best_counts = scores.histogram.best_threshold()
    union_unchanged = counts.tn + counts.fp + counts.fn
    iou_unchanged = counts.tn / union_unchanged if union_unchanged else 0.0
    figures = {
        "f1": fixed["f1"],
        "iou": fixed["iou"],
        "precision": fixed["precision"],
        "recall": fixed["recall"],
        "max_f1": best_counts.scores()["f1"],
        "max_f1_threshold": best_threshold,
        "miou": (fixed["iou"] + iou_unchanged) / 2,
    }
    figures["selection"] = figures[metric]
    return figures


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
    """`train_run`'s work, under the run's lock."""
    runtime = runtime or params.runtime
    started = time.perf_counter()
    experiment = params.experiment(spec.experiment)
    recipe = params.recipes[experiment.recipe]
    config = resolved_config(params, spec, runtime)
    digest = _digest(config)
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
    weights_dir = Path(params.data.weights_dir)
    trainable = build_trainable(experiment, recipe, weights_dir).to(device)
    if runtime.channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)
    kind = score_kind(trainable.model, trainable.loss)
    threshold = getattr(recipe.thresholds, kind)

    train_pairs = ChangeDetectionDataset(root, "train", whole=recipe.train_on_whole)
    train_set = training_samples(recipe, train_pairs, spec.seed)  # uint8: normalised on device
    train_workers = loader_workers(recipe, train_pairs, runtime.workers)
    steps_per_epoch = len(train_set) // recipe.batch_size
    if steps_per_epoch == 0:
        raise DataError(
            f"{root}/train: {len(train_set)} pairs, fewer than one batch of "
            f"{recipe.batch_size} (recipes.{experiment.recipe}.batch_size)"
        )
    total = recipe.iterations or recipe.epochs * steps_per_epoch
    val_interval = recipe.val_every * (steps_per_epoch if recipe.epochs else 1)
    val_set: Any = ChangeDetectionDataset(
        root, recipe.selection_split, normalizer(recipe), whole=recipe.train_on_whole
    )
    if recipe.max_val_pairs is not None:
        val_set = Subset(val_set, range(min(recipe.max_val_pairs, len(val_set))))
    val_shard = Subset(val_set, range(world.rank, len(val_set), world.world_size))

    normalize = normalizer(recipe)
    optimizer = build_optimizer(recipe, trainable.parameters(), fused=runtime.fused_optimizer)
    scheduler = build_scheduler(recipe, optimizer, total)
    model: nn.Module = trainable
    if world.enabled:
        if device.type == "cuda":
            trainable = nn.SyncBatchNorm.convert_sync_batchnorm(trainable)
        model = DistributedDataParallel(
            trainable, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(model) if runtime.compile else model

    out.mkdir(parents=True, exist_ok=True)
    checkpoint.clean_scratch(out)
    state = _resume_state(out / "last.pt", digest, world.is_main)
    step, best_score, best_step, history, run_id = 0, -math.inf, -1, [], None
    if state is not None:
        trainable.load_state_dict(state["model_and_loss"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        step, best_score, best_step = state["step"], state["best_score"], state["best_step"]
        history, run_id = state["history"], state["mlflow_run_id"]
    resumed_from = step
    loss_sum = torch.zeros((), device=device)  # training loss since the last logged record
    loss_count = 0
    if state is not None:
        loss_sum += state["loss_sum"].to(device)
        loss_count = state["loss_count"]

    tracker = _tracker(config, spec, run_id, runtime, tracking and world.is_main)
    run_id = tracker.run_id if tracker is not None else run_id
    if tracker is not None and state is None:
        tracker.log_params(config)
        tracker.log_text(json.dumps(config, indent=2), "config.json")
    if tracker is not None and state is not None:
        # Records an earlier process could not log (MLflow unavailable) before its checkpoint.
        tracker.restore_pending(state.get("mlflow_pending", {}))
        tracker.flush()
    # The first step whose training loss was not finite (-1: none yet) and that loss, kept on
    # the device so that checking every step costs no synchronisation.
    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    bad_loss = torch.zeros((), device=device)
    saved_step: int | None = step if state is not None else None  # the step of last.pt
    saved_pending = _pending_count(state.get("mlflow_pending", {})) if state is not None else 0

    def model_payload() -> dict[str, Any]:
        """What both checkpoints hold: the configuration and the model and loss weights."""
        return {
            "config": config,
            "digest": digest,
            "step": step,
            "model_and_loss": trainable.state_dict(),
        }

    def stop_if_not_finite(at: str) -> None:
        """Raise when a training loss so far was not finite or a weight is not: nothing
        non-finite is ever validated or saved, and the last finite last.pt is kept."""
        first = int(bad_step)
        if first < 0 and checkpoint.finite_weights(trainable.state_dict()):
            return
        optimiser = recipe.optimizer
        if first >= 0:
            what = f"the training loss was {float(bad_loss)} at step {first}"
        else:
            what = f"the weights became non-finite by step {step} (the loss was finite)"
        kept = (
            f"{out / 'last.pt'} of step {saved_step} (finite) is kept"
            if saved_step is not None
            else "No last.pt was written"
        )
        raise CdbenchError(
            f"{spec.name}: {what}; training stopped {at}. Likely cause: "
            f"recipes.{experiment.recipe}.optimizer.lr = {optimiser.lr} or "
            f"weight_decay = {optimiser.weight_decay} too large (or not finite), or bad input "
            f"data. {kept}; lower the setting and rerun (a changed recipe starts afresh and "
            f"sets the old checkpoint aside)"
        )

    def save_last() -> None:
        stop_if_not_finite(f"before saving {out / 'last.pt'}")
        write_last()
        world.barrier()

    def write_last() -> None:
        """Write last.pt (rank 0), with MLflow records still waiting to be logged."""
        nonlocal saved_step, saved_pending
        if world.is_main:
            checkpoint.save_atomic(
                {
                    **model_payload(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": checkpoint.rng_state(),
                    "best_score": best_score,
                    "best_step": best_step,
                    "history": history,
                    "loss_sum": loss_sum,
                    "loss_count": loss_count,
                    "mlflow_run_id": run_id or "",
                    "mlflow_pending": tracker.pending_state() if tracker is not None else {},
                },
                out / "last.pt",
            )
            saved_step = step
            saved_pending = tracker.pending_count if tracker is not None else 0

    bar = tqdm(
        total=total,
        initial=step,
        desc=spec.name,
        unit="step",
        disable=not (runtime.progress and world.is_main),
        dynamic_ncols=True,
    )
    interval_start, interval_steps = time.perf_counter(), 0
    status = "FAILED"
    try:
        while step < total:
            epoch, start_batch = divmod(step, steps_per_epoch)
            items = epoch_indices(
                len(train_set),
                spec.seed,
                epoch,
                recipe.batch_size,
                start_batch,
                world.rank,
                world.world_size,
            )
            loader = training_batches(
                train_set,
                items,
                recipe.batch_size // world.world_size,
                train_workers,
                pin_memory=device.type == "cuda",
            )
            trainable.train()
            for batch in loader:
                image = batch["image"].to(device, non_blocking=True)
                if "colour" in batch:  # open-cd's photometric distortion, drawn by the loader
                    colour = batch["colour"].to(device, non_blocking=True)
                    image = photometric_distortion(image, colour)
                image = normalize.images(image)
                mask = batch["mask"].to(device, non_blocking=True)
                t0, t1 = image[:, 0], image[:, 1]
                if runtime.channels_last:
                    t0 = t0.contiguous(memory_format=torch.channels_last)
                    t1 = t1.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=runtime.bf16):
                    total_loss, _parts = forward(t0, t1, mask)
                optimizer.zero_grad(set_to_none=True)
                total_loss.backward()
                optimizer.step()
                if not isinstance(scheduler, ReduceLROnPlateau):
                    scheduler.step()
                step += 1
                interval_steps += 1
                first_bad = (bad_step < 0) & ~torch.isfinite(total_loss.detach())
                bad_step = torch.where(first_bad, step, bad_step)
                bad_loss = torch.where(first_bad, total_loss.detach().float(), bad_loss)
                loss_sum += total_loss.detach()
                loss_count += 1
                bar.update(1)
                end_of_epoch = step % steps_per_epoch == 0
                validate_now = step % val_interval == 0 or step == total
                if step % 10 == 0 or end_of_epoch or validate_now:
                    stop_if_not_finite(f"at step {step}")
                if step % 10 == 0 or step == total:
                    current = float(total_loss.detach())
                    rate = bar.format_dict.get("rate") or 0.0
                    bar.set_postfix(
                        loss=f"{current:.4f}",
                        lr=f"{_lr(optimizer):.2e}",
                        pairs_per_s=f"{rate * recipe.batch_size:.1f}",
                    )
                if end_of_epoch or validate_now:
                    seconds = time.perf_counter() - interval_start
                    record: dict[str, float] = {
                        "train/loss": float(loss_sum) / max(loss_count, 1),
                        "train/lr": _lr(optimizer),
                        "train/pairs_per_s": interval_steps * recipe.batch_size / seconds,
                        "train/epoch": step / steps_per_epoch,
                    }
                    loss_sum.zero_()
                    loss_count = 0
                    if validate_now:
                        trainable.eval()
                        scores = new_split_scores(kind, [threshold], device)
                        score_split(
                            trainable.model,
                            trainable.loss,
                            _eval_loader(val_shard, recipe, runtime, device),
                            scores,
                            device,
                            bf16=runtime.bf16,
                            channels_last=runtime.channels_last,
                        )
                        world.all_reduce_(scores.tensors())
                        figures = selection_score(scores, recipe.selection_metric)
                        split = recipe.selection_split
                        record.update({f"{split}/{k}": v for k, v in figures.items()})
                        if isinstance(scheduler, ReduceLROnPlateau):
                            scheduler.step(figures["selection"])
                        if figures["selection"] > best_score:
                            best_score, best_step = figures["selection"], step
                            if world.is_main:
                                checkpoint.save_atomic(
                                    {
                                        **model_payload(),
                                        "selection": {
                                            "split": split,
                                            "metric": recipe.selection_metric,
                                            "score": best_score,
                                        },
                                    },
                                    out / "best.pt",
                                )
                        record[f"{split}/best_selection"] = best_score
                        trainable.train()
                    history.append({"step": step, **record})
                    if tracker is not None:
                        tracker.log_metrics(record, step=step)
                    interval_start, interval_steps = time.perf_counter(), 0
                if validate_now or step % runtime.checkpoint_every == 0:
                    save_last()
                if step >= total:
                    break
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        bar.close()
        if tracker is not None:
            tracker.finish(status)
            if status == "FINISHED" and tracker.pending_count != saved_pending:
                write_last()  # what is still pending, for the next `cdbench train` of this run
            if status == "FINISHED" and tracker.pending_count:
                print(
                    f"{spec.name}: {tracker.pending_count} MLflow record(s) could not be logged "
                    f"yet; kept in {out / 'last.pt'} and logged when `cdbench train "
                    f"{spec.experiment} --seed {spec.seed}` runs again"
                )

    seconds = time.perf_counter() - started
    result = TrainResult(
        run=spec.name,
        out=out,
        steps=step,
        best_step=best_step,
        best_score=best_score,
        mlflow_run_id=run_id,
        resumed_from=resumed_from,
        seconds=seconds,
    )
    if world.is_main:
        summary = {
            **{k: v for k, v in dataclasses.asdict(result).items() if k != "out"},
            "selection_split": recipe.selection_split,
            "selection_metric": recipe.selection_metric,
            "score_kind": kind,
            "history": history,
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    world.barrier()
    return result


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _eval_loader(
    dataset: Any, recipe: RecipeConfig, runtime: RuntimeConfig, device: torch.device
) -> DataLoader:
    batch = 1 if recipe.train_on_whole else recipe.batch_size
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=False,
        num_workers=runtime.workers,
        pin_memory=device.type == "cuda",
    )


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

    tags = {
        "model": config["model"],
        "loss": config["loss"],
        "dataset": config["dataset"],
        "recipe": config["recipe_name"],
        "seed": str(spec.seed),
        "experiment": spec.experiment,
        "git_commit": git_commit(Path.cwd()),
        "dvc_stage": f"train@{spec.name}",
        "selection_split": config["recipe"]["selection_split"],
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return RunTracker(
        experiment=f"cdbench-{config['dataset']}",
        run_name=spec.name,
        tags=tags,
        run_id=run_id or None,
        system_metrics=runtime.system_metrics,
    )
