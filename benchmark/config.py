"""Typed configuration loaded from `params.yaml`.

Every section of `params.yaml` is a frozen pydantic dataclass (`pydantic.dataclasses`, so
`dataclasses.asdict` and `dataclasses.replace` work as on any dataclass). `load_params` checks
the whole file in one validation pass: unknown and missing keys (params.yaml is the one source
of every setting), wrong types (no silent coercion: `true` is not an integer, `5` not a
string), non-finite numbers, values out of range and cross-field rules (a recipe's training
length, an experiment's recipe). Every problem found becomes one line of a ConfigError that
names the file, the dotted key, what was expected and what was given. Nothing starts before
the whole file has been checked.

Which model and loss fit, and their constructor options, are the registries' to say: the
commands that build them run `benchmark.training.options.check_experiments` right after
loading. This module imports no torch, so stages that only read paths do not depend on models.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails, PydanticCustomError

from benchmark.data.datasets import DATASETS
from benchmark.errors import ConfigError

T = TypeVar("T")


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

STRICT = ConfigDict(extra="forbid")
"""Every config dataclass refuses keys it does not declare (pydantic's `extra="forbid"`)."""

PLAIN = ConfigDict(extra="forbid", allow_inf_nan=False)
"""The `__pydantic_config__` of a standard dataclass read with `validate` (references.yaml's
rows): unknown keys and non-finite numbers refused; its own `check` does the rest."""


def problem(message: str, path: str = "") -> PydanticCustomError:
    """A validation problem with our wording. `path` (e.g. `.schedule.warmup_iters`) extends
    the dotted key of the value being checked, for rules that span several keys."""
    return PydanticCustomError("config", message, {"path": path} if path else None)


def _number(value: Any) -> Any:
    """A float key takes an integer or a float, never a bool. PyYAML (YAML 1.1) reads `1e-5`
    as a string: such numbers are accepted, other text is refused."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise problem(f"expected a number, got str {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise problem(f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def _non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The dotted path below `value` (`.key`, `[index]`) and the value of the first NaN or
    infinity inside `value`, else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        items = [(f".{key}", item) for key, item in value.items()]
    elif isinstance(value, list | tuple):
        items = [(f"[{i}]", item) for i, item in enumerate(value)]
    for key, item in items:
        found = _non_finite(item, path + key)
        if found is not None:
            return found
    return None


def _finite(value: T) -> T:
    """Refuse NaN and infinities (YAML's `.nan`, `.inf`), here and inside lists and mappings:
    no setting means anything at NaN or infinity, and torch would only fail later (or train
    to NaN weights) with a traceback that does not name the key."""
    found = _non_finite(value)
    if found is not None:
        path, bad = found
        raise problem(
            f"expected a finite number, got {bad}; set a number (e.g. 0.0 or 1.0e-4)", path
        )
    return value


def _plain_path(value: str) -> str:
    if not SAFE_PATH.fullmatch(value):
        raise problem(
            f"{value!r} is not a plain path; expected ASCII letters, digits and "
            f"_ @ % + = : , . / - only, not starting with - (no spaces, quotes, $, `, ;, | or "
            f"other shell characters): rename the folder, or point a symlink with a plain "
            f"name at it"
        )
    return value


def _plain_name(value: str) -> str:
    if not SAFE_NAME.fullmatch(value):
        raise problem(
            f"the name {value!r} is not allowed; expected ASCII letters, digits and "
            f"_ . - only, starting with a letter or digit (e.g. bsfnet-sisb-cdd): rename it"
        )
    return value


def _device(value: str) -> str:
    if not DEVICE.fullmatch(value):
        raise problem(
            f"expected auto, cpu, cuda, cuda:N (N a GPU index, e.g. cuda:0) or mps, got {value!r}"
        )
    return value


def _dataset(value: Any) -> str:
    if not isinstance(value, str) or value not in DATASETS:
        raise problem(f"expected one of {list(DATASETS)}, got {value!r}")
    return value


Float = Annotated[float, BeforeValidator(_number), AfterValidator(_finite)]
"""A finite number (an integer is taken as a float)."""
PlainPath = Annotated[StrictStr, AfterValidator(_plain_path)]
Name = Annotated[StrictStr, AfterValidator(_plain_name)]
Device = Annotated[StrictStr, AfterValidator(_device)]
DatasetName = Annotated[str, BeforeValidator(_dataset)]
"""A name of the dataset registry, `benchmark.data.datasets.DATASETS`."""
Options = Annotated[dict[StrictStr, Any], AfterValidator(_finite)]
"""Free-form constructor options (checked by name when the model or loss is built); only
their numbers are checked here: finite."""


def check_device(value: str, where: str) -> None:
    """Raise ConfigError unless `value` is a device string of DEVICE (`--device`)."""
    try:
        _device(value)
    except PydanticCustomError as exc:
        raise ConfigError(f"{where}: {exc.message()}") from None


def _at_least(minimum: int | float, value: T, expected: str = "") -> T:
    """Refuse `value` below `minimum` (`expected` words it, e.g. `a multiple of 32 >= 64`)."""
    if value < minimum:  # type: ignore[operator]
        raise problem(f"expected {expected or f'>= {minimum}'}, got {value}")
    return value


# Defaults: params.yaml is the one source of every value. The sections data, synth and runtime,
# and the sections themselves, have no default here: a key missing from params.yaml is an error
# naming it ("add it to params.yaml"). Defaults remain only where a key's absence means
# something, as each class documents: an optimiser's betas and weight decay (torch.optim.Adam's
# own), the settings only one schedule reads, a recipe's optional features (no crop, no
# augmentation, every validation pair, no loss options; training length: epochs or iterations)
# and an experiment's seeds and options.


@dataclass(frozen=True, config=STRICT)
class DataConfig:
    """Where the datasets (and the encoders' ImageNet weights) live on disk."""

    raw_dir: PlainPath
    prepared_dir: PlainPath
    # torchvision's ImageNet weight files, fetched and hash-checked by `cdbench weights` (the
    # DVC stage `weights`); pretrained training reads them here and never downloads.
    weights_dir: PlainPath

    def raw(self, dataset: str) -> Path:
        return Path(self.raw_dir) / dataset

    def prepared(self, dataset: str) -> Path:
        return Path(self.prepared_dir) / dataset


@dataclass(frozen=True, config=STRICT)
class SynthConfig:
    """The built-in synthetic dataset (`cdbench synth`)."""

    seed: StrictInt
    size: StrictInt
    train: StrictInt
    val: StrictInt
    test: StrictInt

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        return _at_least(0, value, "a non-negative integer")

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value < 64 or value % 32:
            raise problem(f"expected a multiple of 32 >= 64, got {value}")
        return value

    @field_validator("train", "val", "test")
    @classmethod
    def _pairs(cls, value: int) -> int:
        return _at_least(1, value, "at least 1 pair")


@dataclass(frozen=True, config=STRICT)
class OptimizerConfig:
    """The optimiser of a recipe (torch.optim.Adam or AdamW)."""

    name: Literal["adam", "adamw"]
    lr: Float
    # optional: torch.optim.Adam's own defaults
    betas: tuple[Float, ...] = (0.9, 0.999)
    weight_decay: Float = 0.0

    @field_validator("lr")
    @classmethod
    def _lr(cls, value: float) -> float:
        if not value > 0:
            raise problem(f"expected a learning rate > 0, got {value}")
        return value

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 2 or not all(0 <= b < 1 for b in value):
            raise problem(f"expected two numbers in [0, 1), got {value}")
        return value

    @field_validator("weight_decay")
    @classmethod
    def _weight_decay(cls, value: float) -> float:
        return _at_least(0, value)


@dataclass(frozen=True, config=STRICT)
class ScheduleConfig:
    """The learning-rate schedule of a recipe (benchmark/training/recipe.py).

    - `constant`: the optimiser's lr throughout.
    - `bsfnet-step`: BSFNet's released step decay by iteration (`utils/utils.py`).
    - `warmup-poly`: linear warm-up from `warmup_start_factor` x lr over `warmup_iters`
      iterations, then polynomial decay (`power`) to 0 at the last iteration (open-cd).
    - `plateau`: ReduceLROnPlateau on the validation selection score, mode max (CDLab).
    """

    name: Literal["constant", "bsfnet-step", "warmup-poly", "plateau"]
    # optional: each is read by one schedule only (warmup-poly, plateau)
    warmup_iters: StrictInt = 0
    warmup_start_factor: Float = 1e-6
    power: Float = 1.0
    plateau_factor: Float = 0.1
    plateau_patience: StrictInt = 5

    @field_validator("warmup_iters", "plateau_patience")
    @classmethod
    def _count(cls, value: int) -> int:
        return _at_least(0, value)

    @field_validator("warmup_start_factor")
    @classmethod
    def _start_factor(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise problem(f"expected a number in (0, 1], got {value}")
        return value

    @field_validator("power")
    @classmethod
    def _power(cls, value: float) -> float:
        if value <= 0:
            raise problem(f"expected > 0, got {value}")
        return value

    @field_validator("plateau_factor")
    @classmethod
    def _plateau_factor(cls, value: float) -> float:
        if not 0 < value < 1:
            raise problem(f"expected a number in (0, 1), got {value}")
        return value


@dataclass(frozen=True, config=STRICT)
class ThresholdConfig:
    """The fixed decision thresholds of a recipe's source, one per kind of evaluation score.

    A pixel is predicted changed when its score is strictly above the threshold: `distance`
    applies to BSFNet's embedding distance in [0, 2] (losses sisb, contrastive), `probability`
    to a sigmoid probability (IFN; BSFNet trained with bce).
    """

    distance: Float
    probability: Float

    @field_validator("distance")
    @classmethod
    def _distance(cls, value: float) -> float:
        if not 0 <= value <= 2:
            raise problem(f"expected a number in [0, 2], got {value}")
        return value

    @field_validator("probability")
    @classmethod
    def _probability(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise problem(f"expected a number in [0, 1], got {value}")
        return value


@dataclass(frozen=True, config=STRICT)
class RecipeConfig:
    """How to train and select a model: one named recipe of `params.yaml`, after its source.

    Training length is `epochs` (passes over the training split, drop_last) or `iterations`
    (optimiser steps); exactly one is non-zero. `val_every` counts in the same unit.
    `loss_options` are the options of the source's loss (e.g. CDLab's Dice form): a recipe is
    self-contained, and an experiment may override them (`ExperimentConfig.loss_options`).
    Every recipe states how it validates, augments, normalises, thresholds, selects and
    initialises (`val_every` to `pretrained`: no defaults). Left out, the optional keys mean:
    `epochs` or `iterations` 0 (the other one sets the length), no `crop` (no random crop;
    `crop_cat_max_ratio` none), `train_on_whole` false (train and validate on the prepared
    tiles), no `max_val_pairs` (every validation pair), no `loss_options` (the loss's own
    defaults).
    """

    source: StrictStr
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    batch_size: StrictInt
    val_every: StrictInt
    augment: Literal["none", "opencd", "cdlab", "flips"]
    normalize: Literal["imagenet", "bsfnet-cdd"]
    thresholds: ThresholdConfig
    selection_split: Literal["val", "test"]
    selection_metric: Literal["f1", "max_f1", "miou"]
    pretrained: StrictBool
    epochs: StrictInt = 0
    iterations: StrictInt = 0
    crop: StrictInt | None = None
    crop_cat_max_ratio: Float | None = None
    train_on_whole: StrictBool = False
    max_val_pairs: StrictInt | None = None
    loss_options: Options = field(default_factory=dict)

    @field_validator("batch_size", "val_every")
    @classmethod
    def _positive(cls, value: int) -> int:
        return _at_least(1, value)

    @field_validator("crop")
    @classmethod
    def _crop(cls, value: int | None) -> int | None:
        if value is not None and (value < 32 or value % 32):
            raise problem(f"expected a multiple of 32 >= 32, got {value}")
        return value

    @field_validator("max_val_pairs")
    @classmethod
    def _max_val_pairs(cls, value: int | None) -> int | None:
        return value if value is None else _at_least(1, value)

    @model_validator(mode="after")
    def _consistent(self) -> RecipeConfig:
        """The rules between keys: one training length, a warm-up shorter than the training,
        a crop to apply crop_cat_max_ratio to."""
        if self.epochs < 0 or self.iterations < 0 or (self.epochs > 0) == (self.iterations > 0):
            raise problem(
                f"expected exactly one of epochs and iterations to be > 0, "
                f"got epochs={self.epochs}, iterations={self.iterations}"
            )
        warmup = self.schedule.warmup_iters
        if self.schedule.name == "warmup-poly" and self.iterations and warmup >= self.iterations:
            raise problem(
                f"expected fewer than iterations ({self.iterations}), got {warmup}",
                ".schedule.warmup_iters",
            )
        if self.crop_cat_max_ratio is not None and (
            self.crop is None or not 0.5 < self.crop_cat_max_ratio <= 1
        ):
            raise problem(
                f"expected a number in (0.5, 1] with a crop size, "
                f"got {self.crop_cat_max_ratio} (crop {self.crop})",
                ".crop_cat_max_ratio",
            )
        return self


@dataclass(frozen=True, config=STRICT)
class ExperimentConfig:
    """One experiment of the comparison: a model, a loss, a dataset, a recipe, seeds.

    `model_options` and `loss_options` go to the model's and the loss's constructors
    (`cdbench models` and benchmark/losses list them); they are checked by name when a
    command builds them. Loaded from params.yaml, `loss_options` are the run's: the recipe's
    `loss_options` updated with the experiment's own.
    """

    model: StrictStr
    loss: StrictStr
    dataset: DatasetName
    recipe: StrictStr
    seeds: list[StrictInt] = field(default_factory=lambda: [0])
    model_options: Options = field(default_factory=dict)
    loss_options: Options = field(default_factory=dict)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if not value:
            raise problem("expected at least one seed")
        if len(set(value)) != len(value) or min(value) < 0:
            raise problem(f"expected distinct non-negative integers, got {value}")
        return value


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


@dataclass(frozen=True, config=STRICT)
class RuntimeConfig:
    """How training runs on this machine. None of it changes the recipe's mathematics, but
    `bf16` (autocast), `deterministic` (kernels), `channels_last`, `fused_optimizer` and
    `compile` (floating-point rounding) change the numbers: on the 100-step demo, by up to 12.7
    F1 points (reports/parity-fused-cpu.md), so they are RESULT_RUNTIME."""

    device: Device
    bf16: StrictBool
    channels_last: StrictBool
    fused_optimizer: StrictBool
    compile: StrictBool
    deterministic: StrictBool
    workers: StrictInt
    checkpoint_every: StrictInt
    # Optimiser steps between MLflow points of the training loss and learning rate; only
    # reports, like system_metrics and progress.
    log_every: StrictInt
    system_metrics: StrictBool
    progress: StrictBool

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int) -> int:
        return _at_least(0, value)

    @field_validator("checkpoint_every")
    @classmethod
    def _checkpoint_every(cls, value: int) -> int:
        return _at_least(1, value, ">= 1 step")

    @field_validator("log_every")
    @classmethod
    def _log_every(cls, value: int) -> int:
        return _at_least(1, value, ">= 1 step")


@dataclass(frozen=True, config=STRICT)
class Params:
    """The whole of `params.yaml`."""

    data: DataConfig
    synth: SynthConfig
    runtime: RuntimeConfig
    recipes: dict[Name, RecipeConfig]
    experiments: dict[Name, ExperimentConfig]

    @model_validator(mode="after")
    def _experiments_use_recipes(self) -> Params:
        """Each experiment names a defined recipe; its loss options become the run's: the
        recipe's, updated with the experiment's own."""
        for name, experiment in self.experiments.items():
            if experiment.recipe not in self.recipes:
                raise problem(
                    f"unknown recipe {experiment.recipe!r}; expected one of: "
                    f"{', '.join(sorted(self.recipes)) or '(no recipes defined)'}",
                    f"experiments.{name}.recipe",
                )
        merged = {
            name: dataclasses.replace(
                experiment,
                loss_options={
                    **self.recipes[experiment.recipe].loss_options,
                    **experiment.loss_options,
                },
            )
            for name, experiment in self.experiments.items()
        }
        object.__setattr__(self, "experiments", merged)  # frozen: set once, while validating
        return self

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


@dataclasses.dataclass(frozen=True)
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
    """Read and check `params.yaml`, the one source of every setting: a missing file, and a
    missing key, are errors, never defaults, since a mistyped `--params` or a forgotten key
    would otherwise run the pipeline on settings nobody chose."""
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
    return validate(Params, raw, file=str(path))


def validate(cls: type[T], data: Any, where: str = "", file: str = "") -> T:
    """Build dataclass `cls` from plain YAML data in one pydantic validation pass.

    Every problem becomes one line of the ConfigError: `<file>: <dotted key>: <what was
    expected>, got <value>`, the key under `where` (e.g. `demo[0]` for a row of a list).
    `cls` is a pydantic dataclass, or a standard one whose `__pydantic_config__` forbids
    unknown keys.
    """
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:
        prefix = f"{file}: " if file else ""
        errors = exc.errors()
        missing = _missing(where, errors, file)
        lines = missing.splitlines()
        lines += [_describe(cls, error, where) for error in errors if error["type"] != "missing"]
        raise ConfigError("\n".join(prefix + line for line in lines)) from None


def _missing(where: str, errors: list[ErrorDetails], file: str) -> str:
    """One line per section listing all of its missing keys (an empty params.yaml misses
    five sections, not one key at a time), saying where to add them; "" when none is missing."""
    sections: dict[str, list[str]] = {}
    for error in errors:
        if error["type"] == "missing":
            loc = tuple(part for part in error["loc"] if part != "[key]")
            sections.setdefault(_dotted(where, loc[:-1]) or "top level", []).append(str(loc[-1]))
    fix = f"add them to {file} (the repository's params.yaml lists every key)" if file else ""
    return "\n".join(
        f"{section}: missing required key(s): {', '.join(keys)}" + (f"; {fix}" if fix else "")
        for section, keys in sections.items()
    )


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def _adapter(cls: type[T]) -> TypeAdapter[T]:
    """One validator per class, built once: building takes milliseconds, validating far less."""
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def override(config: T, where: str, **changes: Any) -> T:
    """`dataclasses.replace(config, **changes)`, the changes checked like params.yaml; a bad
    value is a ConfigError naming `where` (e.g. `command line`)."""
    try:
        return dataclasses.replace(config, **changes)  # type: ignore[type-var]
    except ValidationError as exc:
        lines = [_describe(type(config), error, where) for error in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def _describe(root: type, error: ErrorDetails, where: str) -> str:
    """One line for one pydantic error, in the words of the rest of the suite."""
    loc = tuple(part for part in error["loc"] if part != "[key]")  # a mapping's key: its name
    ctx = error.get("ctx") or {}
    key = _dotted(where, loc) + str(ctx.get("path", ""))
    key = key.lstrip(".") or "top level"
    value = error["input"]
    got = f"{type(value).__name__} {value!r}"
    kind = error["type"]
    if kind == "unexpected_keyword_argument":
        section = _hint_at(root, loc[:-1])
        accepts = [f.name for f in dataclasses.fields(section)] if _is_dataclass(section) else []
        name = getattr(section, "__name__", "this section")
        return f"unknown key(s) {key}; {name} accepts: {', '.join(sorted(accepts))}"
    if kind == "missing":  # for `override`; `validate` groups them (_missing)
        return f"{_dotted(where, loc[:-1]) or 'top level'}: missing required key(s): {loc[-1]}"
    if kind == "literal_error":
        allowed = list(get_args(_hint_at(root, loc)))
        return f"{key}: expected one of {allowed}, got {value!r}"
    expected = {
        "int_type": "an integer",
        "int_from_float": "an integer",
        "int_parsing": "an integer",
        "string_type": "a string",
        "float_type": "a number",
        "list_type": "a list",
        "tuple_type": "a list",
        "dict_type": "a mapping",
    }
    if kind in expected:
        return f"{key}: expected {expected[kind]}, got {got}"
    if kind == "bool_type":
        return f"{key}: expected true or false, got {value!r}"
    if kind in ("dataclass_type", "dataclass_exact_type"):
        return f"{key}: expected a mapping for {ctx['class_name']}, got {type(value).__name__}"
    if kind == "finite_number":
        return f"{key}: expected a finite number, got {value}"
    if kind == "config":
        return f"{key}: {error['msg']}"
    return f"{key}: {error['msg']}, got {got}"


def _dotted(where: str, loc: tuple[int | str, ...]) -> str:
    """`where` and a pydantic location as one key: `recipes.demo.optimizer.betas[1]`."""
    text = where
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def _is_dataclass(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _hint_at(root: Any, loc: tuple[int | str, ...]) -> Any:
    """The type annotation at `loc` below dataclass `root` (None where it cannot be told)."""
    hint = root
    for part in loc:
        hint = _without_none(hint)
        if _is_dataclass(hint) and isinstance(part, str):
            hint = get_type_hints(hint).get(part)
        elif get_origin(hint) is dict:
            hint = get_args(hint)[1]
        elif get_origin(hint) in (list, tuple):
            hint = get_args(hint)[0]
        else:
            return None
    return _without_none(hint)


def _without_none(hint: Any) -> Any:
    """`X | None` -> X (the optional keys)."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint
