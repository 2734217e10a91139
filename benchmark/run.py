"""One run (an experiment and a seed) as training, evaluation and speed all see it.

- its resolved configuration and the digest of what changes its result (`resolved_config`,
  `digest`): saved in every checkpoint, compared on resume and before scoring;
- the device (`resolve_device`);
- the model and its loss as one module (`Trainable`, `build_trainable`), built with random
  weights for loading a checkpoint (`untrained`) and placed for scoring (`to_scoring_device`);
- the recipe's input normalisation (`normalizer`);
- the prepared data (`prepared_root`), the training loader's workers (`loader_workers`) and
  the loader of a scored split (`eval_loader`);
- the selected model of a finished training (`load_selected`: `<checkpoints>/best.pt`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from benchmark import checkpoint
from benchmark.config import (
    RESULT_RUNTIME,
    ExperimentConfig,
    Params,
    RecipeConfig,
    RunSpec,
    RuntimeConfig,
)
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.datasets import DATASETS
from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PairNormalize
from benchmark.errors import CdbenchError, DataError
from benchmark.losses import ChangeLoss, build_loss, check_pair
from benchmark.models import ChangeModel, build_model

BSFNET_CDD_MEAN_BGR = ((87.54, 99.83, 90.29), (119.69, 127.33, 120.79))
"""BSFNet's per-date channel means (B, G, R; 0..255) of CDD train+val: date A, date B."""


class Trainable(nn.Module):
    """The model and its loss as one module, so that DDP and the optimiser see the loss's own
    parameters (the `bce` arm's scale and offset) along with the model's."""

    def __init__(self, model: ChangeModel, loss: ChangeLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, t0: Tensor, t1: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        result: tuple[Tensor, dict[str, Tensor]] = self.loss(self.model(t0, t1), mask)
        return result


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
        "data_manifest": manifest_digest(params.data.prepared(experiment.dataset)),
    }


def manifest_digest(root: Path) -> str | None:
    """sha256 of the prepared dataset's manifest.json (per-file hashes, counts, and for the
    synthetic data its generator's settings), None where there is none yet: the identity of
    the data a run trains on."""
    manifest = root / "manifest.json"
    return checkpoint.file_sha256(manifest) if manifest.is_file() else None


def digest(config: dict[str, Any]) -> str:
    """Digest of everything that changes the result of the run `config` (`resolved_config`):
    the run (experiment, seed, model, loss and their options), the recipe, the data (its
    manifest's hash: regenerated or re-prepared data never resumes or skips an old checkpoint)
    and the runtime settings of RESULT_RUNTIME with the values in effect (command-line
    overrides included). Not the device, the data's folder, workers, checkpoint_every, system
    metrics or progress bars, which do not."""
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
    a recipe requires; `untrained` builds one whose weights a checkpoint will replace."""
    if recipe.pretrained and weights_dir is None:
        raise ValueError(
            f"build_trainable({experiment.model!r}): the recipe is pretrained, so the ImageNet "
            f"weights folder (params.data.weights_dir) is needed; got weights_dir=None"
        )
    check_pair(experiment.model, experiment.loss)
    model = build_model(
        experiment.model,
        weights_dir=weights_dir if recipe.pretrained else None,
        **experiment.model_options,
    )
    loss = build_loss(experiment.loss, **experiment.loss_options)
    return Trainable(model, loss)


def untrained(experiment: ExperimentConfig, recipe: RecipeConfig) -> Trainable:
    """The model and loss with random weights, the ImageNet encoder not read even for a
    pretrained recipe: for weights that come from a checkpoint, or speed measurements."""
    return build_trainable(experiment, dataclasses.replace(recipe, pretrained=False))


def to_scoring_device(trainable: Trainable, runtime: RuntimeConfig) -> torch.device:
    """Move `trainable` to `runtime`'s device in eval mode (channels_last weights when the
    runtime says so, as at training) and return the device."""
    device = resolve_device(runtime.device)
    trainable.to(device).eval()
    if runtime.channels_last:
        trainable.to(memory_format=torch.channels_last)
    return device


def load_selected(checkpoint_dir: Path, spec: RunSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The selected model of the finished training of `spec`: `checkpoint_dir/best.pt` (its
    configuration, digest, step, selection and `model_and_loss` weights) and summary.json.

    Raises:
        CdbenchError: no finished run there, or best.pt holds another run.
    """
    best_path = checkpoint_dir / "best.pt"
    summary_path = checkpoint_dir / "summary.json"
    if not best_path.exists() or not summary_path.exists():
        raise CdbenchError(
            f"{checkpoint_dir}: no finished training run (best.pt and summary.json); "
            f"run `cdbench train {spec.experiment} --seed {spec.seed}` "
            f"(or `dvc repro train@{spec.name}`) first"
        )
    best = checkpoint.load(best_path)
    summary = json.loads(summary_path.read_text())
    config = best["config"]
    if config["experiment"] != spec.experiment or config["seed"] != spec.seed:
        raise CdbenchError(
            f"{best_path}: holds run {config['run']!r}, expected {spec.name!r}; "
            f"point --checkpoints at that run's folder"
        )
    return best, summary


def normalizer(recipe: RecipeConfig) -> PairNormalize:
    """The recipe's input normalisation (uint8 -> float32): BSFNet's per-date BGR means
    (`bsfnet-cdd`) or ImageNet's mean and std."""
    if recipe.normalize == "bsfnet-cdd":
        return PairNormalize(BSFNET_CDD_MEAN_BGR, std=None, bgr=True, divide_by_255=False)
    return PairNormalize((IMAGENET_MEAN, IMAGENET_MEAN), (IMAGENET_STD, IMAGENET_STD))


def prepared_root(params: Params, dataset: str) -> Path:
    """`params.data.prepared(dataset)`, checked to hold a prepared dataset (its manifest)."""
    root = params.data.prepared(dataset)
    if not (root / "manifest.json").is_file():
        raise DataError(
            f"{root}: no prepared {dataset} dataset (no manifest.json); "
            f"run `dvc repro {DATASETS[dataset].stage}` first"
        )
    return root


def loader_workers(recipe: RecipeConfig, dataset: ChangeDetectionDataset, workers: int) -> int:
    """Loading workers for the training loader (threads or processes, see
    benchmark/training/batches.py): none when a sample is only a read from the split's
    decoded-pairs cache (no augmentation, no crop), since then passing batches between
    processes costs more than making them (BSFNet's recipe on 2 CPU cores: about 5700 pairs/s
    in the main process, 800 with 2 workers; `cdbench bench`); else `workers`."""
    plain = recipe.augment == "none" and recipe.crop is None and dataset.cache is not None
    return 0 if plain else workers


def eval_loader(
    dataset: Dataset[Any],
    whole: bool,
    recipe: RecipeConfig,
    runtime: RuntimeConfig,
    device: torch.device,
) -> DataLoader[Any]:
    """The loader of a scored split, in order: one whole image per batch (they are large),
    else the recipe's batch size of tiles."""
    return DataLoader(
        dataset,
        batch_size=1 if whole else recipe.batch_size,
        shuffle=False,
        num_workers=runtime.workers,
        pin_memory=device.type == "cuda",
    )
