"""params.yaml is checked as a whole before any work: unknown keys, wrong types, bad values."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import StrictInt, StrictStr, ValidationError
from pydantic.dataclasses import dataclass

from benchmark.cli import main
from benchmark.config import (
    STRICT,
    DataConfig,
    ExperimentConfig,
    Float,
    OptimizerConfig,
    Params,
    RecipeConfig,
    RunSpec,
    RuntimeConfig,
    SynthConfig,
    ThresholdConfig,
    load_params,
    override,
    validate,
)
from benchmark.data.layout import write_pair
from benchmark.errors import ConfigError
from tests.conftest import (
    RECIPE_CHOICES,
    params_copy,
    repo_params,
    runtime_config,
    synth_config,
    write_repo_params,
)

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_file_loads() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section in ("data", "synth", "runtime"):  # every setting is read from the file
        assert dataclasses.asdict(getattr(params, section)) == raw[section]
    assert params.recipes["bsfnet-official"].optimizer.lr == 1e-5  # "1.0e-5" in YAML
    # 3 seeds per real experiment: runs named <experiment>-s<seed>
    assert {r.name for r in params.runs()} >= {"bsfnet-sisb-cdd-s0", "ifn-ds-levir-cd-s2"}
    assert params.data.prepared("synthetic") == Path("data/prepared/synthetic")


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    """A mistyped --params must not silently run on defaults."""
    with pytest.raises(ConfigError, match=r"params file .*typo\.yaml: not found.*--params"):
        load_params(tmp_path / "typo.yaml")
    with pytest.raises(ConfigError, match="is not a file"):
        load_params(tmp_path)


def test_an_empty_params_file_names_every_missing_section(tmp_path: Path) -> None:
    """params.yaml is the one source of every setting: an empty file gives no defaults."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert str(caught.value) == (
        f"{path}: top level: missing required key(s): data, synth, runtime, recipes, "
        f"experiments; add them to {path} (the repository's params.yaml lists every key)"
    )


@pytest.mark.parametrize("section", ["data", "synth", "runtime"])
def test_a_missing_setting_is_named_with_where_to_add_it(tmp_path: Path, section: str) -> None:
    content = repo_params()
    first, second, *_ = content[section]
    del content[section][first], content[section][second]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert str(caught.value) == (
        f"{path}: {section}: missing required key(s): {first}, {second}; add them to {path} "
        f"(the repository's params.yaml lists every key)"
    )


@pytest.mark.parametrize("cls", [Params, DataConfig, SynthConfig, RuntimeConfig])
def test_the_settings_have_no_default_besides_params_yaml(cls: type) -> None:
    """A default here would be a second source of the value params.yaml holds."""
    for item in dataclasses.fields(cls):
        assert item.default is dataclasses.MISSING, f"{cls.__name__}.{item.name}"
        assert item.default_factory is dataclasses.MISSING, f"{cls.__name__}.{item.name}"


RECIPE_REQUIRED = ("val_every", "augment", "normalize", "thresholds", "selection_split",
                   "selection_metric", "pretrained")  # fmt: skip


def test_a_recipe_states_how_it_validates_augments_normalises_thresholds_selects() -> None:
    """No default for the recipe keys every source decides (they would repeat params.yaml),
    nor for the two thresholds; the keys whose absence means something keep theirs."""
    missing = dataclasses.MISSING
    fields = dataclasses.fields(RecipeConfig)
    required = {f.name for f in fields if f.default is missing and f.default_factory is missing}
    assert required == {"source", "optimizer", "schedule", "batch_size", *RECIPE_REQUIRED}
    for item in dataclasses.fields(ThresholdConfig):
        assert item.default is dataclasses.MISSING, item.name


