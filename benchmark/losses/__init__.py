"""The training losses, looked up by the name used in experiment names and `params.yaml`.

Every loss is an `nn.Module` called as `loss(output, mask) -> (total, parts)`: `output` is the
model's `ChangeOutput`, `mask` a (B, 1, H, W) {0, 1} tensor; `total` is the scalar to
backpropagate and `parts` a dict of detached scalars to log (no host synchronisation beyond
the one label check, see `benchmark.losses.labels`).

- `sisb`: BSFNet's released loss, batch-balanced contrastive + IoU (`sisb.SISBLoss`).
- `contrastive`: the same contrastive loss without class balancing (`contrastive.ContrastiveLoss`;
  `changed_weight=10.0` is the released `contrastive_loss`).
- `bce`: BCE on a learnable affine map of BSFNet's distance (`bce.DistanceBCELoss`; it owns
  two parameters that the optimiser must include).
- `ifn_ds`: IFN's deep supervision, BCE (+ the authors' or CDLab's Dice) on every side output
  (`ifn_ds.DeepSupervisionLoss`).

Every loss is a `ChangeLoss` (benchmark/losses/base.py) and declares the model outputs it
`needs` and its `score_kind`, the evaluation score it reads; each model declares its `outputs`
(benchmark/models/output.py). `check_pair` refuses a model x loss pair whose model lacks an
output the loss needs, naming the losses that fit; `cdbench` calls it when it checks an
experiment and when it builds one. `describe()` gives a loss's form in words ("" where it has
one form only), and `describe_loss` names a configured loss with it, e.g. "contrastive
(changed ×10, released)": tables and run records say which form ran.
"""

from __future__ import annotations

import inspect
from typing import Any

from benchmark.errors import ConfigError
from benchmark.losses.base import ChangeLoss, ScoreKind
from benchmark.losses.bce import DistanceBCELoss
from benchmark.losses.contrastive import ContrastiveLoss
from benchmark.losses.ifn_ds import DeepSupervisionLoss
from benchmark.losses.labels import check_binary_labels
from benchmark.losses.sisb import SISBLoss
from benchmark.models import MODELS, model_options

__all__ = [
    "LOSSES",
    "ChangeLoss",
    "ContrastiveLoss",
    "DeepSupervisionLoss",
    "DistanceBCELoss",
    "SISBLoss",
    "ScoreKind",
    "build_loss",
    "check_binary_labels",
    "check_pair",
    "describe_loss",
    "loss_options",
    "losses_for",
]

LOSSES: dict[str, type[ChangeLoss]] = {
    "sisb": SISBLoss,
    "contrastive": ContrastiveLoss,
    "bce": DistanceBCELoss,
    "ifn_ds": DeepSupervisionLoss,
}
"""Every loss by name."""


def loss_options(name: str) -> list[str]:
    """The options (constructor arguments) of the loss `name`, in signature order.

    Raises:
        ConfigError: `name` is not a key of `LOSSES` (the message lists the valid names).
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; expected one of: {', '.join(sorted(LOSSES))}")
    return [p for p in inspect.signature(LOSSES[name].__init__).parameters if p != "self"]


def losses_for(model: str) -> list[str]:
    """The losses `model` can be trained with: those whose `needs` its `outputs` include, in
    `LOSSES` order (KeyError for a name not in `MODELS`)."""
    outputs = MODELS[model].outputs
    return [name for name, loss in LOSSES.items() if loss.needs <= outputs]


def check_pair(model: str, loss: str) -> None:
    """Raise ConfigError unless both names are known and `model` produces every output `loss`
    needs (e.g. BSFNet returns a distance, which `ifn_ds`'s side logits are not).

    The message names the pair, what is missing and the losses that fit the model; callers
    prefix where the pair comes from (`experiments.<name>.loss`, a references.yaml row).
    """
    model_options(model)  # unknown names: the messages list the valid ones
    loss_options(loss)
    missing = sorted(LOSSES[loss].needs - MODELS[model].outputs)
    if missing:
        raise ConfigError(
            f"loss {loss!r} does not fit model {model!r}: it needs the output(s) "
            f"{', '.join(missing)}, which {model} does not return (it returns "
            f"{', '.join(sorted(MODELS[model].outputs))}); losses that fit {model}: "
            f"{', '.join(losses_for(model))}"
        )


def build_loss(name: str, **options: Any) -> ChangeLoss:
    """Build the loss called `name` with the given constructor options.

    Args:
        name: a key of `LOSSES`.
        **options: keyword arguments of that loss's constructor.

    Returns:
        The loss module.

    Raises:
        ConfigError: for an unknown name (listing the valid ones), an unknown option (listing
            the valid options) or a value the loss rejects.
    """
    valid = loss_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for loss {name!r}; "
            f"valid options: {', '.join(valid) or '(none)'}"
        )
    try:
        return LOSSES[name](**options)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"loss {name!r}: bad option value: {exc}") from exc


def describe_loss(name: str, **options: Any) -> str:
    """The loss `name` with `options` in words, e.g. "contrastive (changed ×10, released)".

    Raises:
        ConfigError: as `build_loss`.
    """
    form = build_loss(name, **options).describe()
    return f"{name} ({form})" if form else name
