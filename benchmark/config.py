"""Typed configuration loaded from `params.yaml`.

Every section of `params.yaml` is a dataclass. `from_dict` builds one from plain YAML data and
rejects, by dotted name, any key the dataclass does not declare, any value of the wrong type,
and (through each dataclass's `__post_init__`) any value out of range. Nothing starts before
the whole file has been checked.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from benchmark.errors import ConfigError

T = TypeVar("T")

DATASETS = ("cdd", "levir-cd", "synthetic")
"""Every dataset name the suite knows."""


SAFE_PATH = re.compile(r"[A-Za-z0-9_@%+=:,./][A-Za-z0-9_@%+=:,./-]*")
"""What a path of params.yaml may hold: ASCII letters, digits and `_ @ % + = : , . / -`, not
starting with `-`. These are the characters a POSIX shell takes literally (`shlex.quote` leaves
them unquoted), so the path means the same wherever it is written: dvc.yaml interpolates the
data paths into its deps and outs, and a `$(...)`, quote, `;` or space in a path is refused."""

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""What an experiment or recipe name may hold (ASCII): `cdbench stages` writes the names into
dvc.yaml's runs and the `train`/`evaluate` commands, and names the run folders after them."""

DEVICE = re.compile(r"auto|(?:cpu|cuda|mps)(?::[0-9]+)?")
"""A device of runtime.device and --device: auto, cpu, cuda, cuda:N, mps (torch's spelling)."""


def check_path(value: str, where: str) -> None:
    """Raise ConfigError unless `value` is a path made only of SAFE_PATH characters."""
    if not SAFE_PATH.fullmatch(value):
        raise ConfigError(
            f"{where}: {value!r} is not a plain path; expected ASCII letters, digits and "
            f"_ @ % + = : , . / - only, not starting with - (no spaces, quotes, $, `, ;, | or "
            f"other shell characters): rename the folder, or point a symlink with a plain "
            f"name at it"
        )


def check_name(value: str, where: str) -> None:
    """Raise ConfigError unless `value` is a SAFE_NAME (an experiment's or a recipe's name)."""
    if not SAFE_NAME.fullmatch(value):
        raise ConfigError(
            f"{where}: the name {value!r} is not allowed; expected ASCII letters, digits and "
            f"_ . - only, starting with a letter or digit (e.g. bsfnet-sisb-cdd): rename it"
        )


def check_device(value: str, where: str) -> None:
    """Raise ConfigError unless `value` is a device string of DEVICE."""
    if not DEVICE.fullmatch(value):
        raise ConfigError(
            f"{where}: expected auto, cpu, cuda, cuda:N (N a GPU index, e.g. cuda:0) or mps, "
            f"got {value!r}"
        )


@dataclass(frozen=True)
class DataConfig:
    """Where the datasets (and the encoders' ImageNet weights) live on disk."""

    raw_dir: str = "data/raw"
    prepared_dir: str = "data/prepared"
    # torchvision's ImageNet weight files, fetched and hash-checked by `cdbench weights` (the
    # DVC stage `weights`); pretrained training reads them here and never downloads.
    weights_dir: str = "data/weights"

    def check(self, where: str) -> None:
        for key in ("raw_dir", "prepared_dir", "weights_dir"):
            check_path(getattr(self, key), f"{where}.{key}")

    def raw(self, dataset: str) -> Path:
        return Path(self.raw_dir) / dataset

    def prepared(self, dataset: str) -> Path:
        return Path(self.prepared_dir) / dataset


@dataclass(frozen=True)
class SynthConfig:
    """The built-in synthetic dataset (`cdbench synth`)."""

    seed: int = 0
    size: int = 128
    train: int = 320
    val: int = 48
    test: int = 48

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"synth.seed: expected a non-negative integer, got {self.seed}")
        if self.size < 64 or self.size % 32:
            raise ConfigError(f"synth.size: expected a multiple of 32 >= 64, got {self.size}")
        for split in ("train", "val", "test"):
            count = getattr(self, split)
            if count < 1:
                raise ConfigError(f"synth.{split}: expected at least 1 pair, got {count}")


