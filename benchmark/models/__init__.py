"""The change-detection models and the one table that names them.

`MODELS` maps each model's name (the first part of an experiment name, design.md) to its
class; `build_model` checks the name and the options before building. Every model is called as
`model(t0, t1) -> ChangeOutput` (benchmark/models/output.py).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from benchmark.errors import ConfigError
from benchmark.models.bsfnet import BSFNet
from benchmark.models.ifn import IFN
from benchmark.models.output import ChangeOutput

MODELS: dict[str, type[nn.Module]] = {"bsfnet": BSFNet, "ifn": IFN}
"""Every model of the suite, by name."""

__all__ = ["IFN", "MODELS", "BSFNet", "ChangeOutput", "build_model", "model_options"]


def model_options(name: str) -> dict[str, Any]:
    """The options a model takes besides `pretrained`, with their defaults.

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
    return {key: p.default for key, p in parameters.items() if key != "pretrained"}


def build_model(name: str, pretrained: bool = False, **options: Any) -> nn.Module:
    """Build a model by name.

    Args:
        name: a key of `MODELS` ("bsfnet" or "ifn").
        pretrained: load the encoder's ImageNet weights from the local torch hub cache
            (benchmark/models/weights.py); without them a `CdbenchError` says where to put them.
        **options: the model's constructor options (see `model_options(name)`).

    Returns:
        The model, in training mode.

    Raises:
        ConfigError: an unknown name or option (the message lists the valid ones), or a value
            the model rejects.
    """
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(f"{key} (default {value!r})" for key, value in valid.items())
        raise ConfigError(
            f"model {name!r}: unknown option(s) {', '.join(unknown)}; valid options: "
            f"{listed or 'none'}"
        )
    try:
        return MODELS[name](pretrained=pretrained, **options)
    except ValueError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from exc
