"""The change-detection models and the one table that names them.

`MODELS` maps each model's name (the first part of an experiment name) to its
class; `build_model` checks the name and the options before building. Every model is a
`ChangeModel` called as `model(t0, t1) -> ChangeOutput` and declares the `outputs` it returns
(benchmark/models/output.py), from which `benchmark.losses.losses_for` knows the losses that
fit it. An encoder starts from its
ImageNet weights when `build_model` is given the folder holding them (`params.yaml`
`data.weights_dir`, filled by `cdbench weights`; benchmark/models/weights.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark.errors import ConfigError
from benchmark.models.bsfnet import BSFNet
from benchmark.models.ifn import IFN
from benchmark.models.output import ChangeModel, ChangeOutput, OutputName

MODELS: dict[str, type[ChangeModel]] = {"bsfnet": BSFNet, "ifn": IFN}
"""Every model of the suite, by name."""

__all__ = [
    "IFN",
    "MODELS",
    "BSFNet",
    "ChangeModel",
    "ChangeOutput",
    "OutputName",
    "build_model",
    "check_model_options",
    "model_options",
]


def model_options(name: str) -> dict[str, Any]:
    """The options a model takes besides `weights_dir`, with their defaults.

    Args:
        name: a key of `MODELS`.

    Returns:
        `{option: default}` read from the model's constructor.

    Raises:
        ConfigError: `name` is not a key of `MODELS` (the message lists the valid names).
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; expected one of: {', '.join(sorted(MODELS))}")
    parameters = inspect.signature(MODELS[name]).parameters
    return {key: p.default for key, p in parameters.items() if key != "weights_dir"}


def check_model_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise ConfigError for an unknown model or an option its constructor does not take (the
    message lists the valid options with their defaults)."""
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(f"{key} (default {value!r})" for key, value in valid.items())
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid options: "
            f"{listed or 'none'}"
        )


def build_model(name: str, weights_dir: Path | None = None, **options: Any) -> ChangeModel:
    """Build a model by name.

    Args:
        name: a key of `MODELS` ("bsfnet" or "ifn").
        weights_dir: the weights folder (`params.yaml` `data.weights_dir`): the encoder starts
            from the ImageNet weights there, hash-checked (benchmark/models/weights.py); a
            missing file raises a `CdbenchError` naming it and `dvc repro weights`. None:
            random initialisation.
        **options: the model's constructor options (see `model_options(name)`).

    Returns:
        The model, in training mode.

    Raises:
        ConfigError: an unknown name or option (the message lists the valid ones), or a value
            the model rejects.
    """
    check_model_options(name, options)
    try:
        return MODELS[name](weights_dir=weights_dir, **options)
    except ValueError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from exc