@dataclass(frozen=True)
class OptimizerConfig:
    """The optimiser of a recipe (torch.optim.Adam or AdamW)."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.0

    def check(self, where: str) -> None:
        if not self.lr > 0:
            raise ConfigError(f"{where}.lr: expected a learning rate > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{where}.betas: expected two numbers in [0, 1), got {self.betas}")
        if self.weight_decay < 0:
            raise ConfigError(f"{where}.weight_decay: expected >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule of a recipe (benchmark/training/recipe.py).

    - `constant`: the optimiser's lr throughout.
    - `bsfnet-step`: BSFNet's released step decay by iteration (`utils/utils.py`).
    - `warmup-poly`: linear warm-up from `warmup_start_factor` x lr over `warmup_iters`
      iterations, then polynomial decay (`power`) to 0 at the last iteration (open-cd).
    - `plateau`: ReduceLROnPlateau on the validation selection score, mode max (CDLab).
    """

    name: Literal["constant", "bsfnet-step", "warmup-poly", "plateau"] = "constant"
    warmup_iters: int = 0
    warmup_start_factor: float = 1e-6
    power: float = 1.0
    plateau_factor: float = 0.1
    plateau_patience: int = 5

    def check(self, where: str) -> None:
        if self.warmup_iters < 0:
            raise ConfigError(f"{where}.warmup_iters: expected >= 0, got {self.warmup_iters}")
        if not 0 < self.warmup_start_factor <= 1:
            raise ConfigError(
                f"{where}.warmup_start_factor: expected a number in (0, 1], "
                f"got {self.warmup_start_factor}"
            )
        if self.power <= 0:
            raise ConfigError(f"{where}.power: expected > 0, got {self.power}")
        if not 0 < self.plateau_factor < 1:
            raise ConfigError(
                f"{where}.plateau_factor: expected a number in (0, 1), got {self.plateau_factor}"
            )
        if self.plateau_patience < 0:
            raise ConfigError(
                f"{where}.plateau_patience: expected >= 0, got {self.plateau_patience}"
            )


@dataclass(frozen=True)
class ThresholdConfig:
    """The fixed decision thresholds of a recipe's source, one per kind of evaluation score.

    A pixel is predicted changed when its score is strictly above the threshold: `distance`
    applies to BSFNet's embedding distance in [0, 2] (losses sisb, contrastive), `probability`
    to a sigmoid probability (IFN; BSFNet trained with bce).
    """

    distance: float = 1.0
    probability: float = 0.5

    def check(self, where: str) -> None:
        if not 0 <= self.distance <= 2:
            raise ConfigError(f"{where}.distance: expected a number in [0, 2], got {self.distance}")
        if not 0 <= self.probability <= 1:
            raise ConfigError(
                f"{where}.probability: expected a number in [0, 1], got {self.probability}"
            )