def test_a_recipe_missing_its_normalisation_names_it(tmp_path: Path) -> None:
    path = params_copy(tmp_path, lambda data: data["recipes"]["demo"].pop("normalize"))
    with pytest.raises(ConfigError, match=r"recipes\.demo: missing required key\(s\): normalize"):
        load_params(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (["synth", "sede"], 1, "unknown key(s) synth.sede"),
        (["colour"], "red", "unknown key(s) colour"),
        (["synth", "size"], "big", "synth.size: expected an integer"),
        (["synth", "size"], 100, "synth.size: expected a multiple of 32"),
        (["synth", "train"], 0, "synth.train: expected at least 1"),
        (["synth", "seed"], True, "synth.seed: expected an integer"),
        (["data"], [1, 2], "data: expected a mapping for DataConfig"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, key: list[str], value: Any, message: str) -> None:
    """One bad value in the repository's params.yaml: one line, naming its key."""
    content = repo_params()
    _set(content, key, value)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert len(str(caught.value).splitlines()) == 1


def test_params_that_are_not_yaml_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("synth: {seed: 1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not valid YAML"):
        load_params(path)


def test_bad_params_fail_the_command_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_repo_params(tmp_path / "params.yaml", synth={"sizee": 64})
    out = tmp_path / "synthetic"
    assert main(["--params", str(path), "synth", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "synth.sizee" in err and "accepts:" in err
    assert not out.exists()


@dataclass(frozen=True, config=STRICT)
class _Inner:
    rate: Float = 1.0
    names: list[StrictStr] = field(default_factory=list)
    mode: StrictStr | None = None


@dataclass(frozen=True, config=STRICT)
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    steps: dict[StrictStr, StrictInt] = field(default_factory=dict)


def test_validate_converts_nested_types() -> None:
    cfg = validate(_Outer, {"inner": {"rate": 2, "names": ["a"]}, "steps": {"x": 3}}, "p")
    assert cfg.inner.rate == 2.0 and isinstance(cfg.inner.rate, float)
    assert cfg.inner.names == ["a"] and cfg.inner.mode is None
    assert cfg.steps == {"x": 3}
    assert validate(_Outer, {"inner": {"rate": "1e-5"}}).inner.rate == 1e-5  # YAML 1.1 string
    with pytest.raises(ConfigError, match=r"p.inner.names\[1\]: expected a string"):
        validate(_Outer, {"inner": {"names": ["a", 2]}}, "p")
    with pytest.raises(ConfigError, match=r"p.steps.x: expected an integer"):
        validate(_Outer, {"steps": {"x": 1.5}}, "p")
    with pytest.raises(ConfigError, match=r"p.inner.rate: expected a number, got bool True"):
        validate(_Outer, {"inner": {"rate": True}}, "p")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) p.inner.rat; _Inner accepts: mode"):
        validate(_Outer, {"inner": {"rat": 1.0}}, "p")


# --- one-line errors instead of tracebacks, no silent defaults --------------------------------

RECIPE: dict[str, Any] = {
    **RECIPE_CHOICES,
    "source": "tests",
    "optimizer": {"name": "adam", "lr": 1.0e-3, "weight_decay": 0.0},
    "schedule": {"name": "constant"},
    "batch_size": 2,
    "iterations": 2,
    "val_every": 1,
    "crop": 32,
    "augment": "flips",
    "pretrained": False,
}
EXPERIMENT = "bsfnet-bce-synthetic"


def _params(folder: Path, **sections: Any) -> Path:
    """folder/params.yaml: the repository's, with one tiny recipe and experiment on
    `folder/prepared`, then `sections` (a settings section changes the keys it names)."""
    tiny: dict[str, Any] = {
        "data": {"raw_dir": str(folder / "raw"), "prepared_dir": str(folder / "prepared")},
        "runtime": {"device": "cpu", "workers": 0, "system_metrics": False, "progress": False},
        "recipes": {"tiny": RECIPE},
        "experiments": {
            EXPERIMENT: {"model": "bsfnet", "loss": "bce", "dataset": "synthetic", "recipe": "tiny"}
        },
    }
    return write_repo_params(folder / "params.yaml", **{**tiny, **sections})


def _recipe(**optimizer: Any) -> dict[str, Any]:
    return {"tiny": {**RECIPE, "optimizer": {**RECIPE["optimizer"], **optimizer}}}


@pytest.mark.parametrize(
    ("recipes", "key"),
    [
        (_recipe(weight_decay=float("nan")), "recipes.tiny.optimizer.weight_decay"),
        (_recipe(lr=float("inf")), "recipes.tiny.optimizer.lr"),
        (_recipe(lr=float("-inf")), "recipes.tiny.optimizer.lr"),
        (_recipe(lr="nan"), "recipes.tiny.optimizer.lr"),  # a YAML string, read as a number
        (_recipe(betas=[0.9, float("nan")]), r"recipes.tiny.optimizer.betas\[1\]"),
        (
            {"tiny": {**RECIPE, "crop_cat_max_ratio": float("nan")}},
            "recipes.tiny.crop_cat_max_ratio",
        ),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(
    tmp_path: Path, recipes: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: expected a finite number, got (nan|-?inf)"):
        load_params(_params(tmp_path, recipes=recipes))


def test_non_finite_numbers_are_refused_inside_free_form_options(tmp_path: Path) -> None:
    """loss_options are free-form (checked by name when the loss is built): a .nan inside is
    refused all the same, at load time."""
    experiments = {
        EXPERIMENT: {
            "model": "bsfnet",
            "loss": "bce",
            "dataset": "synthetic",
            "recipe": "tiny",
            "loss_options": {"weights": [1.0, float("inf")]},
        }
    }
    match = rf"experiments.{EXPERIMENT}.loss_options.weights\[1\]: expected a finite number"
    with pytest.raises(ConfigError, match=match):
        load_params(_params(tmp_path, experiments=experiments))


def test_weight_decay_nan_fails_train_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`weight_decay: .nan` (YAML) is refused in one line, naming the key, before
    torch.optim.Adam could raise a ValueError traceback."""
    path = _params(tmp_path)
    path.write_text(path.read_text().replace("weight_decay: 0.0", "weight_decay: .nan"))
    checkpoints = tmp_path / "checkpoints"
    args = ["--params", str(path), "train", EXPERIMENT, "--no-tracking"]
    assert main([*args, "--checkpoints", str(checkpoints)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "recipes.tiny.optimizer.weight_decay: expected a finite number, got nan" in err
    assert not checkpoints.exists()


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_valid_devices_are_accepted(device: str) -> None:
    assert runtime_config(device=device).device == device
    assert override(runtime_config(), "command line", device=device).device == device


@pytest.mark.parametrize("device", ["cpu:abc", "cuda:", "cuda:x", "gpu", "cuda:0:1", " cpu", ""])
def test_bad_devices_are_refused_up_front(tmp_path: Path, device: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"runtime.device: expected auto, cpu, .* got '{device}'"
    ):
        load_params(_params(tmp_path, runtime={"device": device}))


@pytest.mark.parametrize("command", ["train", "evaluate", "bench", "parity"])
def test_a_bad_device_on_the_command_line_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """`--device cpu:abc` reached torch.device (train, bench, parity): RuntimeError traceback."""
    args = ["--params", str(_params(tmp_path)), command]
    args += [EXPERIMENT] if command in ("train", "evaluate") else ["--out", str(tmp_path / "out")]
    assert main([*args, "--device", "cpu:abc"]) == 1
    err = capsys.readouterr().err
    assert "--device: expected auto, cpu, cuda, cuda:N" in err and "'cpu:abc'" in err
    assert not (tmp_path / "out").exists()


def _tiny_dataset(prepared: Path, size: int) -> None:
    """Two pairs of `size` x `size` per split under prepared/synthetic (no cache)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for index in range(2):
            a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            change = rng.random((size, size)) > 0.5
            write_pair(prepared / "synthetic" / split, f"p{index}", a, a, change)


def test_a_crop_larger_than_the_images_fails_train_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 64 crop of 32 x 32 images is refused in one line before training, not mid-run in the
    augmentation."""
    _tiny_dataset(tmp_path / "prepared", 32)
    path = _params(tmp_path, recipes={"tiny": {**RECIPE, "crop": 64}})
    checkpoints = tmp_path / "checkpoints"
    args = ["--params", str(path), "train", EXPERIMENT, "--no-tracking"]
    assert main([*args, "--checkpoints", str(checkpoints)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "recipes.tiny.crop: a crop of 64 x 64 does not fit" in err
    assert "(smallest 32 x 32, H x W)" in err and "at most 32" in err
    assert not checkpoints.exists()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("prepared_dir", "data/$(touch pwned)prepared"),
        ("raw_dir", "data/`id`"),
        ("weights_dir", "data/weights; rm -rf x"),
        ("prepared_dir", "my data"),
        ("raw_dir", "data/'raw'"),
        ("prepared_dir", "-rf"),
        ("raw_dir", ""),
    ],
)
def test_path_params_with_shell_characters_are_refused(
    tmp_path: Path, key: str, value: str
) -> None:
    data = {"raw_dir": "data/raw", "prepared_dir": "data/prepared", "weights_dir": "data/weights"}
    with pytest.raises(ConfigError, match=rf"data.{key}: .* is not a plain path; expected ASCII"):
        load_params(_params(tmp_path, data={**data, key: value}))


def test_plain_paths_are_accepted(tmp_path: Path) -> None:
    data = {"raw_dir": "/mnt/disk-2/raw_v1.0", "prepared_dir": "../prepared", "weights_dir": "w"}
    assert load_params(_params(tmp_path, data=data)).data.raw_dir == "/mnt/disk-2/raw_v1.0"


@pytest.mark.parametrize("name", ["bad name", "x;id", "a$(id)", "-x", "x}y", "caf\u00e9"])
def test_experiment_and_recipe_names_are_plain(tmp_path: Path, name: str) -> None:
    """The names go into dvc.yaml's runs and commands (`cdbench stages`)."""
    experiment = {"model": "bsfnet", "loss": "bce", "dataset": "synthetic", "recipe": "tiny"}
    with pytest.raises(ConfigError, match="is not allowed; expected ASCII letters"):
        load_params(_params(tmp_path, experiments={name: experiment}))
    experiments = {EXPERIMENT: {**experiment, "recipe": name}}
    with pytest.raises(ConfigError, match="is not allowed; expected ASCII letters"):
        load_params(_params(tmp_path, recipes={name: RECIPE}, experiments=experiments))


WORK = {
    "download": ("benchmark.data.download", "download_dataset", ["levir-cd", "--out", "OUT"]),
    "prepare": ("benchmark.data.prepare", "prepare_dataset", ["levir-cd", "--out", "OUT"]),
    "synth": ("benchmark.data.synth", "generate_synthetic", ["--out", "OUT"]),
    "weights": ("benchmark.models.weights_fetch", "fetch_weights", ["--out", "OUT"]),
    "train": ("benchmark.training.loop", "train_run", [EXPERIMENT, "--checkpoints", "OUT"]),
    "evaluate": ("benchmark.evaluation.evaluate", "evaluate_run", [EXPERIMENT, "--reports", "OUT"]),
    "stages": ("benchmark.stages", "write_stages", ["--dvc-yaml", "OUT"]),
    "report": ("benchmark.reporting.report", "write_report", ["--reports", "OUT"]),
    "check": ("benchmark.reporting.check", "check", ["--reports", "OUT"]),
    "bench": ("benchmark.speed.bench", "run_bench", ["--out", "OUT"]),
    "parity": ("benchmark.speed.parity", "run_parity", ["--out", "OUT"]),
}
"""Every command that reads params.yaml, the function doing its work, and arguments that keep
it inside OUT."""


@pytest.mark.parametrize("command", sorted(WORK))
def test_every_command_refuses_a_missing_params_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """`--params typo.yaml` stops every command with one line; none runs on the defaults."""
    import importlib

    module, function, args = WORK[command]

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"cdbench {command} did its work with a missing params file")

    monkeypatch.setattr(importlib.import_module(module), function, must_not_run)
    out = tmp_path / "out"
    argv = [a.replace("OUT", str(out)) for a in args]
    assert main(["--params", str(tmp_path / "typo.yaml"), command, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cdbench {command}: error: params file {tmp_path / 'typo.yaml'}: ")
    assert "not found" in err and len(err.splitlines()) == 1
    assert not out.exists()


# --- one validation pass: every problem of the file, one line each -----------------------------


def test_every_problem_is_one_line_naming_the_file_and_the_key(tmp_path: Path) -> None:
    recipe = {**RECIPE, "batch_size": 0, "augment": "mixup"}
    path = _params(tmp_path, recipes={"tiny": recipe}, runtime={"workers": -1, "progres": True})
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert sorted(line.removeprefix(f"{path}: ") for line in lines) == [
        "recipes.tiny.augment: expected one of ['none', 'opencd', 'cdlab', 'flips'], got 'mixup'",
        "recipes.tiny.batch_size: expected >= 1, got 0",
        "runtime.workers: expected >= 0, got -1",
        "unknown key(s) runtime.progres; RuntimeConfig accepts: bf16, channels_last, "
        "checkpoint_every, compile, deterministic, device, fused_optimizer, log_every, "
        "progress, system_metrics, workers",
    ]


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            {"schedule": {"name": "warmup-poly", "warmup_iters": 2}},
            "recipes.tiny.schedule.warmup_iters: expected fewer than iterations (2), got 2",
        ),
        ({"epochs": 3}, "recipes.tiny: expected exactly one of epochs and iterations to be > 0"),
        ({"crop": None, "crop_cat_max_ratio": 0.75}, "recipes.tiny.crop_cat_max_ratio: expected"),
        ({"batch_size": None}, "recipes.tiny.batch_size: expected an integer, got NoneType"),
        ({"pretrained": "yes"}, "recipes.tiny.pretrained: expected true or false, got 'yes'"),
    ],
)
def test_rules_between_keys_name_the_key(
    tmp_path: Path, recipe: dict[str, Any], message: str
) -> None:
    path = _params(tmp_path, recipes={"tiny": {**RECIPE, **recipe}})
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(path)


def test_a_missing_key_and_an_unknown_recipe_are_named(tmp_path: Path) -> None:
    recipe = {key: value for key, value in RECIPE.items() if key != "batch_size"}
    with pytest.raises(ConfigError, match=r"recipes\.tiny: missing required key\(s\): batch_size"):
        load_params(_params(tmp_path, recipes={"tiny": recipe}))
    experiment = {"model": "bsfnet", "loss": "bce", "dataset": "synthetic", "recipe": "huge"}
    with pytest.raises(
        ConfigError,
        match=rf"experiments\.{EXPERIMENT}\.recipe: unknown recipe 'huge'; expected one of: tiny",
    ):
        load_params(_params(tmp_path, experiments={EXPERIMENT: experiment}))


def test_command_line_overrides_are_checked_like_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^command line\.workers: expected >= 0, got -1$"):
        override(runtime_config(), "command line", workers=-1)
    assert override(runtime_config(), "command line", workers=0).workers == 0
    with pytest.raises(ValidationError):  # built in code, the check is the same
        SynthConfig(**{**dataclasses.asdict(synth_config()), "size": 100})


# --- recipe-owned loss options -------------------------------------------------------------------


def test_the_ifn_recipes_own_their_loss_options() -> None:
    """A recipe is self-contained: the source's loss form is in the recipe, and the experiments
    on it train with it."""
    params = load_params(REPO / "params.yaml")
    cdlab = {"dice": "cdlab", "upsample": "nearest"}
    opencd = {"dice": "none", "upsample": "bilinear"}
    assert params.recipes["ifn-cdlab"].loss_options == cdlab
    assert params.recipes["ifn-opencd"].loss_options == opencd
    assert params.experiments["ifn-ds-cdd"].loss_options == cdlab
    assert params.experiments["ifn-ds-levir-cd"].loss_options == opencd
    assert params.recipes["demo"].loss_options == {}
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert "loss_options" not in raw["experiments"]["ifn-ds-cdd"]


def test_an_experiment_overrides_its_recipes_loss_options(tmp_path: Path) -> None:
    recipes = {"tiny": {**RECIPE, "loss_options": {"dice": "cdlab", "upsample": "nearest"}}}
    experiment = {"model": "ifn", "loss": "ifn_ds", "dataset": "synthetic", "recipe": "tiny"}
    experiments = {
        "inherits": experiment,
        "overrides": {**experiment, "loss_options": {"upsample": "bilinear"}},
    }
    params = load_params(_params(tmp_path, recipes=recipes, experiments=experiments))
    assert params.experiments["inherits"].loss_options == {"dice": "cdlab", "upsample": "nearest"}
    assert params.experiments["overrides"].loss_options == {
        "dice": "cdlab",
        "upsample": "bilinear",
    }
    assert params.recipes["tiny"].loss_options == {"dice": "cdlab", "upsample": "nearest"}
    bad = {"tiny": {**RECIPE, "loss_options": {"weights": [1.0, float("nan")]}}}
    with pytest.raises(
        ConfigError, match=r"recipes\.tiny\.loss_options\.weights\[1\]: expected a finite number"
    ):
        load_params(_params(tmp_path, recipes=bad, experiments={"inherits": experiment}))


def _set(data: dict[str, Any], dotted: list[str], value: Any) -> None:
    for key in dotted[:-1]:
        data = data[key]
    data[dotted[-1]] = value


CONFIG_ERRORS = [
    (
        "bsfnet-sisb-synthetic",
        ["recipes", "demo", "learning_rate"],
        0.1,
        "recipes.demo.learning_rate",
    ),
    (
        "bsfnet-sisb-synthetic",
        ["recipes", "demo", "batch_size"],
        "8",
        "recipes.demo.batch_size: expected an integer",
    ),
    (
        "bsfnet-sisb-synthetic",
        ["recipes", "demo", "optimizer", "lr"],
        -1e-3,
        "recipes.demo.optimizer.lr: expected a learning rate > 0",
    ),
    (
        "bsfnet-sisb-synthetic",
        ["recipes", "demo", "epochs"],
        3,
        "recipes.demo: expected exactly one of epochs and iterations",
    ),
    (
        "bsfnet-sisb-synthetic",
        ["experiments", "bsfnet-sisb-synthetic", "recipe"],
        "demoo",
        "experiments.bsfnet-sisb-synthetic.recipe: unknown recipe 'demoo'",
    ),
    (
        "bsfnet-sisb-synthetic",
        ["experiments", "bsfnet-sisb-synthetic", "model"],
        "bsfnett",
        "experiments.bsfnet-sisb-synthetic.model: unknown model 'bsfnett'",
    ),
    (
        "ifn-ds-synthetic",
        ["experiments", "ifn-ds-synthetic", "loss_options"],
        {"dicee": True},
        "experiments.ifn-ds-synthetic.loss_options: unknown option(s) dicee",
    ),
    (
        "bsfnet-sisb-synthetic",
        ["experiments", "bsfnet-sisb-synthetic", "loss"],
        "ifn_ds",
        "experiments.bsfnet-sisb-synthetic.loss: loss 'ifn_ds' does not fit model 'bsfnet': it "
        "needs the output(s) logit, side_logits, which bsfnet does not return (it returns "
        "distance, embeddings); losses that fit bsfnet: sisb, contrastive, bce",
    ),
    (
        "bsfnet-sisb-synthetic",
        ["experiments", "bsfnet-sisb-synthetic", "model_options"],
        {"dropout": 0.5},
        "experiments.bsfnet-sisb-synthetic.model_options: unknown option(s) dropout for model "
        "'bsfnet'",
    ),
]


@pytest.mark.parametrize(("experiment", "key", "value", "message"), CONFIG_ERRORS)
def test_config_errors_stop_train_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    experiment: str,
    key: list[str],
    value: Any,
    message: str,
) -> None:
    path = params_copy(tmp_path, lambda data: _set(data, key, value))
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(path), "train", experiment, "--no-tracking"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cdbench train: error:")
    assert message in err
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_recipe_floats_written_as_yaml_strings_are_numbers() -> None:
    # PyYAML (YAML 1.1) reads `1e-5` (no dot) as the string "1e-5".
    assert yaml.safe_load("lr: 1e-5") == {"lr": "1e-5"}
    text = "name: adam\nlr: 1e-5\nweight_decay: 5e-2"
    optimizer = validate(OptimizerConfig, yaml.safe_load(text), "o")
    assert optimizer.lr == 1e-5 and optimizer.weight_decay == 0.05
    with pytest.raises(ConfigError, match=r"o\.lr: expected a number, got str 'fast'"):
        validate(OptimizerConfig, {"name": "adam", "lr": "fast"}, "o")


def test_params_with_string_lr_load(tmp_path: Path) -> None:
    path = _params(tmp_path)
    text = path.read_text().replace("lr: 0.001", "lr: 3e-4")  # YAML 1.1 reads 3e-4 as a string
    assert "lr: 3e-4" in text
    path.write_text(text)
    assert load_params(path).recipes["tiny"].optimizer.lr == 3e-4


def test_run_spec_names() -> None:
    single = ExperimentConfig(model="ifn", loss="ifn_ds", dataset="synthetic", recipe="demo")
    assert RunSpec.of("e", single, 0) == RunSpec(experiment="e", seed=0, name="e")
    several = dataclasses.replace(single, seeds=[3, 7])
    assert RunSpec.of("e", several, 7) == RunSpec(experiment="e", seed=7, name="e-s7")
    with pytest.raises(ConfigError, match=r"experiments\.e\.seeds: seed 5 is not listed"):
        RunSpec.of("e", several, 5)
