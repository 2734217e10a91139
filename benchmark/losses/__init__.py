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

Every loss also has `describe()`, its form in words ("" where it has one form only), and
`describe_loss` names a configured loss with it, e.g. "contrastive (changed ×10, released)":
tables and run records say which form ran.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from benchmark.errors import ConfigError
from benchmark.losses.bce import DistanceBCELoss
from benchmark.losses.contrastive import ContrastiveLoss
from benchmark.losses.ifn_ds import DeepSupervisionLoss
from benchmark.losses.labels import check_binary_labels
from benchmark.losses.sisb import SISBLoss

__all__ = [
    "LOSSES",
    "ContrastiveLoss",
    "DeepSupervisionLoss",
    "DistanceBCELoss",
    "SISBLoss",
    "build_loss",
    "check_binary_labels",
    "describe_loss",
]

LOSSES: dict[str, type[nn.Module]] = {
    "sisb": SISBLoss,
    "contrastive": ContrastiveLoss,
    "bce": DistanceBCELoss,
    "ifn_ds": DeepSupervisionLoss,
}
"""Every loss by name."""


def build_loss(name: str, **options: Any) -> nn.Module:
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
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; expected one of: {', '.join(sorted(LOSSES))}")
    cls = LOSSES[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"loss {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or '(none)'}"
        )
    try:
        return cls(**options)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"loss {name!r}: bad option value: {exc}") from exc


def describe_loss(name: str, **options: Any) -> str:
    """The loss `name` with `options` in words, e.g. "contrastive (changed ×10, released)".

    Raises:
        ConfigError: as `build_loss`.
    """
    form = build_loss(name, **options).describe()
    return f"{name} ({form})" if form else name