@dataclass(frozen=True)
class RecipeConfig:
    """How to train and select a model: one named recipe of `params.yaml`, after its source.

    Training length is `epochs` (passes over the training split, drop_last) or `iterations`
    (optimiser steps); exactly one is non-zero. `val_every` counts in the same unit.
    """

    source: str
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    batch_size: int
    epochs: int = 0
    iterations: int = 0
    val_every: int = 1
    crop: int | None = None
    crop_cat_max_ratio: float | None = None
    train_on_whole: bool = False
    augment: Literal["none", "opencd", "cdlab", "flips"] = "none"
    normalize: Literal["imagenet", "bsfnet-cdd"] = "imagenet"
    thresholds: ThresholdConfig = field(default_factory=ThresholdConfig)
    selection_split: Literal["val", "test"] = "val"
    selection_metric: Literal["f1", "max_f1", "miou"] = "f1"
    pretrained: bool = True
    max_val_pairs: int | None = None

    def check(self, where: str) -> None:
        self.optimizer.check(f"{where}.optimizer")
        self.schedule.check(f"{where}.schedule")
        self.thresholds.check(f"{where}.thresholds")
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size: expected >= 1, got {self.batch_size}")
        if self.epochs < 0 or self.iterations < 0 or (self.epochs > 0) == (self.iterations > 0):
            raise ConfigError(
                f"{where}: expected exactly one of epochs and iterations to be > 0, "
                f"got epochs={self.epochs}, iterations={self.iterations}"
            )
        if self.val_every < 1:
            raise ConfigError(f"{where}.val_every: expected >= 1, got {self.val_every}")
        if self.crop is not None and (self.crop < 32 or self.crop % 32):
            raise ConfigError(f"{where}.crop: expected a multiple of 32 >= 32, got {self.crop}")
        if (
            self.schedule.name == "warmup-poly"
            and self.iterations
            and (self.schedule.warmup_iters >= self.iterations)
        ):
            raise ConfigError(
                f"{where}.schedule.warmup_iters: expected fewer than iterations "
                f"({self.iterations}), got {self.schedule.warmup_iters}"
            )
        if self.crop_cat_max_ratio is not None and (
            self.crop is None or not 0.5 < self.crop_cat_max_ratio <= 1
        ):
            raise ConfigError(
                f"{where}.crop_cat_max_ratio: expected a number in (0.5, 1] with a crop size, "
                f"got {self.crop_cat_max_ratio} (crop {self.crop})"
            )
        if self.max_val_pairs is not None and self.max_val_pairs < 1:
            raise ConfigError(f"{where}.max_val_pairs: expected >= 1, got {self.max_val_pairs}")


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment of the comparison: a model, a loss, a dataset, a recipe, seeds.

    `model_options` and `loss_options` go to the model's and the loss's constructors
    (`cdbench models` and benchmark/losses list them); they are checked by name when a
    command builds them.
    """

    model: str
    loss: str
    dataset: Literal["cdd", "levir-cd", "synthetic"]
    recipe: str
    seeds: list[int] = field(default_factory=lambda: [0])
    model_options: dict[str, Any] = field(default_factory=dict)
    loss_options: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        if not self.seeds:
            raise ConfigError(f"{where}.seeds: expected at least one seed")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(
                f"{where}.seeds: expected distinct non-negative integers, got {self.seeds}"
            )


RESULT_RUNTIME: tuple[str, ...] = (
    "bf16",
    "channels_last",
    "fused_optimizer",
    "compile",
    "deterministic",
)
"""The runtime settings that change a trained run's numbers: DVC params of `train@<run>`
(benchmark/stages.py) and part of the checkpoint's digest (benchmark/training/loop.py), with
the values in effect (the command line's --bf16/--channels-last included). The others do not
change them: `device` is the machine, `workers` only loads (per-sample seeds), `checkpoint_every`
only saves (it draws no random number), `system_metrics` and `progress` only report."""

EVALUATE_RUNTIME: tuple[str, ...] = ("bf16", "channels_last")
"""The runtime settings that change an evaluation's numbers: DVC params of `evaluate@<run>`."""


@dataclass(frozen=True)
class RuntimeConfig:
    """How training runs on this machine. None of it changes the recipe's mathematics, but
    `bf16` (autocast), `deterministic` (kernels), `channels_last`, `fused_optimizer` and
    `compile` (floating-point rounding) change the numbers: on the 100-step demo, by up to 12.7
    F1 points (reports/parity-fused-cpu.md), so they are RESULT_RUNTIME."""

    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    fused_optimizer: bool = False
    compile: bool = False
    deterministic: bool = True
    workers: int = 2
    checkpoint_every: int = 500
    system_metrics: bool = True
    progress: bool = True

    def check(self, where: str) -> None:
        check_device(self.device, f"{where}.device")
        if self.workers < 0:
            raise ConfigError(f"{where}.workers: expected >= 0, got {self.workers}")
        if self.checkpoint_every < 1:
            raise ConfigError(
                f"{where}.checkpoint_every: expected >= 1 step, got {self.checkpoint_every}"
            )


@dataclass(frozen=True)
class Params:
    """The whole of `params.yaml`."""

    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    recipes: dict[str, RecipeConfig] = field(default_factory=dict)
    experiments: dict[str, ExperimentConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data.check("data")
        self.runtime.check("runtime")
        for name, recipe in self.recipes.items():
            check_name(name, f"recipes.{name}")
            recipe.check(f"recipes.{name}")
        for name, experiment in self.experiments.items():
            where = f"experiments.{name}"
            check_name(name, where)
            experiment.check(where)
            if experiment.recipe not in self.recipes:
                raise ConfigError(
                    f"{where}.recipe: unknown recipe {experiment.recipe!r}; expected one of: "
                    f"{', '.join(sorted(self.recipes)) or '(no recipes defined)'}"
                )

    def experiment(self, name: str) -> ExperimentConfig:
        """The experiment called `name`; a ConfigError lists the defined ones."""
        if name not in self.experiments:
            raise ConfigError(
                f"unknown experiment {name!r}; params.yaml defines: "
                f"{', '.join(sorted(self.experiments)) or '(none)'}"
            )
        return self.experiments[name]

    def runs(self) -> list[RunSpec]:
        """Every (experiment, seed) pair, in params.yaml order."""
        return [
            RunSpec.of(name, experiment, seed)
            for name, experiment in self.experiments.items()
            for seed in experiment.seeds
        ]


@dataclass(frozen=True)
class RunSpec:
    """One training run: an experiment and one of its seeds.

    `name` is the experiment's name, plus `-s<seed>` when the experiment lists several seeds;
    checkpoints, metrics files and MLflow runs are named after it.
    """

    experiment: str
    seed: int
    name: str

    @staticmethod
    def of(experiment: str, config: ExperimentConfig, seed: int) -> RunSpec:
        if seed not in config.seeds:
            raise ConfigError(
                f"experiments.{experiment}.seeds: seed {seed} is not listed "
                f"(listed: {config.seeds})"
            )
        name = experiment if len(config.seeds) == 1 else f"{experiment}-s{seed}"
        return RunSpec(experiment=experiment, seed=seed, name=name)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check `params.yaml`. A missing file is an error, never the defaults: a
    mistyped `--params` would otherwise run the whole pipeline on settings nobody chose. (An
    empty file gives the defaults.)"""
    path = Path(path)
    if not path.is_file():
        state = "is not a file" if path.exists() else "not found"
        raise ConfigError(
            f"params file {path}: {state} ({path.absolute()}); expected the parameters file: "
            f"pass --params PATH to it (e.g. the repository's params.yaml), or run cdbench "
            f"from the repository root"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return from_dict(Params, raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from `data`, checking keys and types recursively.

    `where` is the dotted path of `data` used in error messages (e.g. `synth`).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where or 'top level'}: expected a mapping for {cls.__name__}, "
            f"got {type(data).__name__}"
        )
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(f"{_join(where, str(k))}" for k in unknown)
        raise ConfigError(
            f"unknown key(s) {names}; {cls.__name__} accepts: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, _join(where, name))
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s): {', '.join(missing)}")
    return cls(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {hint}: " + "; ".join(errors))
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = get_args(hint)[:1] or (Any,)
        converted = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_t, val_t = get_args(hint)
        return {
            _convert(key_t, k, f"{where}"): _convert(val_t, v, f"{where}.{k}")
            for k, v in value.items()
        }
    if hint is Any:
        _check_finite(value, where)
        return value
    if hint is float:
        if isinstance(value, str):
            value = _yaml_float(value, where)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        _check_finite(value, where)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"config type {hint!r} at {where} is not supported by from_dict")


def _check_finite(value: Any, where: str) -> None:
    """Refuse NaN and infinities (YAML's `.nan`, `.inf`), here and inside lists and mappings:
    no setting means anything at NaN or infinity, and torch would only fail later (or train
    to NaN weights) with a traceback that does not name the key."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"{where}: expected a finite number, got {value}; set a number (e.g. 0.0 or 1.0e-4)"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]")


def _yaml_float(text: str, where: str) -> float:
    """PyYAML (YAML 1.1) reads `1e-5` as a string; accept such numbers, refuse other text."""
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got str {text!r}") from None
